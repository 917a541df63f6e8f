"""cavnet: CAV-Net audio-visual action recognition over a cached HDF5 feature store."""

__version__ = "0.1.0"
