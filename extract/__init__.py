"""Stage one: decode, backbones, text encoder and the HDF5 feature store (pure pieces, no Dask)."""
