"""``cavnet bench`` and the performance scripts: decode, backbone, extract steady state, store read and
fuse step timings (``run``), their table, and the one-call GPU and memory checks beside them."""
