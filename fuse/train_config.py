"""Frozen configurations of a training run: ``OptimConfig`` holds what fuse-train and fine-tune share (the
optimiser, its schedule, the seed and the device); ``TrainConfig`` adds fuse-train's own fields. The
fusion model's configuration lives in ``fuse.config.FusionConfig``.

The defaults here are the command line's defaults: the CLI derives its options from these fields.
"""

from __future__ import annotations

from dataclasses import dataclass

from cavnet.configs import (MAX_BATCH, MAX_EPOCHS, Config, check_bool, check_choice, check_device, check_int,
                            check_number, check_seed)
from cavnet.errors import CavnetError

TARGETS = ("label", "video-text")
MAX_LR = 10.0  # learning rates (and weight decay) above this diverge at once: refused as a typo
TRAIN_VIEWS = ("random", "centre")


@dataclass(frozen=True)
class OptimConfig(Config):
    """AdamW with linear warm-up then cosine decay to zero.

    epochs: passes over the training split. batch_size: videos per optimizer step. lr: peak learning rate.
    weight_decay: on every parameter of two or more dimensions: matrices, kernels and the learned position
    tables (not biases, norms, the clock's slopes or the temperature; ``fuse.run.optim.param_groups``).
    warmup_epochs: linear warm-up length in epochs (fractions allowed). seed: weights, order, dropout.
    device: ``auto`` (CUDA when there is one), ``cpu``, ``cuda`` or ``cuda:N``.
    text_encoder_lr: 0 keeps the text side frozen (the stored sentence embeddings); > 0 fine-tunes the
    sentence encoder itself on the store's texts at this learning rate (AdamW, its own parameter group,
    same warm-up and decay), head 'text' only.
    eval_every: score the val split every this many epochs and after the last (0: only after the last;
    ``best.pt`` is picked among the scored epochs).
    """

    epochs: int = 30
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 0.05
    warmup_epochs: float = 2.0
    seed: int = 0
    device: str = "auto"
    tensorboard: bool = False  # also log the run's figures to OUT/tensorboard (not part of what is computed)
    text_encoder_lr: float = 0.0
    eval_every: int = 1

    def __post_init__(self) -> None:
        check_int("--epochs", self.epochs, 1, MAX_EPOCHS)
        check_int("--batch-size", self.batch_size, 2, MAX_BATCH)
        check_number("--lr", self.lr, 0.0, positive=True, maximum=MAX_LR)
        check_number("--weight-decay", self.weight_decay, 0.0, maximum=MAX_LR)
        check_number("--warmup-epochs", self.warmup_epochs, 0.0, maximum=MAX_EPOCHS)
        check_seed("--seed", self.seed)
        check_number("--text-encoder-lr", self.text_encoder_lr, 0.0, maximum=MAX_LR)
        check_int("--eval-every", self.eval_every, 0, MAX_EPOCHS)
        check_device("--device", self.device)
        check_bool("--tensorboard", self.tensorboard)

    def warmup_steps(self, steps_per_epoch: int) -> int:
        """The warm-up in optimizer steps (it may outlast a short run: the learning rate then never peaks)."""
        return int(round(self.warmup_epochs * steps_per_epoch))

    @property
    def tunes_text(self) -> bool:
        """Whether the sentence encoder itself is fine-tuned (``text_encoder_lr`` > 0)."""
        return self.text_encoder_lr > 0


@dataclass(frozen=True)
class TrainConfig(OptimConfig):
    """One fuse-train run: the optimiser and schedule, plus

    targets: ``label`` (each video is pulled towards its class prompt) or ``video-text`` (towards its own
    caption or title). train_split / val_split: store splits to train on and to pick ``best.pt`` by.
    memory_budget_gb: 0 reads the split into RAM when it fits in half of the available memory, else streams
    it; stream: always stream chunk-aligned blocks from the store. checkpoint_every: write ``last.pt`` (and
    ``best.pt``, when val improved since the last write) every this many epochs and after the last; 0: only
    after the last; a killed run resumes from the last write. What is trained depends neither on it nor on
    ``eval_every``. text_set: the store's label-text set (``cavnet text``; ``default``: the extraction's
    prompts) whose class embeddings are the label targets and score val; the checkpoint scores with it too.
    train_views: on a store with spatial views (``extract --views``/``--flip``), ``random`` draws one view per
    video per epoch from the epoch's seeded generator (the feature-space version of crop and flip
    augmentation), ``centre`` trains on the centre view only; a store of one view trains on it either way
    (a streamed split reads the centre view). Val is scored on the centre view.
    classes: train and score on a subset of the store's classes (``fuse.classes``: a file of one class name
    a line, or ``kinetics-sounds``); None: all of them. The checkpoint's class table is the subset.
    """

    targets: str = "label"
    train_split: str = "train"
    val_split: str = "val"
    memory_budget_gb: float = 0.0
    stream: bool = False
    checkpoint_every: int = 1
    text_set: str = "default"
    train_views: str = "random"
    classes: str | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        check_choice("--targets", self.targets, TARGETS)
        check_choice("--train-views", self.train_views, TRAIN_VIEWS)
        if not isinstance(self.text_set, str) or not self.text_set:
            raise CavnetError(f"--text-set must name a text set of the store, got {self.text_set!r}")
        if self.tunes_text and self.text_set != "default":
            raise CavnetError("--text-encoder-lr tunes the encoder on the default prompts; it cannot train "
                              f"with --text-set {self.text_set}")
        check_number("memory_budget_gb", self.memory_budget_gb, 0.0)
        check_int("--checkpoint-every", self.checkpoint_every, 0, MAX_EPOCHS)
        check_bool("--stream", self.stream)
