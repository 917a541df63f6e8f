"""``cavnet prepare``: a corpus re-encoded to a short side over Dask (``run``), the files it writes in the
prepared folder (``layout``) and the per-file Dask task (``tasks``); the re-encoding itself is
:mod:`cavnet.extract.media.transcode`."""
