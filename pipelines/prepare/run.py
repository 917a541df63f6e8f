"""``cavnet prepare`` wired: plan the files, re-encode them on Dask, journal each result, write the layout.

A rerun of the same command (after a kill, a full disk, a Ctrl-C) skips every file the journal holds and
reuses every output already committed, deletes stray tmp files, and finishes the tables; a finished prepare
reruns as a no-op. The whole corpus is written out, whatever ``--split``/``--limit`` select (see
:mod:`.layout`); other re-encoding settings on the same ``--out`` are refused.
"""

from __future__ import annotations

import os
import shutil
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from cavnet.extract.config import PrepareConfig
from cavnet.extract.datasets import SYNTH_DEFAULT, Corpus, load_manifest
from cavnet.extract.files.outputs import Output, check_outputs, claim_folder
from cavnet.extract.manifest import Manifest
from cavnet.extract.status import PREPARED
from cavnet.extract.store.lock import output_lock
from cavnet.pipelines.extract.options import RunOptions
from cavnet.pipelines.prepare import layout
from cavnet.pipelines.prepare.tasks import PrepareChunk, PrepareItem

ESTIMATE_SAMPLE = 16  # files whose headers the dry run reads to estimate the output


@dataclass(frozen=True)
class PrepareSource(Corpus):
    """The corpus a prepare reads (``dataset`` k400 | csv | synth, its folder, its CSV), and what prepare
    derives from it."""

    @property
    def base(self) -> Path:
        """The folder the videos' relative paths start from."""
        if self.dataset == "csv":
            return self.root if self.root is not None else Path(self.manifest).parent
        return self.root if self.root is not None else SYNTH_DEFAULT

    def full(self) -> Manifest:
        """Every video of the corpus, whatever the command selected."""
        return load_manifest(self.dataset, self.base if self.dataset != "csv" else self.root, self.manifest)

    def key(self, config: PrepareConfig) -> dict[str, Any]:
        manifest = str(Path(self.manifest).resolve()) if self.dataset == "csv" else None
        return {"plan": 1, "config": config.to_dict(), "dataset": "csv" if self.dataset == "csv" else "k400",
                "source": str(self.base.resolve()), "manifest": manifest}

    def extract_hint(self, out: Path) -> str:
        if self.dataset == "csv":
            return f"cavnet extract --dataset csv --manifest {out / layout.CSV_MANIFEST} ..."
        return f"cavnet extract --dataset k400 --root {out} ..."


@dataclass
class PrepareSummary:
    """``counts``: statuses of the selected files; ``run``: files handed to Dask this time (``reused`` of
    them had their output already); ``skipped``: files the journal held."""

    out: Path
    files: int
    counts: dict[str, int] = field(default_factory=dict)
    run: int = 0
    reused: int = 0
    skipped: int = 0
    src_bytes: int = 0
    bytes: int = 0
    seconds: float = 0.0
    table: Path | None = None

    def lines(self, hint: str) -> list[str]:
        kept = {k: v for k, v in self.counts.items() if k != PREPARED}
        why = ", ".join(f"{k} {v}" for k, v in sorted(kept.items()))
        return [f"{self.out}: {self.files} files in {self.seconds:.1f} s: prepared {self.counts.get(PREPARED, 0)}, "
                f"kept as the original {sum(kept.values())}" + (f" ({why})" if why else "")
                + f"; run {self.run} (outputs reused {self.reused}), already done {self.skipped}",
                f"  {_size(self.src_bytes)} of source -> {_size(self.bytes)} prepared; table {self.table}",
                f"  next: {hint}"]


