"""Stage one, wired: plan shards, run them on Dask, embed texts, consolidate the store.

A rerun of the same command skips committed shards and deletes stray ``.tmp`` files; once the store is
consolidated (and its shard folder removed) a rerun is a no-op. A different configuration or corpus for
an existing store or shard folder is refused.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections import Counter
import json
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from cavnet import __version__
from cavnet.errors import CavnetError
from cavnet.extract.backbones import feature_dim
from cavnet.extract import faults
from cavnet.extract.config import ExtractConfig
from cavnet.extract.device import decode_workers
from cavnet.pipelines.extract.options import RunOptions
from cavnet.extract.manifest import Manifest
from cavnet.extract.store import fsfault
from cavnet.extract.store.lock import output_lock
from cavnet.extract.store.headers import read_headers
from cavnet.extract.store.reader import read_index
from cavnet.extract.store.writer import StoreDims, consolidate, shard_statuses, stray_tmp_files, tmp_name
from cavnet.extract.text_tables import embed_texts
from cavnet.pipelines.extract.growth import first_difference, plan_store
from cavnet.pipelines.extract.worker import ShardResult, ShardSpec


@dataclass
class ExtractSummary:
    store: Path
    videos: int
    counts: dict[str, int] = field(default_factory=dict)
    shards_run: int = 0
    shards_skipped: int = 0
    seconds: float = 0.0
    already_done: bool = False


def _corpus_key(manifest: Manifest) -> str:
    h = hashlib.sha256()
    for r in manifest.rows:
        h.update(f"{r.video_id}\t{r.split}\t{r.label}\n".encode())
    return h.hexdigest()


def _plan(shard_dir: Path, config: ExtractConfig, manifest: Manifest, shard_size: int) -> list[ShardSpec]:
    """Shards of the manifest; the plan is recorded once so that reruns cut the corpus the same way."""
    plan_file = shard_dir / "plan.json"
    # through JSON, as it is recorded (tuples become lists), so that a rerun compares like with like
    key = json.loads(json.dumps({"config": config.content_key(), "corpus": _corpus_key(manifest)}))
    if plan_file.exists() or plan_file.is_symlink():
        recorded_key, shard_size = _read_plan(plan_file, shard_dir)
        if recorded_key != key:
            what = "corpus" if recorded_key.get("corpus") != key["corpus"] else \
                f"configuration ({first_difference(recorded_key.get('config', {}), key['config'])})"
            raise CavnetError(f"{shard_dir} holds shards of another {what}; use another --out or delete it")
    else:
        if shard_dir.exists() and not shard_dir.is_dir():
            raise CavnetError(f"{shard_dir} is not a folder; use another --out or delete it")
        shard_dir.mkdir(parents=True, exist_ok=True)
        tmp = tmp_name(plan_file)
        tmp.write_text(json.dumps({"key": key, "shard_size": shard_size}, indent=1))
        os.replace(tmp, plan_file)
    rows = manifest.rows
    return [ShardSpec(i, start, rows[start:start + shard_size], str(shard_dir / f"shard-{i:05d}.h5"))
            for i, start in enumerate(range(0, len(rows), shard_size))]


def _read_plan(plan_file: Path, shard_dir: Path) -> tuple[dict, int]:
    """The recorded key and shard size of ``plan.json``; refuses a damaged one (valid JSON or not)."""
    def damaged(why: str) -> CavnetError:
        return CavnetError(f"{plan_file} is damaged ({why}); delete {shard_dir} and rerun")
    try:
        recorded = json.loads(plan_file.read_text())
    except (OSError, ValueError) as exc:
        raise damaged(fsfault.cause(exc) if isinstance(exc, OSError) else f"not JSON: {exc}") from None
    key = recorded.get("key") if isinstance(recorded, dict) else None
    size = recorded.get("shard_size") if isinstance(recorded, dict) else None
    if not isinstance(key, dict) or not isinstance(key.get("config"), dict) or not isinstance(key.get("corpus"), str):
        raise damaged("no valid key")
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise damaged(f"shard_size {size!r} is not a positive integer")
    return key, size


def _pending(shards: list[ShardSpec], echo: Callable[[str], None]) -> list[ShardSpec]:
    """Shards still to run: not committed, damaged, or committed with other rows (the file is removed).
    Committed files are first read in a child process with a time bound (damaged HDF5 can hang)."""
    existing = [Path(s.path) for s in shards if Path(s.path).exists()]
    damaged = {p.path: p.error for p in read_headers(existing) if p.error}
    todo = []
    for spec in shards:
        path = Path(spec.path)
        if path in damaged:
            echo(f"shard {spec.index}: {path} is damaged ({damaged[path]}); redoing it")
        elif path.exists() and shard_statuses(path, spec.start, [r.video_id for r in spec.rows]) is not None:
            continue
        if path.is_dir() and not path.is_symlink():
            raise CavnetError(f"{path} is a folder where a shard file belongs; move it away and rerun")
        path.unlink(missing_ok=True)
        todo.append(spec)
    return todo


_OURS = re.compile(r"(shard-\d{5}\.h5|plan\.json)(\.\d+-[0-9a-f]{8}\.tmp)?$")


def _remove_strays(out: Path, shard_dir: Path, echo: Callable[[str], None]) -> None:
    """Delete tmp files of writers that died before their rename (the output lock says none is alive):
    beside the store and in the shard folder. Files cavnet did not write are kept and reported."""
    strays = stray_tmp_files(out)
    if shard_dir.is_dir():
        strays += [p for p in shard_dir.iterdir() if p.name.endswith(".tmp") and _OURS.match(p.name)]
        foreign = sorted(p.name for p in shard_dir.iterdir() if not _OURS.match(p.name))
        if foreign:
            echo(f"warning: {shard_dir} holds {len(foreign)} file(s) cavnet did not write, kept: "
                 + ", ".join(foreign[:5]) + (" ..." if len(foreign) > 5 else ""))
    for stray in strays:
        stray.unlink(missing_ok=True)


def _remove_shard_dir(shard_dir: Path, echo: Callable[[str], None]) -> None:
    """Remove the shard folder after consolidation, but keep (and report) files cavnet did not write."""
    if not shard_dir.is_dir():
        return
    for p in shard_dir.iterdir():
        if _OURS.match(p.name) and not p.is_dir():
            p.unlink(missing_ok=True)
    try:
        shard_dir.rmdir()
    except OSError:
        left = sorted(p.name for p in shard_dir.iterdir())
        echo(f"warning: kept {shard_dir}: it holds {len(left)} file(s) cavnet did not write ({', '.join(left[:5])})")


def run_extract(manifest: Manifest, config: ExtractConfig, opts: RunOptions, out: Path,
                echo: Callable[[str], None] = print, progress: bool = True,
                on_shard: Callable[[ShardResult], None] | None = None) -> ExtractSummary:
    """Extract ``manifest`` into the store ``out``; returns counts by status (they add up to the manifest).
    ``on_shard`` sees the result of every shard run (worker, seconds, resident memory)."""
    t0 = time.perf_counter()
    if len(manifest) == 0:
        raise CavnetError("the manifest selects no videos (check --split and --limit)")
    opts = dataclasses.replace(opts, decode_workers=decode_workers(opts.decode_workers, opts.device,
                                                                   remote=opts.scheduler is not None))
    shard_dir = out.with_name(out.name + ".shards")
    fsfault.check_writable(out, [shard_dir.name])
    with output_lock(out, "store"):
        return _run_locked(manifest, config, opts, out, shard_dir, echo, progress, on_shard, t0)


def _run_locked(manifest: Manifest, config: ExtractConfig, opts: RunOptions, out: Path, shard_dir: Path,
                echo: Callable[[str], None], progress: bool, on_shard: Callable[[ShardResult], None] | None,
                t0: float) -> ExtractSummary:
    plan = plan_store(out, config, manifest)
    if plan.done:
        _remove_strays(out, shard_dir, echo)
        _remove_shard_dir(shard_dir, echo)  # killed between the store's rename and this cleanup
        return ExtractSummary(out, len(manifest), _store_counts(out), already_done=True,
                              seconds=time.perf_counter() - t0)
    if plan.base is not None:
        echo(f"{out}: growing the store by {len(plan.todo)} videos ({len(plan.rows) - len(plan.todo)} kept)")
    if plan.classes_changed:
        echo(f"{out}: {plan.classes_changed}")
    shards = _plan(shard_dir, config, plan.todo, opts.shard_size) if len(plan.todo) else []
    _remove_strays(out, shard_dir, echo)
    todo = _pending(shards, echo)
    if todo:
        from cavnet.pipelines.extract.tasks import run_shards
        run_shards(todo, config, opts, len(plan.todo), len(shards) - len(todo), echo, progress, on_shard)
    dims = StoreDims(config.sampling.clips, config.audio_sampling.segments,
                     feature_dim(config, "visual"), feature_dim(config, "audio"), config.views.count)
    texts = embed_texts(plan.todo, config, opts.device)
    try:
        consolidate(out, [Path(s.path) for s in shards], plan.rows, dims, texts, config.to_json(), __version__,
                    faults.before_commit, plan.base)
    except (OSError, RuntimeError) as exc:
        raise CavnetError(f"writing {out} failed ({exc}); the shards in {shard_dir} are kept: "
                          "fix the cause and rerun the same command") from None
    _remove_shard_dir(shard_dir, echo)
    return ExtractSummary(out, len(plan.rows), _store_counts(out), len(todo), len(shards) - len(todo),
                          time.perf_counter() - t0)


def _store_counts(out: Path) -> dict[str, int]:
    return dict(Counter(read_index(out).statuses).most_common())
