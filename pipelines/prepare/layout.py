"""What ``cavnet prepare`` keeps in the prepared folder ``DST``, and where each video of the source goes in it.

- ``prepare.json``: the plan (the re-encoding settings and the source); a rerun with others is refused.
- ``prepare.jsonl``: the journal, one JSON line per finished file (its result, the source's size and
  modification time), appended by the client as results come in; a rerun skips every file it holds, unless
  the prepared file is gone or (for a file kept as the original) the source changed since.
- ``prepare.csv``: the prepare table, one row per video of the source that has been through prepare.
- Kinetics (``k400``, ``synth``): the source's CSVs (and ``captions.csv``) copied to the same places, each
  video at its source's relative path with the extension ``.mp4`` when prepared, else a symbolic link to the
  original there (a failed file, or one not selected by ``--split``/``--limit``): ``DST`` always holds the
  whole corpus, so ``extract --root DST`` lists every video, with the same ids and class ids as the source.
- ``csv``: ``manifest.csv``, the source CSV's rows (path, label, split, text), each path pointing at the
  prepared file (relative to ``DST``) or at the original (absolute).
"""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
from pathlib import Path
from typing import Any, Iterable

from cavnet.errors import CavnetError
from cavnet.extract.manifest import Manifest, ManifestRow
from cavnet.extract.status import PREPARED
from cavnet.extract.store import fsfault
from cavnet.extract.store.writer import tmp_name

PLAN, JOURNAL, TABLE, CSV_MANIFEST = "prepare.json", "prepare.jsonl", "prepare.csv", "manifest.csv"
TABLE_FIELDS = ("video_id", "split", "label", "status", "error", "source", "path", "src_bytes", "bytes", "width",
                "height", "out_width", "out_height", "fps", "seconds", "video_codec", "audio")
_TMP = re.compile(r"\.\d+-[0-9a-f]{8}\.tmp$")
EXTERNAL = "_external"  # where files from outside the source folder go (a csv manifest's absolute paths)


def _relative(row: ManifestRow, base: Path) -> Path:
    """``row``'s path relative to ``base`` (the source folder), or ``_external/NAME`` outside it."""
    rel = Path(os.path.relpath(os.path.abspath(row.path), os.path.abspath(base)))
    return Path(EXTERNAL) / rel.name if rel.parts[:1] == ("..",) else rel


def destinations(manifest: Manifest, base: Path) -> dict[str, Path]:
    """``{video_id: path relative to DST}``: the source's relative path with ``.mp4``; two sources that
    would meet (``a.mkv`` and ``a.webm``) give the later one its video id as the name."""
    taken: set[Path] = set()
    out = {}
    for row in manifest.rows:
        rel = _relative(row, base).with_suffix(".mp4")
        if rel in taken:
            rel = rel.with_name(f"{row.video_id}.mp4")
        taken.add(rel)
        out[row.video_id] = rel
    return out


def check_plan(out: Path, key: dict[str, Any], write: bool) -> None:
    """Refuse a ``DST`` prepared with another plan; record ``key`` when ``write`` and there is none."""
    plan = out / PLAN
    if plan.exists():
        try:
            recorded = json.loads(plan.read_text())
        except (OSError, ValueError) as exc:
            raise CavnetError(f"{plan} is damaged ({exc}); delete it (the prepared files stay) and rerun") from None
        if recorded != key:
            from cavnet.pipelines.extract.growth import first_difference

            raise CavnetError(f"{out} was prepared with another plan ({first_difference(recorded, key)}); "
                              "use another --out")
    elif write:
        tmp = tmp_name(plan)
        tmp.write_text(json.dumps(key, indent=1))
        os.replace(tmp, plan)


def read_journal(out: Path) -> dict[str, dict[str, Any]]:
    """The latest record of each video in the journal (a torn last line, from a kill, is ignored)."""
    records: dict[str, dict[str, Any]] = {}
    try:
        lines = (out / JOURNAL).read_text().splitlines()
    except FileNotFoundError:
        return records
    for line in lines:
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict) and "video_id" in record:
            records[record["video_id"]] = record
    return records


def append_journal(out: Path, records: Iterable[dict[str, Any]]) -> None:
    """Append records and flush them to the disk (the client is the journal's only writer)."""
    with open(out / JOURNAL, "a") as fh:
        for record in records:
            fh.write(json.dumps(record, default=str) + "\n")
        fh.flush()
        os.fsync(fh.fileno())


