"""The data ``cavnet bench`` measures on: a generated video corpus and a synthetic feature store.

Videos are AV-Synth pictures and sounds (moving pattern over a noisy background, a tone pattern with noise)
at one size and rate, encoded like a typical web corpus: H.264 (x264, B-frames) + AAC stereo at 44.1 kHz.
A folder is reused when its stamp matches the settings, so repeated benches skip the encoding.
"""

from __future__ import annotations

import json
import multiprocessing as mp
from dataclasses import asdict, dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np

from cavnet.extract.config import ExtractConfig
from cavnet.extract.manifest import Manifest, ManifestRow
from cavnet.extract.status import OK, PREPARED
from cavnet.extract.store.writer import StoreDims, TextTables, VideoFeatures, consolidate, write_shard

CLASSES = 8
AUDIO_RATE = 44100


@dataclass(frozen=True)
class CorpusSpec:
    """``videos`` files of ``seconds`` at ``size`` (W, H) and ``fps``; ``preset`` is x264's."""

    videos: int
    seconds: float = 10.0
    size: tuple[int, int] = (340, 256)
    fps: int = 30
    preset: str = "veryfast"
    seed: int = 0

    @property
    def frames(self) -> int:
        return int(round(self.seconds * self.fps))


def _encode(job: tuple[CorpusSpec, int, str]) -> None:
    """Render and encode video ``index`` of the corpus to ``path``."""
    import av

    from cavnet.extract.synth.avwrite import write_audio
    from cavnet.extract.synth import VideoSpec, render_audio, render_frames

    spec, index, path = job
    vs = VideoSpec(index, f"bench{index:05d}", 0, "train", index % CLASSES, index % CLASSES, (index // 2) % CLASSES,
                   spec.size, spec.fps, spec.seconds, AUDIO_RATE, 2, True, "", spec.seed)
    frames = render_frames(vs)
    with av.open(path, "w") as container:
        stream = container.add_stream("libx264", rate=Fraction(spec.fps))
        stream.width, stream.height, stream.pix_fmt = spec.size[0], spec.size[1], "yuv420p"
        stream.options = {"preset": spec.preset}
        stream.thread_count = 1
        audio = container.add_stream("aac", rate=AUDIO_RATE)
        audio.layout = "stereo"
        for image in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        container.mux(stream.encode(None))
        write_audio(container, audio, render_audio(vs), AUDIO_RATE)


def make_corpus(folder: Path, spec: CorpusSpec, processes: int) -> Manifest:
    """The corpus of ``spec`` in ``folder`` (made, or reused when its stamp matches) and its manifest."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / f"bench{i:05d}.mp4" for i in range(spec.videos)]
    stamp = folder / "corpus.json"
    wanted = json.dumps(asdict(spec), sort_keys=True)
    if not (stamp.exists() and stamp.read_text() == wanted and all(p.exists() for p in paths)):
        stamp.unlink(missing_ok=True)
        jobs = [(spec, i, str(p)) for i, p in enumerate(paths)]
        with mp.get_context("spawn").Pool(max(1, min(processes, len(jobs)))) as pool:
            pool.map(_encode, jobs, chunksize=1)
        stamp.write_text(wanted)
    classes = tuple(f"pattern {c}" for c in range(CLASSES))
    rows = tuple(ManifestRow(p.stem, str(p), i % CLASSES, classes[i % CLASSES], "train")
                 for i, p in enumerate(paths))
    return Manifest(rows, classes)


def make_store(path: Path, config: ExtractConfig, dims: StoreDims, rows: int, text_dim: int = 384,
               seed: int = 0) -> Path:
    """A consolidated store of ``rows`` random videos with the shapes of ``config`` (train 3/4, val 1/4)."""
    rng = np.random.default_rng(seed)
    classes = tuple(f"pattern {c}" for c in range(CLASSES))
    manifest_rows, feats = [], []
    for i in range(rows):
        label = i % CLASSES
        manifest_rows.append(ManifestRow(f"row{i:06d}", f"/bench/row{i:06d}.mp4", label, classes[label],
                                         "val" if i >= rows - rows // 4 else "train"))
        feats.append(VideoFeatures(OK, "", 10.0, 30.0,
                                   rng.standard_normal((dims.clips, dims.visual_dim), dtype=np.float32),
                                   rng.standard_normal((dims.segments, dims.audio_dim), dtype=np.float32)))
    manifest = Manifest(tuple(manifest_rows), classes)
    shard = path.with_name(path.name + ".shard.h5")
    write_shard(shard, 0, manifest.rows, feats, dims, config.to_json())
    class_emb = rng.standard_normal((CLASSES, text_dim)).astype(np.float32)
    class_emb /= np.linalg.norm(class_emb, axis=1, keepdims=True)
    texts = TextTables(list(classes), [f"a video of {c}" for c in classes], class_emb,
                       class_emb[[r.label for r in manifest.rows]], "bench-random-text")
    path.unlink(missing_ok=True)
    consolidate(path, [shard], manifest, dims, texts, config.to_json(), "bench")
    shard.unlink(missing_ok=True)
    return path


def prepare_corpus(manifest: Manifest, folder: Path, short_side: int, workers: int) -> tuple[dict[str, str], dict]:
    """The corpus after ``cavnet prepare`` (its real run, on a local Dask cluster of ``workers``) in
    ``folder``, reused when it is there: video id -> prepared file, and what the run took."""
    import csv
    import time

    from cavnet.extract.config import PrepareConfig
    from cavnet.pipelines.extract.options import RunOptions
    from cavnet.extract.datasets import load_manifest
    from cavnet.pipelines.prepare.run import PrepareSource, run_prepare

    listing = folder.with_name(folder.name + ".csv")
    listing.write_text("path,label,split\n" + "".join(f"{r.path},{r.label_name},{r.split}\n" for r in manifest.rows))
    size = max(1, len(manifest) // (2 * workers))
    t0 = time.perf_counter()
    s = run_prepare(load_manifest("csv", None, listing), PrepareSource("csv", None, listing),
                    PrepareConfig(short_side=short_side), RunOptions(shard_size=size, workers=workers), folder,
                    echo=lambda _: None, progress=False)
    seconds = time.perf_counter() - t0
    with open(folder / "manifest.csv", newline="") as fh:
        paths = [str(folder / r["path"]) for r in csv.DictReader(fh)]
    done = s.counts.get(PREPARED, 0)
    if done != len(manifest):
        raise RuntimeError(f"prepare kept {len(manifest) - done} corpus file(s) as the original: {s.counts}")
    stats = {"short_side": short_side, "files": len(manifest), "workers": workers, "seconds": seconds,
             "files_per_s": s.run / seconds if s.run else None, "run": s.run, "src_bytes": s.src_bytes,
             "bytes": s.bytes}
    return dict(zip([r.video_id for r in manifest.rows], paths)), stats
