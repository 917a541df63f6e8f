"""``cavnet extract`` (and ``probe``) over Dask: the run plan and consolidation (``run``), the tasks and
their failure handling (``tasks``), the worker side (``worker``) and the cluster (``cluster``)."""