def _size(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1000.0
    return ""


def _todo(selected: Manifest, out: Path, dst: dict[str, Path],
          records: dict[str, dict[str, Any]]) -> list[PrepareItem]:
    """The selected files the journal does not mark done, in manifest order."""
    return [PrepareItem(r.video_id, os.path.abspath(r.path), str(out / dst[r.video_id]), str(dst[r.video_id]))
            for r in selected.rows if not layout.is_done(records.get(r.video_id), r, out / dst[r.video_id])]


def run_prepare(selected: Manifest, source: PrepareSource, config: PrepareConfig, opts: RunOptions, out: Path,
                echo: Callable[[str], None] = print, progress: bool = True,
                dry_run: bool = False) -> PrepareSummary | None:
    """Prepare the ``selected`` videos of ``source`` into ``out``; ``dry_run``: print the plan and the disk it
    needs, write nothing (returns None)."""
    t0 = time.perf_counter()
    full = source.full()
    dst = layout.destinations(full, source.base)
    if dry_run:
        for line in plan_lines(selected, source, config, out, dst, opts):
            echo(line)
        return None
    layout.check_out(out, source.base, source.dataset)
    # a folder of other files (or another command's output) is refused; a prepared corpus of an older
    # cavnet (its plan, no marker) is taken over
    check_outputs([Output(out, "--out", folder=True)], source.input_files(), "prepare", legacy=(layout.PLAN,))
    with output_lock(out, "prepared corpus"):
        claim_folder(out, "prepare")
        layout.check_plan(out, source.key(config), write=True)
        if layout.remove_strays(out):
            echo(f"{out}: removed the tmp files of an earlier run that was stopped")
        records = layout.read_journal(out)
        todo = _todo(selected, out, dst, records)
        for item in todo:  # prepared from a source that changed since: not to be reused
            if records.get(item.video_id, {}).get("status") == PREPARED:
                Path(item.dst).unlink(missing_ok=True)
        summary = PrepareSummary(out, len(selected), skipped=len(selected) - len(todo))
        if todo:
            _run(todo, config, opts, out, records, summary, echo, progress)
        if source.dataset == "csv":
            layout.write_csv_manifest(out, full, records)
        else:
            layout.write_k400(out, source.base, full, records, dst)
        summary.table = layout.write_table(out, full, records)
    mine = [records[r.video_id] for r in selected.rows if r.video_id in records]
    summary.counts = dict(Counter(r["status"] for r in mine).most_common())
    summary.src_bytes = sum(int(r.get("src_bytes") or 0) for r in mine)
    summary.bytes = sum(int(r.get("bytes") or 0) for r in mine)
    summary.seconds = time.perf_counter() - t0
    return summary


def _run(todo: list[PrepareItem], config: PrepareConfig, opts: RunOptions, out: Path,
         records: dict[str, dict[str, Any]], summary: PrepareSummary, echo: Callable[[str], None],
         progress: bool) -> None:
    """The files of ``todo`` on the Dask cluster, ``shard_size`` per task; every result journaled at once."""
    from tqdm import tqdm

    from cavnet.pipelines.extract.cluster import dask_client
    from cavnet.pipelines.extract.tasks import stream_tasks
    from cavnet.pipelines.prepare.tasks import prepare_chunk

    size = max(1, opts.shard_size)
    chunks = [PrepareChunk(i, tuple(todo[s:s + size]), config) for i, s in enumerate(range(0, len(todo), size))]
    bar = tqdm(total=summary.files, initial=summary.skipped, unit="file", desc="prepare", disable=not progress,
               dynamic_ncols=True)

    def done(result: tuple[int, list[dict[str, Any]]]) -> None:
        lines = result[1]
        layout.append_journal(out, lines)
        records.update({line["video_id"]: line for line in lines})
        summary.run += len(lines)
        summary.reused += sum(bool(line.get("reused")) for line in lines)
        bar.update(len(lines))
        bar.set_postfix(kept=sum(line["status"] != PREPARED for line in records.values()))

    try:
        with dask_client(opts.scheduler, opts.workers, "cpu", echo) as client:
            stream_tasks(client, prepare_chunk, chunks, (), "prepare chunk", done, echo, opts.window)
    finally:
        bar.close()


def plan_lines(selected: Manifest, source: PrepareSource, config: PrepareConfig, out: Path,
               dst: dict[str, Path], opts: RunOptions) -> list[str]:
    """What a run would do, and the disk it needs (the dry run's output)."""
    import av

    from cavnet.extract.media.transcode import estimate_bytes

    if (out / layout.PLAN).exists():
        layout.check_plan(out, source.key(config), write=False)
    records = layout.read_journal(out)
    todo = _todo(selected, out, dst, records)
    splits = Counter(r.split for r in selected.rows)
    sizes = {i.src: stamp[0] for i in todo if (stamp := layout.source_stamp(i.src))}
    src_bytes = sum(sizes.values())
    step = max(1, len(todo) // ESTIMATE_SAMPLE)
    ratios = [e / sizes[i.src] for i in todo[::step][:ESTIMATE_SAMPLE]
              if sizes.get(i.src) and (e := estimate_bytes(i.src, config)) is not None]
    need = src_bytes * (sum(ratios) / len(ratios)) if ratios else src_bytes
    how = (f"estimated from {len(ratios)} sampled file(s) at {_bpp()} bits per output pixel plus the audio"
           if ratios else "no sampled header read: the source's size")
    free = shutil.disk_usage(next(p for p in [out, *out.parents] if p.exists())).free
    verdict = "enough" if free > need * 1.05 else "NOT enough"
    where = layout.CSV_MANIFEST if source.dataset == "csv" else "the source's CSVs, links to the originals kept"
    return [f"prepare (dry run): {len(selected)} files ("
            + ", ".join(f"{k} {v}" for k, v in sorted(splits.items())) + f") from {source.base} -> {out}",
            f"  already done {len(selected) - len(todo)}; to do {len(todo)}, {_size(src_bytes)} of source, "
            f"in tasks of {opts.shard_size} on " + (f"the cluster at {opts.scheduler}" if opts.scheduler
                                                    else f"{opts.workers} local workers"),
            f"  re-encode: H.264 by libx264 (PyAV {av.__version__}), preset {config.preset}, crf {config.crf}, short "
            f"side {config.short_side} (never upscaled), a keyframe every {config.keyframe_seconds:g} s, frame rate "
            "and timestamps kept; audio copied when MP4 takes its codec, else AAC at "
            f"{config.audio_bitrate // 1000} kb/s",
            f"  disk: about {_size(need)} for the files to do ({how}); free on {out}'s file system "
            f"{_size(free)}: {verdict}",
            f"  writes: {layout.TABLE}, {layout.JOURNAL}, {where}; then: {source.extract_hint(out)}"]


def _bpp() -> str:
    from cavnet.extract.media.transcode import BITS_PER_PIXEL

    return f"{BITS_PER_PIXEL:g}"
