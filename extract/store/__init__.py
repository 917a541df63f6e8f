"""The HDF5 feature store (format in docs/store.md): ``writer`` (shards, atomic commits, consolidation)
and ``reader`` (``FeatureStore``: rows, splits, chunk-aligned reads)."""
