"""The files of a training run's folder, written the same way by fuse-train, fine-tune, ablate and evaluate.

A run folder holds ``config.json`` (what was run), JSON-lines logs (``metrics.jsonl``; fine-tune adds
``steps.jsonl``), ``last.pt`` and ``best.pt``; ``run.json`` records where and how it was made. A resumed
run trims the logs back to its checkpoint (the lines after it are redone); the rest of an exact resume is
the harness's (``fuse.run.harness``).
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import sys
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any, Iterator, Sequence

import torch

from cavnet.errors import CavnetError
from cavnet.extract.files.outputs import Output, check_outputs, claim_folder
from cavnet.extract.store.fsfault import CAUSES, as_os_error, check_writable, describe
from cavnet.extract.store.lock import output_lock
from cavnet.fuse.checkpoint import Checkpoint


def plain(d: dict[str, Any]) -> dict[str, Any]:
    """Metrics as plain JSON types (what ``torch.load(weights_only=True)`` accepts)."""
    return json.loads(json.dumps(d))


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def now() -> str:
    """The time now, ISO 8601 in UTC."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def run_record(store: Any = None) -> dict[str, Any]:
    """Where and how a run was made: versions of cavnet, torch and PyAV, the command line, the host, the
    start time, and for ``store`` (an open ``FeatureStore``) its absolute path and fingerprint."""
    from cavnet import __version__

    rec: dict[str, Any] = {"cavnet": __version__, "torch": torch.__version__, "av": _version("av"),
                           "python": sys.version.split()[0], "command": [Path(sys.argv[0]).name, *sys.argv[1:]],
                           "host": socket.gethostname(), "started": now(), "ended": None}
    if store is not None:
        rec.update(store=str(Path(store.path).resolve()), store_fingerprint=store.fingerprint())
    return rec


def write_run_record(out: Path, record: dict[str, Any]) -> None:
    """``out/run.json``, written atomically."""
    Path(out).mkdir(parents=True, exist_ok=True)
    _write_atomic(Path(out) / "run.json", json.dumps(record, indent=2))


class RunFolder:
    """The files of one training run. Only the main process (``main``) writes; the others read nothing.

    ``logs`` maps each JSON-lines log to the key its lines are ordered by (``epoch`` or ``step``);
    ``context`` goes into ``run.json`` too (e.g. the corpus a fine-tune reads instead of a store).
    """

    def __init__(self, out: Path, logs: dict[str, str], main: bool = True,
                 context: dict[str, Any] | None = None, tensorboard: bool = False) -> None:
        self.out, self.logs, self.main, self.context = Path(out), logs, main, dict(context or {})
        self.best: dict[str, Any] = {"top1": -1.0}
        self.record: dict[str, Any] = {}
        self.board = _board(self.out / "tensorboard") if tensorboard and main else None

    @property
    def last(self) -> Path:
        return self.out / "last.pt"

    def resumable(self, resume: bool) -> Checkpoint | None:
        """The checkpoint to resume from: ``last.pt`` when ``resume`` and it exists, else None."""
        if not (resume and self.last.exists()):
            return None
        ckpt = Checkpoint.load(self.last)
        if ckpt.state is None:
            raise CavnetError(f"{self.last}: holds no training state to resume from")
        return ckpt

    def start(self, record: dict[str, Any], resumed: Checkpoint | None, store: Any = None) -> None:
        """Create the folder and write ``config.json`` and ``run.json`` (:func:`run_record` of ``store``; its
        ``ended`` is set by :meth:`finish`); a fresh run starts its logs empty, a resumed one keeps the lines
        up to its checkpoint and takes its best metrics."""
        if resumed is not None and resumed.state is not None:
            self.best = dict(resumed.state.best)
        if not self.main:
            return
        self.out.mkdir(parents=True, exist_ok=True)
        for name, key in self.logs.items():
            if resumed is None or resumed.state is None:
                (self.out / name).unlink(missing_ok=True)
            else:
                upto = resumed.state.step if key == "step" else resumed.state.epoch
                trim_jsonl(self.out / name, key, upto)
        _write_atomic(self.out / "config.json", json.dumps(record, indent=2))
        self.record = {**run_record(store), **self.context, "resumed": resumed is not None}
        write_run_record(self.out, self.record)

    def finish(self) -> None:
        """Record the end time in ``run.json``; close the TensorBoard log."""
        if self.main and self.record:
            self.record["ended"] = now()
            write_run_record(self.out, self.record)
        if self.board is not None:
            self.board.close()

    def append(self, name: str, line: dict[str, Any]) -> None:
        """One line of a JSON-lines log; with TensorBoard, its numbers too (``{log}/{key}`` at its step)."""
        if not self.main:
            return
        with open(self.out / name, "a") as fh:
            fh.write(json.dumps(line) + "\n")
        if self.board is not None:
            step = int(line.get(self.logs.get(name, "step"), 0))
            for key in BOARD_KEYS:
                if isinstance(line.get(key), (int, float)) and not isinstance(line.get(key), bool):
                    self.board.add_scalar(f"{name.split('.')[0]}/{key}", line[key], step)
            self.board.flush()

    def improved(self, metrics: dict[str, Any]) -> bool:
        """True (and ``metrics`` becomes the best) when val top-1 beats the best so far."""
        if metrics["top1"] > self.best["top1"]:
            self.best = plain(metrics)
            return True
        return False

    def save(self, name: str, ckpt: Checkpoint) -> None:
        if self.main:
            ckpt.save(self.out / name)


