"""Inference on video files: the whole CAV-Net rebuilt from a checkpoint scores any files, labelled or not.

Files are decoded exactly as extraction decoded the checkpoint's training corpus (its recorded sampling,
front end and backbones; a fine-tune checkpoint brings its own backbone weights). A file that does not
decode gets its status and no labels; the others get their top-k labels with softmax scores. Label texts
other than the checkpoint's are scored zero-shot through the text head: they are embedded with the text
model and prompt template recorded in the checkpoint's store config.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import torch

from cavnet.errors import CavnetError
from cavnet.extract.device import decode_workers as decode_workers_for, resolve_device
from cavnet.extract.manifest import ManifestRow
from cavnet.extract.status import MISSING_FILE, USABLE
from cavnet.fuse.checkpoint import Checkpoint
from cavnet.fuse.metrics import top_k
from cavnet.finetune.build import build_avnet
from cavnet.finetune.data import VideoClips, make_loader

VIDEO_SUFFIXES = (".mp4", ".mkv", ".webm", ".avi", ".mov", ".m4v")


@dataclass
class Prediction:
    """One file: its ``id`` (file stem), ``status`` (``ok``, ``no_audio``, ``short_decode`` are usable;
    anything else means no prediction), and its ``labels`` with ``scores`` (softmax), best first."""

    id: str
    path: str
    status: str
    labels: list[str] = field(default_factory=list)
    scores: list[float] = field(default_factory=list)

    @property
    def top1(self) -> str | None:
        return self.labels[0] if self.labels else None

    def to_dict(self) -> dict:
        return asdict(self)


def video_files(paths: Sequence[str | Path]) -> list[Path]:
    """Files as given; folders expanded to the video files under them (sorted). A path that does not exist
    is kept: it ends with status ``missing_file``."""
    out: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            out += sorted(f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in VIDEO_SUFFIXES)
        else:
            out.append(p)
    return out


def read_labels(path: Path) -> list[str]:
    """One label text per line; blank lines and ``#`` comments skipped."""
    from cavnet.extract.text_tables import text_lines

    return text_lines(path, "labels")


class Predictor:
    """A checkpoint ready to score video files. ``labels``: score against these texts zero-shot (head
    ``text`` only) instead of the checkpoint's classes; ``text_set``: score its classes with another of its
    store's label-text sets (``Checkpoint.class_table``). ``decode_workers``: decode processes (None: the
    rule of ``extract.device.decode_workers``)."""

    def __init__(self, checkpoint: Checkpoint | str | Path, device: str = "auto",
                 labels: Sequence[str] | None = None, batch_size: int = 8, decode_workers: int | None = None,
                 text_set: str | None = None) -> None:
        self.ckpt = checkpoint if isinstance(checkpoint, Checkpoint) else Checkpoint.load(checkpoint)
        self.config = self.ckpt.extract_config()
        self.device = resolve_device(device)
        self.batch_size, self.decode_workers = batch_size, decode_workers_for(decode_workers, device)
        if labels is not None and text_set is not None:
            raise CavnetError("--labels and --text-set both say what to score against; give one")
        self.net = build_avnet(self.ckpt, self.device).eval()
        if labels is None:
            self.labels, class_emb = list(self.ckpt.class_names), self.ckpt.class_table(text_set)
        else:
            self.labels, class_emb = list(labels), self._embed_labels(list(labels))
        self.class_emb = class_emb.to(self.device)
        scale = self.ckpt.loss.get("logit_scale")
        self.scale = float(scale.exp().clamp(max=100.0)) if scale is not None else 1.0 / 0.07

    def _embed_labels(self, labels: list[str]) -> torch.Tensor:
        if self.ckpt.head != "text":
            raise CavnetError(f"--labels needs a checkpoint with the text head; this one has head {self.ckpt.head!r}")
        if not labels:
            raise CavnetError("no labels to score against")
        from cavnet.extract.text import TextEncoder
        from cavnet.extract.text_tables import class_prompts

        encoder = TextEncoder(self.config.text_model, device="cpu")
        if encoder.dim != self.ckpt.class_embedding.shape[1]:
            raise CavnetError(f"text model {self.config.text_model!r} gives {encoder.dim}-d embeddings, the "
                              f"checkpoint was trained on {self.ckpt.class_embedding.shape[1]}-d ones")
        if self.ckpt.text_tuned:  # the sentence encoder was fine-tuned with the model: embed with its weights
            encoder.model.load_state_dict(self.ckpt.text_encoder)
        return torch.from_numpy(encoder.encode(class_prompts(tuple(labels), self.config.prompt_template)))

    def _batches(self, files: Sequence[str]) -> Iterator[tuple[list[int], list[str], np.ndarray | None]]:
        """Per decoded batch, in order: the files' positions, their statuses and the softmax scores
        (len(positions), C) of the usable ones (NaN rows for the others; None when none is usable)."""
        rows = [ManifestRow(Path(p).stem, p, -1, "", "", exists=Path(p).exists()) for p in files]
        if not rows:
            return
        loader = make_loader(VideoClips(rows, self.config), self.batch_size, self.decode_workers, self.device,
                             indices=range(len(rows)))
        for batch in loader:
            positions, keep = batch.positions.tolist(), batch.valid
            if not keep.any():
                yield positions, list(batch.statuses), None
                continue
            with torch.no_grad():
                b, k = batch.to(self.device), keep.to(self.device)
                emb = self.net(b.clips[k], b.vmask[k], b.examples[k], b.amask[k]).float()
                # through the fusion's text side (its text projection, when it has one), as evaluate scores
                logits = emb if self.ckpt.head == "linear" else self.scale * self.net.fusion.score_classes(
                    emb, self.class_emb)
            probs = np.full((len(positions), len(self.labels)), np.nan, np.float32)
            probs[keep.numpy()] = logits.softmax(dim=-1).cpu().numpy()
            yield positions, list(batch.statuses), probs

    def scores(self, paths: Sequence[str | Path]) -> tuple[np.ndarray, list[str]]:
        """Softmax scores (N, C) of the files (NaN rows for those that do not decode) and their statuses."""
        files = [str(p) for p in paths]
        out = np.full((len(files), len(self.labels)), np.nan, np.float32)
        statuses = [MISSING_FILE] * len(files)
        for positions, batch_statuses, probs in self._batches(files):
            for i, (pos, status) in enumerate(zip(positions, batch_statuses)):
                statuses[pos] = status
                if probs is not None:
                    out[pos] = probs[i]
        return out, statuses

    def stream(self, paths: Sequence[str | Path], k: int = 5) -> Iterator[Prediction]:
        """The predictions of every file (folders expanded) as their batches are done, in order; a consumer
        that stops (Ctrl-C) keeps those already yielded."""
        files = video_files(paths)
        for positions, statuses, probs in self._batches([str(f) for f in files]):
            for i, (pos, status) in enumerate(zip(positions, statuses)):
                yield self._prediction(files[pos], status, None if probs is None else probs[i], k)

    def _prediction(self, f: Path, status: str, row: np.ndarray | None, k: int) -> Prediction:
        p = Prediction(f.stem, str(f), status)
        if row is not None and status in USABLE and not np.isnan(row).any():
            p.labels, p.scores = top_k(row, self.labels, k)
        return p

    def predict(self, paths: Sequence[str | Path], k: int = 5) -> list[Prediction]:
        """Top-``k`` labels of every file (folders expanded), in order; bad files keep their status."""
        return list(self.stream(paths, k))
