"""How an extraction (or probe) runs on Dask; none of it changes the numbers written, so it is not part of
the store's config."""

from __future__ import annotations

from dataclasses import dataclass

from cavnet.configs import MAX_WORKERS, Config, check_device, check_int


@dataclass(frozen=True)
class RunOptions(Config):
    """shard_size: videos per Dask task and shard file. workers: local Dask workers (ignored with
    ``scheduler``, the address of an existing cluster). decode_workers: decode processes per worker (0:
    decode in the worker; None: ``extract.device.decode_workers``'s rule, resolved by ``run_extract``).
    device: backbones' device. batch_clips: clips per backbone batch. limit: only the first N videos.
    window: shards in flight (0: twice the workers)."""

    shard_size: int = 64
    workers: int = 2
    scheduler: str | None = None
    decode_workers: int | None = None
    device: str = "auto"
    batch_clips: int = 64
    limit: int | None = None
    window: int = 0

    def __post_init__(self) -> None:
        for name, top in (("shard_size", 1 << 20), ("workers", MAX_WORKERS), ("batch_clips", 1 << 16)):
            check_int("--" + name.replace("_", "-"), getattr(self, name), 1, top)
        if self.decode_workers is not None:
            check_int("--decode-workers", self.decode_workers, 0, MAX_WORKERS)
        if self.limit is not None:
            check_int("--limit", self.limit, 1)
        check_int("window", self.window, 0, 1 << 16)
        check_device("--device", self.device, ("auto", "cpu", "cuda"))
        if self.scheduler is not None:
            from cavnet.pipelines.extract.cluster import scheduler_address

            scheduler_address(self.scheduler)  # a malformed address is refused before any work
