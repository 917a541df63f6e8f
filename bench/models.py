"""Model figures of ``cavnet bench``: backbones on pre-decoded tensors, store reads, fusion training steps.

Backbones run in as many processes as extraction has workers (one per GPU on CUDA), each with its share of
the CPU threads: first every precision and layout the device has, on tensors already on the device, then
the extraction path itself (:class:`~cavnet.extract.embed.BatchEmbedder`: uint8 clips and
log-mel examples from host memory, batched across videos) in the mode it picks, in videos/s.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable


from cavnet.extract.config import ExtractConfig
from cavnet.extract.manifest import ManifestRow
from cavnet.bench.timing import LOCAL, Sync, for_at_least, interleaved, rates, run_ranks, summary, timed


@dataclass(frozen=True)
class BackboneJob:
    config: ExtractConfig
    device: str
    threads: int  # torch threads per rank on CPU
    batch_clips: int
    videos: int  # videos per rank for the extraction-path figure
    repeats: int
    seconds: float  # a timed mode run loops for at least this long
    sample: ManifestRow  # a corpus video: its decoded clips and examples feed the extraction-path figure


def _device(job: BackboneJob, sync: Sync):
    import torch

    if job.device == "cuda":
        return torch.device("cuda", sync.rank % torch.cuda.device_count())
    torch.set_num_threads(job.threads)
    return torch.device("cpu")


def _mode_table(model, example, sync: Sync, repeats: int, seconds: float) -> dict[str, list]:
    """Spans of ``model`` on ``example`` in every mode of the device (all precisions), interleaved."""
    import torch

    from cavnet.extract.runtime import RunMode, candidate_modes, forward, prepare

    works = {}
    for mode in candidate_modes(example.device, "auto"):
        def step(mode: RunMode = mode) -> float:
            forward(model, example, mode)
            if example.device.type == "cuda":
                torch.cuda.synchronize(example.device)
            return example.shape[0]

        def work(mode: RunMode = mode, loop: Callable[[], float] = for_at_least(seconds, step)) -> float:
            prepare(model, mode, example.dim())  # the weights' layout, if the last pass used another
            return loop()

        prepare(model, mode, example.dim())
        step()
        step()  # warm-up (cuDNN autotuning on CUDA)
        works[mode.name] = work
    return interleaved(works, sync, repeats)


def _backbone_rank(job: BackboneJob, sync: Sync) -> dict[str, Any]:
    import torch

    from cavnet.extract.embed import BatchEmbedder, build_backbones, decode_item

    device = _device(job, sync)
    s, lm = job.config.sampling, job.config.logmel
    visual, audio = build_backbones(job.config, device)
    clips = torch.randn((job.batch_clips, 3, s.frames, s.size, s.size), device=device)
    examples = torch.randn((4 * job.batch_clips, 1, lm.example_frames, lm.n_mels), device=device)
    out: dict[str, Any] = {"visual": _mode_table(visual, clips, sync, job.repeats, job.seconds),
                           "audio": _mode_table(audio, examples, sync, job.repeats, job.seconds)}
    del visual, audio, clips, examples
    item = decode_item(job.sample, job.config)  # the real shapes: clips and examples of a corpus video
    embedder = BatchEmbedder(job.config, str(device), job.batch_clips)

    def run() -> float:
        done = 0
        for i in range(job.videos):
            done += len(embedder.add(i, item))
        return done + len(embedder.flush())

    run()  # warm-up: layouts timed and chosen, staging buffers allocated
    out["pipeline"] = timed(for_at_least(job.seconds, run), sync, job.repeats, warmup=0)
    out["modes"] = {k: v.name for k, v in embedder.modes.items()}
    return out


def measure_backbones(job: BackboneJob, ranks: int) -> dict[str, Any]:
    """Clips/s (visual), segments/s (audio) per mode, the fastest of each, and the extraction path's videos/s."""
    per_rank = run_ranks(_backbone_rank, job, ranks, "backbone")
    section: dict[str, Any] = {"processes": ranks, "threads_per_process": job.threads if job.device == "cpu" else None,
                               "batch_clips": job.batch_clips, "batch_segments": 4 * job.batch_clips}
    for modality, unit in (("visual", "clips_per_s"), ("audio", "segments_per_s")):
        table = {mode: summary(rates([r[modality][mode] for r in per_rank])) for mode in per_rank[0][modality]}
        fastest = max(table, key=lambda k: table[k]["median"])
        section[modality] = {"unit": unit, "modes": table, "fastest": fastest,
                             "fastest_per_s": table[fastest]["median"]}
    section["pipeline"] = {"videos_per_s": summary(rates([r["pipeline"] for r in per_rank])),
                           "modes": per_rank[0]["modes"], "videos_per_process": job.videos}
    return section