def source_stamp(path: str) -> list[int] | None:
    """``[size, mtime_ns]`` of a source file, None when it cannot be read."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return [st.st_size, st.st_mtime_ns]


def is_done(record: dict[str, Any] | None, row: ManifestRow, dst: Path) -> bool:
    """A file the journal holds needs nothing more while its source is unchanged (size and modification
    time: a re-downloaded file is done again) and, when it was prepared, the prepared file is still there."""
    if record is None or record.get("stamp") != source_stamp(row.path):
        return False
    return record.get("status") != PREPARED or (dst.is_file() and not dst.is_symlink())


def remove_strays(out: Path) -> int:
    """Delete the tmp files of writers that died before their rename (the run holds DST's lock)."""
    removed = 0
    for folder, _, files in os.walk(out):
        for name in files:
            if _TMP.search(name):
                os.unlink(os.path.join(folder, name))
                removed += 1
    return removed


def _prepared(record: dict[str, Any] | None, out: Path) -> bool:
    return bool(record) and record["status"] == PREPARED and (out / record["path"]).is_file() and \
        not (out / record["path"]).is_symlink()


def write_table(out: Path, full: Manifest, records: dict[str, dict[str, Any]]) -> Path:
    """``DST/prepare.csv``: every video of ``full`` that has a record, in the source's order."""
    path = out / TABLE
    tmp = tmp_name(path)
    with open(tmp, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=TABLE_FIELDS, extrasaction="ignore")
        writer.writeheader()
        for row in full.rows:
            record = records.get(row.video_id)
            if record is not None:
                writer.writerow({**record, "split": row.split, "label": row.label_name})
    os.replace(tmp, path)
    return path


def _link(at: Path, target: str) -> None:
    """A symbolic link ``at`` -> ``target`` (replacing a link, never a file)."""
    if at.is_symlink() and os.readlink(at) == target:
        return
    if at.exists() and not at.is_symlink():
        return  # a prepared file (of a run killed before its journal line): the next run records it
    at.parent.mkdir(parents=True, exist_ok=True)
    tmp = tmp_name(at)
    os.symlink(target, tmp)
    os.replace(tmp, at)


def write_k400(out: Path, root: Path, full: Manifest, records: dict[str, dict[str, Any]],
               dst: dict[str, Path]) -> None:
    """The source's CSVs copied to ``DST``; a link to the original for every video not prepared."""
    for folder in (root, root / "annotations"):
        for src in sorted(folder.glob("*.csv")) if folder.is_dir() else []:
            if folder == root and src.name in (TABLE, CSV_MANIFEST):
                continue
            target = out / src.relative_to(root)
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp = tmp_name(target)
            shutil.copyfile(src, tmp)
            os.replace(tmp, target)
    for row in full.rows:
        original = out / _relative(row, root)
        if _prepared(records.get(row.video_id), out):
            if original != out / dst[row.video_id] and original.is_symlink():
                original.unlink()  # the link of an earlier run, before this file was prepared
        elif os.path.exists(row.path):
            _link(original, os.path.abspath(row.path))
        elif original.is_symlink():
            original.unlink()


def write_csv_manifest(out: Path, full: Manifest, records: dict[str, dict[str, Any]]) -> Path:
    """``DST/manifest.csv``: every row of the source CSV, pointing at its prepared file or its original."""
    path = out / CSV_MANIFEST
    tmp = tmp_name(path)
    with open(tmp, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["path", "label", "split", "text"])
        for row in full.rows:
            record = records.get(row.video_id)
            where = record["path"] if _prepared(record, out) else os.path.abspath(row.path)
            writer.writerow([where, row.label_name, row.split, row.text])
    os.replace(tmp, path)
    return path


def check_out(out: Path, root: Path | None, dataset: str) -> None:
    """``DST`` must not be the source folder, nor (for a Kinetics layout, found by walking it) inside it."""
    fsfault.check_writable(out, [JOURNAL, TABLE])
    if out.exists() and not out.is_dir():
        raise CavnetError(f"--out {out} is a file; prepare to a folder")
    if root is None:
        return
    src, dst = root.resolve(), out.resolve()
    if dst == src or (dataset != "csv" and src in dst.parents):
        raise CavnetError(f"--out {out} is inside the source folder {root}; prepare to a folder outside it")
    if dst in src.parents:
        raise CavnetError(f"--out {out} holds the source folder {root}; prepare to a folder outside it")
