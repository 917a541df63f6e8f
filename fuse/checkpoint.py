"""The one checkpoint type of stage two and fine-tuning: weights, every config needed to rebuild the model
alone, and where training stood.

On disk it is a plain dict of tensors and JSON types (``torch.load(weights_only=True)`` reads it, no
pickled classes): the fusion weights and configs under the keys fuse-train has always written, plus both
backbones' weights and the fine-tune config for a fine-tune checkpoint. ``Checkpoint.load`` validates
what it reads and refuses anything else with one line.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from cavnet.errors import CavnetError
from cavnet.extract.config import ExtractConfig
from cavnet.fuse.config import FusionConfig
from cavnet.fuse.model import CAVNet

KINDS = ("fuse-train", "finetune")
_REQUIRED = ("model", "fusion_config", "class_names", "class_embedding")
_TENSOR_MAPS = ("model", "loss", "visual", "audio", "text_encoder", "text_sets")


def misfit(source: str, reason: str) -> CavnetError:
    """The one refusal of a checkpoint that reads but cannot be trusted."""
    return CavnetError(f"checkpoint {source} does not fit: {reason}")


def non_finite(tensors: dict[str, Any], prefix: str = "") -> str | None:
    """The first floating tensor of ``tensors`` (nested dicts walked) holding NaN or inf, by its key."""
    for key, value in tensors.items():
        if isinstance(value, dict):
            bad = non_finite(value, f"{prefix}{key}.")
            if bad:
                return bad
        elif torch.is_tensor(value) and (value.is_floating_point() or value.is_complex()) \
                and not bool(torch.isfinite(value).all()):
            return prefix + str(key)
    return None


def expected_shapes(fusion: FusionConfig) -> dict[str, tuple[int, ...]]:
    """The state dict shapes ``fusion`` implies, from a model built on the meta device (nothing allocated)."""
    with torch.device("meta"):
        model = CAVNet(fusion)
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


def check_fit(d: dict[str, Any], source: str) -> None:
    """Refuse (``misfit``) a checkpoint dict whose fields have the wrong types, whose config is out of bounds,
    whose fusion weights differ from the shapes the config implies, or holding a non-finite tensor."""
    names = d["class_names"]
    if not isinstance(names, (list, tuple)) or not all(isinstance(n, str) for n in names):
        raise misfit(source, "class_names is not a list of strings")
    emb = d["class_embedding"]
    if not torch.is_tensor(emb) or emb.dim() != 2 or emb.shape[0] != len(names) or not emb.is_floating_point():
        raise misfit(source, f"class_embedding is not a ({len(names)}, Dt) float tensor")
    for key in _TENSOR_MAPS:
        value = d.get(key)
        if value is not None and not (isinstance(value, dict) and all(isinstance(k, str) for k in value)):
            raise misfit(source, f"{key} is not a mapping of named tensors")
    for key in ("store_dims", "train_config", "best"):
        if d.get(key) is not None and not isinstance(d[key], dict):
            raise misfit(source, f"{key} is not a mapping")
    for key in ("epoch", "epoch_step", "step"):
        if key in d and (not isinstance(d[key], int) or isinstance(d[key], bool) or d[key] < 0):
            raise misfit(source, f"{key} is not a count")
    for key in ("optimizer", "scheduler"):
        if key in d and not isinstance(d[key], dict):
            raise misfit(source, f"{key} is not a state dict")
    for key in ("store_config", "text_model", "init"):
        if d.get(key) is not None and not isinstance(d[key], str):
            raise misfit(source, f"{key} is not a string")
    try:
        fusion = FusionConfig.from_dict(d["fusion_config"], "fusion_config")
    except CavnetError as exc:
        raise misfit(source, str(exc)) from None
    if fusion.head == "text" and emb.shape[1] != fusion.text_dim:
        raise misfit(source, f"class_embedding is {emb.shape[1]}-d, its fusion_config says text_dim {fusion.text_dim}")
    want = expected_shapes(fusion)
    model = d["model"]
    got = {k: tuple(v.shape) if torch.is_tensor(v) else None for k, v in model.items()}
    missing, extra = sorted(set(want) - set(got)), sorted(set(got) - set(want))
    if missing or extra:
        raise misfit(source, f"its weights do not match its fusion_config (missing {missing[:3] or 'none'}, "
                             f"unexpected {extra[:3] or 'none'})")
    wrong = [k for k in want if got[k] != want[k]]
    if wrong:
        raise misfit(source, f"weight {wrong[0]} is {got[wrong[0]]}, its fusion_config implies {want[wrong[0]]}")
    bad = non_finite({k: d.get(k) for k in (*_TENSOR_MAPS, "class_embedding")
                      if isinstance(d.get(k), dict) or torch.is_tensor(d.get(k))})
    if bad:
        raise misfit(source, f"{bad} holds NaN or inf")


@dataclass
class TrainingState:
    """Where a run stood when the checkpoint was written: enough to resume it exactly.

    epoch: completed epochs; epoch_step: optimizer steps into the next one (fine-tune saves mid-epoch);
    step: optimizer steps in all; best: the val metrics of the best epoch so far; rng / cuda_rng: the
    torch generator states (cuda_rng empty on the CPU).
    """

    optimizer: dict[str, Any]
    scheduler: dict[str, Any]
    epoch: int
    best: dict[str, Any]
    rng: torch.Tensor
    epoch_step: int = 0
    step: int = 0
    cuda_rng: torch.Tensor = field(default_factory=lambda: torch.zeros(0, dtype=torch.uint8))


@dataclass
class Checkpoint:
    """A fuse-train or fine-tune checkpoint.

    model: the CAVNet fusion's state dict; fusion: its config. loss: the contrastive loss's state (the
    learned temperature; empty for head 'linear'). class_names (C,) and class_embedding (C, Dt): the label
    texts the model scores against. store_config / store_dims / text_model: what extracted the features it
    was trained on (so its backbones can be rebuilt). train: the fuse-train config that made the fusion.
    visual / audio / finetune / init: a fine-tune checkpoint's backbone weights, its config and the
    checkpoint it started from. state: where training stood (None in a checkpoint made for inference).
    text_encoder: the fine-tuned sentence encoder's state dict (``text_encoder_lr`` > 0; None when the text
    side was the frozen store embeddings). class_embedding then holds the class prompts embedded by it.
    text_sets: every label-text set of the store it was trained on, name -> (C, Dt) (None in checkpoints
    from before text sets, and when the encoder was tuned); ``class_table`` picks one.
    """

    model: dict[str, torch.Tensor]
    fusion: FusionConfig
    class_names: list[str]
    class_embedding: torch.Tensor
    store_config: str | None = None
    store_dims: dict[str, int] = field(default_factory=dict)
    text_model: str = ""
    train: dict[str, Any] = field(default_factory=dict)
    loss: dict[str, torch.Tensor] = field(default_factory=dict)
    kind: str = "fuse-train"
    state: TrainingState | None = None
    visual: dict[str, torch.Tensor] | None = None
    audio: dict[str, torch.Tensor] | None = None
    finetune: dict[str, Any] | None = None
    init: str | None = None
    text_encoder: dict[str, torch.Tensor] | None = None
    text_sets: dict[str, torch.Tensor] | None = None

    # ------------------------------------------------------------------------------------------- on disk
    def to_state(self) -> dict[str, Any]:
        """The dict written to disk (keys as fuse-train has always written them)."""
        d: dict[str, Any] = {"kind": self.kind, "model": self.model, "fusion_config": self.fusion.to_dict(),
                             "class_names": list(self.class_names), "class_embedding": self.class_embedding.cpu(),
                             "store_config": self.store_config, "store_dims": dict(self.store_dims),
                             "text_model": self.text_model, "train_config": dict(self.train), "loss": self.loss}
        if self.state is not None:
            s = self.state
            d.update(optimizer=s.optimizer, scheduler=s.scheduler, epoch=s.epoch, epoch_step=s.epoch_step,
                     step=s.step, best=s.best, rng=s.rng, cuda_rng=s.cuda_rng)
        if self.kind == "finetune":
            d.update(visual=self.visual, audio=self.audio, finetune_config=self.finetune, init=self.init)
        if self.text_encoder is not None:
            d["text_encoder"] = self.text_encoder
        if self.text_sets is not None:
            d["text_sets"] = {k: v.cpu() for k, v in self.text_sets.items()}
        return d

    @classmethod
    def from_state(cls, d: dict[str, Any], source: str) -> "Checkpoint":
        """Validate and type a dict read from disk; any inconsistency is one ``CavnetError`` naming ``source``:
        the fields' types, the config's size (before any allocation), the weights' shapes against the shapes
        the config implies and the finiteness of every tensor (``check_fit``)."""
        missing = [k for k in _REQUIRED if k not in d]
        if missing:
            raise CavnetError(f"{source}: not a cavnet checkpoint (no {', '.join(missing)})")
        check_fit(d, source)
        kind = d.get("kind", "fuse-train")
        if kind not in KINDS:
            raise CavnetError(f"{source}: unknown checkpoint kind {kind!r}")
        if kind == "finetune" and not all(isinstance(d.get(k), dict) for k in ("visual", "audio", "finetune_config")):
            raise CavnetError(f"{source}: a fine-tune checkpoint without its backbone weights or config")
        if d.get("text_encoder") is not None and not isinstance(d["text_encoder"], dict):
            raise CavnetError(f"{source}: its text_encoder is not a state dict")
        sets = d.get("text_sets")
        if sets is not None and not (isinstance(sets, dict) and all(
                torch.is_tensor(v) and tuple(v.shape) == tuple(d["class_embedding"].shape) for v in sets.values())):
            raise CavnetError(f"{source}: its text_sets are not class tables of its class_embedding's shape")
        state = None
        if "optimizer" in d:
            state = TrainingState(d["optimizer"], d["scheduler"], int(d["epoch"]), dict(d.get("best", {})),
                                  d["rng"], int(d.get("epoch_step", 0)), int(d.get("step", 0)),
                                  d.get("cuda_rng", torch.zeros(0, dtype=torch.uint8)))
        return cls(model=d["model"], fusion=FusionConfig.from_dict(d["fusion_config"], "fusion_config"),
                   class_names=list(d["class_names"]), class_embedding=d["class_embedding"],
                   store_config=d.get("store_config"), store_dims=dict(d.get("store_dims", {})),
                   text_model=d.get("text_model", ""), train=dict(d.get("train_config", {})),
                   loss=d.get("loss", {}), kind=kind, state=state, visual=d.get("visual"), audio=d.get("audio"),
                   finetune=d.get("finetune_config"), init=d.get("init"), text_encoder=d.get("text_encoder"),
                   text_sets=sets)

    def save(self, path: Path) -> None:
        """Write atomically (tmp + rename), so a killed run never leaves half a checkpoint."""
        path = Path(path)
        bad = non_finite({"model": self.model, "loss": self.loss, "visual": self.visual or {},
                          "audio": self.audio or {}, "text_encoder": self.text_encoder or {}})
        if bad:
            raise CavnetError(f"{path}: not written, the weight {bad} holds NaN or inf (training diverged; "
                              "the last checkpoint written is kept)")
        tmp = path.with_name(path.name + ".tmp")
        try:
            torch.save(self.to_state(), tmp)
            os.replace(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)  # a full disk: give the space back, keep the last good file
            raise

    @classmethod
    def load(cls, path: Path | str) -> "Checkpoint":
        path = Path(path)
        if not path.is_file():
            raise CavnetError(f"{path}: no such checkpoint")
        try:
            d = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # a torn or foreign file
            raise CavnetError(f"{path}: not a cavnet checkpoint ({type(exc).__name__}: {exc})") from None
        if not isinstance(d, dict):
            raise CavnetError(f"{path}: not a cavnet checkpoint")
        return cls.from_state(d, str(path))

    # ------------------------------------------------------------------------------------------- model
    @property
    def head(self) -> str:
        return self.fusion.head

    @property
    def text_tuned(self) -> bool:
        """Whether the sentence encoder was fine-tuned (its weights are in ``text_encoder``)."""
        return self.text_encoder is not None

    @property
    def trained_text_set(self) -> str:
        """The label-text set it was trained with (``default`` for checkpoints from before text sets)."""
        return str(self.train.get("text_set", "default"))

    def class_table(self, text_set: str | None = None) -> torch.Tensor:
        """(C, Dt) class embeddings to score with: those it was trained with (``text_set`` None or that
        set), or another set of its store's (``text_sets``); one line naming the sets it has otherwise."""
        if text_set is None or text_set == self.trained_text_set:
            return self.class_embedding.float()
        if self.text_tuned:
            raise CavnetError(f"--text-set {text_set}: this checkpoint tuned its sentence encoder, so only the "
                              f"set it was trained with ({self.trained_text_set}) is in its text space")
        if not self.text_sets or text_set not in self.text_sets:
            have = sorted(self.text_sets or {self.trained_text_set: None})
            raise CavnetError(f"--text-set {text_set}: the checkpoint holds the text sets {', '.join(have)} "
                              "(sets added to a store after training: evaluate on the store)")
        return self.text_sets[text_set].float()

    @property
    def backbones_trained(self) -> bool:
        """Whether the backbones differ from those that computed the store's features."""
        return self.kind == "finetune" and bool((self.finetune or {}).get("end_to_end"))

    def fusion_model(self) -> CAVNet:
        """The CAVNet fusion with its trained weights, on the CPU."""
        model = CAVNet(self.fusion)
        model.load_state_dict(self.model)
        return model

    def extract_config(self, source: str = "checkpoint") -> ExtractConfig:
        """The extraction config of the features it was trained on (its backbones, sampling, front end)."""
        if not self.store_config:
            raise CavnetError(f"{source}: the checkpoint records no store config, so its backbones cannot be rebuilt")
        return ExtractConfig.from_json(self.store_config, f"{source} store_config")

    def check_matches_store(self, dims: dict[str, int], text_dim: int, class_names: list[str], source: str,
                            as_init: bool = False) -> None:
        """Refuse a store whose input sizes or class table differ from what the model was trained on.

        ``as_init``: the checkpoint only initialises a new run's weights; with head 'text' the class table
        shapes no weight (classes are texts), so only the visual, audio and text sizes must match (a caption
        pretraining on another corpus); head 'linear' still needs the same classes."""
        want = {"visual_dim": dims["visual_dim"], "audio_dim": dims["audio_dim"], "text_dim": text_dim}
        classes_matter = not (as_init and self.head == "text")
        if classes_matter:
            want["num_classes"] = len(class_names)
        f = self.fusion.to_dict()
        bad = [f"{k} {f.get(k)} vs {v}" for k, v in want.items() if f.get(k) != v]
        if bad:
            raise CavnetError(f"checkpoint does not match {source}: " + ", ".join(bad))
        if classes_matter:
            self.check_classes(class_names, source)

    def check_classes(self, names: list[str] | tuple[str, ...], source: str) -> None:
        """Refuse a class list other than the checkpoint's (its class embeddings index it)."""
        names, want = list(names), list(self.class_names)
        if names == want:
            return
        extra = sorted(set(names) - set(want))[:3]
        missing = sorted(set(want) - set(names))[:3]
        what = "classes in another order" if not extra and not missing else (
            f"not in the checkpoint: {extra or 'none'}; not in {source}: {missing or 'none'}")
        raise CavnetError(f"{source} has {len(names)} classes, the checkpoint was trained on {len(want)} ({what})")