# ------------------------------------------------------------------------------- stage two: store and fusion
class _Epochs:
    """Passes over a split: batches only (``read``), or fuse-train epochs with their own model (``train``:
    the real loop, model, loss, optimiser and scheduler). Each call returns what it did (batches, videos)."""

    def __init__(self, store, split, batch_size: int, device) -> None:
        import torch

        from cavnet.fuse.train_config import TrainConfig
        from cavnet.fuse.run.fusion import build_training, fusion_config_for

        self.split, self.batch_size, self.device, self.seed = split, batch_size, device, 0
        self.tcfg = TrainConfig(batch_size=batch_size, device=str(device))
        self.model, self.loss_fn, self.optimizer, self.scheduler = build_training(
            fusion_config_for(store, {}), self.tcfg, 10**6 // self.tcfg.epochs, device)
        self.class_emb = torch.from_numpy(store.class_embedding).to(device)

    def _batches(self):
        import torch

        self.seed += 1
        return self.split.batches(self.batch_size, torch.Generator().manual_seed(self.seed))

    def read(self) -> float:
        return float(sum(1 for _ in self._batches()))

    def train(self) -> float:
        import torch

        from cavnet.fuse.engine import train_one_epoch

        stats = train_one_epoch(self.model, self.loss_fn, self.optimizer, self.scheduler, self._batches(),
                                self.class_emb, self.tcfg.targets, self.device)
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        return float(stats["videos"])


def measure_store(path: str, device: str, batch_size: int, repeats: int, threads: int,
                  seconds: float) -> dict[str, Any]:
    """Store read (batches/s, streamed from HDF5 vs held in RAM) and fuse-train videos/s fed by each;
    passes of at least ``seconds``, memory and store interleaved, one warm-up pass each. Runs in a fresh
    process: torch's CPU thread pool can be left much slower by earlier changes of its thread count."""
    return run_ranks(_store_rank, (path, device, batch_size, repeats, threads, seconds), 1, "store")[0]


def _store_rank(job: tuple, sync: Sync) -> dict[str, Any]:
    import time

    import torch

    from cavnet.extract.store.reader import FeatureStore
    from cavnet.fuse.data import InMemorySplit, StreamedSplit

    path, device, batch_size, repeats, threads, seconds = job
    torch.set_num_threads(threads)
    dev = torch.device("cuda" if device == "cuda" else "cpu")
    out: dict[str, Any] = {"batch_size": batch_size, "threads": threads}
    with FeatureStore(path) as store:
        index = store.rows().select("train")
        t0 = time.perf_counter()
        memory = InMemorySplit(store, index, "label")
        out["load_into_ram_s"], out["rows"] = time.perf_counter() - t0, len(index)
        t0 = time.perf_counter()
        resident = InMemorySplit(store, index, "label", dev)  # on CPU the same tensors as ``memory``
        out["load_onto_device_s"] = time.perf_counter() - t0
        runs = {"memory": _Epochs(store, memory, batch_size, dev),
                "store": _Epochs(store, StreamedSplit(store, index, "label"), batch_size, dev),
                "device": _Epochs(store, resident, batch_size, dev)}
        for kind, unit in (("read", "batches"), ("train", "videos")):
            works = {name: getattr(run, kind) for name, run in runs.items()}
            for work in works.values():
                work()  # warm-up
            spans = interleaved({n: for_at_least(seconds, w) for n, w in works.items()}, LOCAL, repeats)
            for name in runs:
                out[f"{kind}_{name}_{unit}_per_s"] = summary(rates([spans[name]]))
    out["ratios"] = {
        "read store/memory": out["read_store_batches_per_s"]["median"] / out["read_memory_batches_per_s"]["median"],
        "train store/memory": out["train_store_videos_per_s"]["median"] / out["train_memory_videos_per_s"]["median"],
        "train device/memory": out["train_device_videos_per_s"]["median"] / out["train_memory_videos_per_s"]["median"],
    }
    return out
