"""The training-run harness: what every training run does around its own data and step.

``TrainingRun`` is the base of fuse-train's ``FusionRun`` (``fuse.run.fusion``) and fine-tune's
``FinetuneRun`` (``finetune.run``). It runs the epochs, decides when to score val and when to save, keeps
``best.pt`` / ``last.pt`` (a best epoch between saves is held in memory), captures the training state into
the ``Checkpoint`` and restores it for an exact resume, refusing a resume whose options differ in a field
that changes what is computed. A subclass supplies its data and step (``train_epoch``), its val scoring
(``score_val``), the rest of its checkpoint (``checkpoint_fields`` / ``load_weights``) and its lines.
"""

from __future__ import annotations

import copy
from typing import Any, Callable, ClassVar

import torch
from torch import nn

from cavnet.errors import CavnetError
from cavnet.fuse.checkpoint import Checkpoint, TrainingState
from cavnet.fuse.engine import TunedText
from cavnet.fuse.model import SentenceEncoder
from cavnet.fuse.run.folder import RunFolder
from cavnet.fuse.run.optim import NonFiniteLoss
from cavnet.fuse.train_config import OptimConfig


def temperature(loss_fn: nn.Module | None) -> float:
    """The contrastive loss's temperature 1 / exp(logit_scale) (clamped as in the forward); NaN without one."""
    if loss_fn is None:
        return float("nan")
    return float(1.0 / loss_fn.scale.detach())