BOARD_KEYS = ("loss", "top1", "top5", "mean_class", "temperature", "lr", "backbone_lr")


def _board(folder: Path) -> Any:
    """A TensorBoard ``SummaryWriter`` on ``folder`` (``pip install 'cavnet[tensorboard]'``)."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise CavnetError("--tensorboard needs the tensorboard package: pip install 'cavnet[tensorboard]'") from None
    return SummaryWriter(log_dir=str(folder))


@contextlib.contextmanager
def hold_run_folder(out: Path, main: bool = True, what: str = "run folder", command: str | None = None,
                    key: dict[str, Any] | None = None, inputs: Sequence[Path] = ()) -> Iterator[None]:
    """For the whole run: ``out`` checked writable, its single-writer lock held (a second run on it is
    refused), and a filesystem failure while writing reported as one line naming the path and cause.
    With ``command``, through the outputs door first: ``out`` must be empty, or carry the marker of the same
    ``command`` (and ``key``, when given), or be a run folder of an older cavnet (config.json and run.json),
    and must not be one of ``inputs``; it is then marked as ``command``'s. Processes other than the main one
    write nothing and take no lock."""
    if not main:
        yield
        return
    if command is not None:
        claim_run_folder(out, command, key, inputs, mark=False)
    check_writable(Path(out) / "config.json", ("metrics.jsonl.tmp", "best.pt.tmp"), what="--out")
    with output_lock(Path(out), what):
        if command is not None:
            claim_folder(Path(out), command, key)
        try:
            yield
        except OSError as exc:
            if exc.errno not in CAUSES:
                raise
            raise CavnetError(describe(exc, Path(exc.filename or out), f"writing {what} {out} failed")) from None
        except RuntimeError as exc:  # torch.save on a full disk: "PytorchStreamWriter failed writing file"
            if not any(k in str(exc) for k in ("PytorchStreamWriter", "file write failed", "inline_container")):
                raise
            raise CavnetError(describe(as_os_error(exc, Path(out) / "last.pt"), Path(out),
                                       f"writing {what} {out} failed")) from None


# per command, the names that mark a folder it wrote before folders carried the outputs marker
LEGACY = {"fuse-train": ("config.json", "run.json"), "finetune": ("config.json", "run.json"),
          "evaluate": ("metrics.json", "run.json"), "ablate": ("run.json", "runs")}


def claim_run_folder(out: Path, command: str, key: dict[str, Any] | None = None, inputs: Sequence[Path] = (),
                     mark: bool = True) -> None:
    """Refuse ``out`` unless it is empty, ``command``'s (with ``key``) or an older cavnet's run folder, and
    not one of ``inputs``; with ``mark``, create it and mark it as ``command``'s now (before a run that
    writes sub-folders into it, such as fuse-train's ``pretrain/``)."""
    check_outputs([Output(Path(out), "--out", folder=True)], [Path(p) for p in inputs if p is not None], command,
                  key, legacy=LEGACY.get(command, ()))
    if mark:
        claim_folder(Path(out), command, key)


def trim_jsonl(path: Path, key: str, upto: int) -> None:
    """Keep the lines of a JSON-lines log whose ``key`` is at most ``upto`` (those the checkpoint a run
    resumes from holds); drop later ones, which the resumed run redoes, and any line torn by a kill."""
    if not path.exists():
        return
    kept = []
    for line in path.read_text().splitlines():
        try:
            if int(json.loads(line)[key]) <= upto:
                kept.append(line + "\n")
        except (ValueError, KeyError, TypeError):
            continue
    _write_atomic(path, "".join(kept))


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