def rng_state(device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """(CPU generator state, CUDA generator state of ``device`` or an empty tensor)."""
    cuda = torch.cuda.get_rng_state(device) if device.type == "cuda" else torch.zeros(0, dtype=torch.uint8)
    return torch.get_rng_state(), cuda


def changed_options(old: dict[str, Any], new: dict[str, Any], keep: list[str]) -> list[str]:
    """The fields of ``keep`` whose value differs between a run's recorded config and the new one,
    as command-line option names."""
    return ["--" + k.replace("_", "-") for k in keep if k in old and old.get(k) != new.get(k)]


def require_text_head(head: str) -> None:
    """Refuse to tune the sentence encoder of a model without a text side."""
    if head != "text":
        raise CavnetError("--text-encoder-lr needs the text head (head 'linear' has no text side)")


def load_tuned_text(text_model: str, dim: int, device: torch.device, prompts: list[str],
                    strings: dict[int, str], state: dict[str, torch.Tensor] | None = None) -> TunedText:
    """The sentence encoder ``text_model`` (``dim``-d, with the tuned weights ``state`` when given) on
    ``device``, ready to fine-tune on ``prompts`` (C,) and the group texts ``strings``; an encoder that
    does not load is refused in one line."""
    from cavnet.extract.text import TextModelError, load_sentence_model

    try:
        model = load_sentence_model(text_model, str(device), dim, state)
    except TextModelError as exc:
        raise CavnetError(f"--text-encoder-lr: {exc}") from None
    return TunedText(SentenceEncoder(model), prompts, strings)


def due(epochs_done: int, every: int, end: bool) -> bool:
    """Whether a thing done ``every`` epochs (0: only at the end) is due after ``epochs_done`` epochs."""
    return end or (every > 0 and epochs_done % every == 0)


class TrainingRun:
    """One training run. A subclass sets, before :meth:`run_epochs`: ``cfg`` (an ``OptimConfig``),
    ``folder`` (its ``RunFolder``), ``device``, ``optimizer``, ``scheduler``, ``loss_fn`` (None for head
    'linear'), ``text`` (a ``TunedText`` or None), ``class_embedding`` (C, Dt) on ``device`` (the frozen
    class texts), ``steps_per_epoch`` and ``echo``; and ``frozen_text_state``, the tuned sentence encoder a
    checkpoint keeps when this run does not tune one."""

    resume_free: ClassVar[tuple[str, ...]] = ()  # config fields a resume may change: where, not what
    log_unscored: ClassVar[bool] = True  # an epoch that is not scored still logs (and prints) its line

    cfg: OptimConfig
    folder: RunFolder
    device: torch.device
    optimizer: torch.optim.Optimizer
    scheduler: Any
    loss_fn: nn.Module | None
    text: TunedText | None
    class_embedding: torch.Tensor
    steps_per_epoch: int
    echo: Callable[[str], None]
    frozen_text_state: dict[str, torch.Tensor] | None = None

    # ----------------------------------------------------------------------------------- the subclass's
    def train_epoch(self, epoch: int, skip: int) -> tuple[dict[str, Any], int, bool]:
        """Train epoch ``epoch`` from step ``skip``: (its metrics line, steps taken into it, stopped early)."""
        raise NotImplementedError

    def score_val(self) -> dict[str, Any] | None:
        """Val metrics of the model as it is now (``top1`` among them); None: this run has no val split."""
        raise NotImplementedError

    def checkpoint_fields(self) -> dict[str, Any]:
        """The ``Checkpoint`` fields the harness does not fill (weights, configs, class names, store)."""
        raise NotImplementedError

    def load_weights(self, ckpt: Checkpoint) -> None:
        """Put a resumed checkpoint's weights back into the model."""
        raise NotImplementedError

    def check_resumable(self, ckpt: Checkpoint) -> list[str]:
        """Refuse a checkpoint this run cannot go on from; the options (beyond the config's) it changes."""
        return []

    def recorded_config(self, ckpt: Checkpoint) -> dict[str, Any]:
        """The config ``ckpt`` was trained with, as ``cfg.to_dict()`` writes it."""
        raise NotImplementedError

    def report(self, line: dict[str, Any]) -> None:
        """Print an epoch's metrics line."""

    def sync(self) -> None:
        """Wait for every process of the run (after a save); one process: nothing to wait for."""

    @property
    def score_interval(self) -> int:
        """Score val every this many epochs (0: only at the end)."""
        return self.cfg.eval_every

    @property
    def save_interval(self) -> int:
        """Write last.pt (and a pending best.pt) every this many epochs (0: only at the end)."""
        return self.score_interval

    # ----------------------------------------------------------------------------------- the harness's
    @property
    def step(self) -> int:
        """Optimiser steps taken in all (the schedule counts them)."""
        return int(self.scheduler.last_epoch)

    def scoring_classes(self) -> torch.Tensor:
        """(C, Dt) the class embeddings val scoring and the checkpoint use: the frozen ones, or the class
        prompts through the tuned encoder as it is now."""
        return self.text.class_embedding() if self.text is not None else self.class_embedding

    def checkpoint(self, epoch: int, epoch_step: int = 0) -> Checkpoint:
        """The run as it stands after ``epoch`` completed epochs and ``epoch_step`` steps into the next."""
        rng, cuda_rng = rng_state(self.device)
        state = TrainingState(self.optimizer.state_dict(), self.scheduler.state_dict(), epoch, self.folder.best,
                              rng, epoch_step, self.step, cuda_rng)
        text = self.text.state() if self.text is not None else self.frozen_text_state
        return Checkpoint(**self.checkpoint_fields(), class_embedding=self.scoring_classes().cpu(),
                          loss=self.loss_fn.state_dict() if self.loss_fn is not None else {}, state=state,
                          text_encoder=text)

    def save(self, name: str, epoch: int, epoch_step: int = 0, ckpt: Checkpoint | None = None) -> None:
        """Write ``name`` (``ckpt``, or the run as it stands) from the main process; then every process syncs."""
        if self.folder.main:
            self.folder.save(name, ckpt if ckpt is not None else self.checkpoint(epoch, epoch_step))
        self.sync()

    def resume(self, ckpt: Checkpoint) -> tuple[int, int]:
        """Go on from ``ckpt`` (the run folder's ``last.pt``) exactly: weights, temperature, tuned encoder,
        optimiser, schedule and RNG; returns (completed epochs, steps into the next). Refuses changed options."""
        where = self.folder.last
        changed = self.check_resumable(ckpt)
        new = self.cfg.to_dict()
        changed += changed_options(self.recorded_config(ckpt), new, [k for k in new if k not in self.resume_free])
        if changed:
            raise CavnetError(f"{where} was trained with other {', '.join(changed)}; resume it with the same "
                              "options, or start a new run in another --out")
        self.load_weights(ckpt)
        if self.loss_fn is not None:
            self.loss_fn.load_state_dict(ckpt.loss)
        if self.text is not None:
            self.text.resume(ckpt.text_encoder, where)
        state = ckpt.state
        self.optimizer.load_state_dict(state.optimizer)
        self.scheduler.load_state_dict(state.scheduler)
        torch.set_rng_state(state.rng)
        if self.device.type == "cuda" and state.cuda_rng.numel():
            torch.cuda.set_rng_state(state.cuda_rng, self.device)
        return state.epoch, state.epoch_step

    def run_epochs(self, start: int, skip: int = 0) -> dict[str, Any]:
        """Epochs ``start`` .. ``cfg.epochs`` (the first from step ``skip``), scoring every ``score_interval``
        and saving every ``save_interval`` epochs and at the end; returns the last logged metrics line."""
        last: dict[str, Any] = {}
        held, snapshot = False, None  # a best epoch not written yet (saves less often than scores)
        for epoch in range(start, self.cfg.epochs):
            try:
                line, taken, stopped = self.train_epoch(epoch, skip if epoch == start else 0)
            except NonFiniteLoss as exc:
                kept = f"{self.folder.last} keeps the last good weights" if self.folder.last.exists() else \
                    "no checkpoint was written"
                raise CavnetError(f"training stopped: the loss is {exc.value} at epoch {epoch + 1}, step {exc.step} "
                                  f"(non-finite features, or a learning rate too high?); {kept}") from None
            done, end = epoch + 1, stopped or epoch + 1 == self.cfg.epochs
            scored = best_now = False
            if due(done, self.score_interval, end):
                metrics = self.score_val()
                if metrics is not None:
                    line.update(metrics)
                    scored, best_now = True, self.folder.improved(line)
            logged = scored or self.log_unscored
            if logged:
                self.folder.append("metrics.jsonl", line)
                last = line
            where = (done, 0) if taken >= self.steps_per_epoch else (epoch, taken)
            if due(done, self.save_interval, end):
                ckpt = self.checkpoint(*where) if self.folder.main else None
                if best_now or held:
                    self.save("best.pt", *where, ckpt=ckpt if best_now else snapshot)
                self.save("last.pt", *where, ckpt=ckpt)
                held, snapshot = False, None
            elif best_now:  # every process knows it; only the main one holds the snapshot
                held = True
                snapshot = copy.deepcopy(self.checkpoint(*where)) if self.folder.main else None
            if logged:
                self.report(line)  # after the save: a printed epoch is on disk
            if stopped:
                break
        return last
