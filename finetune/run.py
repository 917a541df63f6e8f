"""The fine-tune run: the whole CAV-Net (backbones + fusion) trained from raw videos, starting from a
fuse-train (or fine-tune) checkpoint, through the training-run harness (``fuse.run.harness``): epochs of
steps over raw-video batches, val scoring, mid-epoch saves and an exact resume. Only the main process writes.

The init's store config decides the backbones and their weights, the clip sampling, the log-mel front end
and the text targets, so the fine-tune continues exactly what fuse-train started. One process, or several
under ``torchrun`` (DDP, one shard of every epoch per process). The run folder gets config.json,
steps.jsonl (every step), metrics.jsonl (the init's val scores as epoch 0, then every scored epoch),
last.pt and best.pt.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn.functional as F

from cavnet.errors import CavnetError
from cavnet.extract.config import ExtractConfig
from cavnet.extract.datasets import Corpus
from cavnet.extract.device import decode_workers
from cavnet.extract.manifest import Manifest, ManifestRow
from cavnet.finetune import distributed as fd
from cavnet.finetune.build import build_avnet
from cavnet.finetune.config import FinetuneConfig
from cavnet.finetune.data import RETRIES, ClipBatch, EpochSampler, VideoClips, eval_loader, make_loader
from cavnet.finetune.engine import EpochStats, run_steps, score_videos, targets_for
from cavnet.fuse.checkpoint import Checkpoint
from cavnet.fuse.engine import TunedText
from cavnet.fuse.loss import make_loss
from cavnet.fuse.metrics import split_metrics
from cavnet.fuse.run.folder import RunFolder
from cavnet.fuse.run.harness import TrainingRun, load_tuned_text, require_text_head, temperature
from cavnet.fuse.run.optim import make_optimizer, optimizer_step, steps_per_epoch

LOGS = {"steps.jsonl": "step", "metrics.jsonl": "step"}


@dataclass
class FinetuneResult:
    out: Path
    best: dict[str, Any]
    last: dict[str, Any]
    init: dict[str, Any] = field(default_factory=dict)


class FinetuneRun(TrainingRun):
    """One fine-tune run in this process (of ``env.world``): model, data, optimiser, schedule, run folder."""

    # FinetuneConfig fields a resumed run may change: where it runs and when it stops, scores and saves.
    resume_free = ("device", "decode_workers", "eval_every", "save_every", "max_steps", "init", "tensorboard")
    log_unscored = False  # metrics.jsonl holds the scored epochs; steps.jsonl every step

    def __init__(self, cfg: FinetuneConfig, env: fd.DistEnv, device: torch.device, corpus: Corpus, out: Path,
                 echo: Callable[[str], None] = print, progress: bool = True, init: Checkpoint | None = None,
                 rows: CorpusRows | None = None) -> None:
        """``init``: ``cfg.init`` already loaded (and so checked) by the caller; ``rows``: the corpus already
        read by it (:func:`corpus_rows`)."""
        if cfg.batch_size % env.world:
            raise CavnetError(f"--batch-size {cfg.batch_size} does not split over {env.world} processes")
        self.cfg, self.env, self.device = cfg, env, device
        self.echo, self.progress = (echo if env.main else (lambda _: None)), progress and env.main
        self.init = init = init if init is not None else Checkpoint.load(cfg.init)
        config = init.extract_config(cfg.init)
        self.manifest, train_rows, self.val_rows, kind = rows or corpus_rows(cfg, env, init, corpus)
        self.text = _tuned_text(cfg, env, device, init, config, self.manifest.classes)  # draws no numbers
        self.frozen_text_state = init.text_encoder
        torch.manual_seed(cfg.seed)
        self.net = build_avnet(init, device, cfg)
        self.loss_fn = None
        if init.head == "text":
            self.loss_fn = make_loss(init.fusion.loss).to(device)
            self.loss_fn.load_state_dict(init.loss)
        self.per = per = cfg.batch_size // env.world
        workers = decode_workers(cfg.decode_workers, cfg.device)
        train_set = VideoClips(train_rows, config, cfg.augment, cfg.seed)
        self.sampler = EpochSampler(train_set, env.world, env.rank, cfg.seed)
        # a trailing batch of one video over all processes is dropped (no negatives); any larger one is kept
        self.loader = make_loader(train_set, per, workers, device, self.sampler, world=env.world)
        self.folder = RunFolder(out, LOGS, env.main, corpus.record(), cfg.tensorboard)
        self.val_loader = eval_loader(self.val_rows, config, device, env, per, workers)
        self.steps_per_epoch = steps_per_epoch(len(self.sampler.inner), per, env.world)
        self.optimizer, self.scheduler = make_optimizer(self._parts(), cfg, self.steps_per_epoch)
        self.targets = targets_for(train_rows, self.manifest, init, config, kind, device, tuned=self.text is not None)
        self.model = fd.wrap(self.net, env, device)  # the DDP wrapper of net under torchrun
        self.class_embedding = init.class_embedding.float().to(device)

    def _parts(self) -> list[tuple[str, Any, float]]:
        net, cfg = self.net, self.cfg
        head = list(net.fusion.parameters()) + (list(self.loss_fn.parameters()) if self.loss_fn is not None else [])
        parts = [("fusion", head, cfg.lr), ("visual", net.visual.parameters(), cfg.backbone_lr),
                 ("audio", net.audio.parameters(), cfg.backbone_lr)]
        if self.text is not None:
            parts.append(("text_encoder", self.text.encoder.parameters(), cfg.text_encoder_lr))
        return parts

    # ------------------------------------------------------------------------------------ the step
    def _loss(self, batch: ClipBatch) -> torch.Tensor:
        """The loss of one batch, on the batch of all processes: contrastive (head 'text') or cross-entropy."""
        out = self.model(batch.clips, batch.vmask, batch.examples, batch.amask)
        if self.loss_fn is None:
            return F.cross_entropy(out.float(), batch.labels)
        groups = self.targets.groups[batch.positions]
        if self.text is not None:  # one forward of the tuned encoder over the batch's unique texts
            text = self.text.embed_keys(groups, self.targets.strings)
        else:
            text = self.targets.text[batch.positions]
        text = self.net.fusion.encode_text(text)  # the trainable text projection, when the fusion has one
        env = self.env
        return self.loss_fn(fd.gather_with_grad(out, env), fd.gather(text, env), fd.gather(groups, env))

    def _step(self, batch: ClipBatch) -> float:
        """One optimiser step; returns the loss (the same value in every process)."""
        if not bool(batch.valid.all()):
            raise CavnetError(f"a training batch holds videos that do not decode "
                              f"({', '.join(sorted(set(batch.statuses)))}) even after {RETRIES} other videos were "
                              "tried in their place: check the corpus")
        loss = self._loss(batch)
        if self.loss_fn is None and self.env.active:  # a per-process loss: every process stops at the same step
            if fd.mean(float(not bool(torch.isfinite(loss.detach()).all())), self.env, self.device) > 0:
                loss = loss + float("nan")
        optimizer_step(loss, self.optimizer, self.scheduler, self.loss_fn)
        value = float(loss.detach())
        return fd.mean(value, self.env, self.device) if self.loss_fn is None else value

    def _after_step(self, stats: EpochStats, epoch: int, skip: int) -> bool:
        """Log the step, save mid-epoch when due; False when ``max_steps`` stops the run."""
        cfg = self.cfg
        lrs = {g["name"]: g["lr"] for g in self.optimizer.param_groups}
        self.folder.append("steps.jsonl", {"step": self.step, "epoch": epoch + 1, "loss": stats.losses[-1],
                                           "lr": lrs.get("fusion.decay"),
                                           "backbone_lr": lrs.get("visual.decay", lrs.get("audio.decay")),
                                           **stats.last})
        if cfg.save_every and self.step % cfg.save_every == 0 and skip + stats.steps < self.steps_per_epoch:
            self.save("last.pt", epoch, skip + stats.steps)
        return not (cfg.max_steps and self.step >= cfg.max_steps)

    def train_epoch(self, epoch: int, skip: int) -> tuple[dict[str, Any], int, bool]:
        from tqdm import tqdm

        self.sampler.set_epoch(epoch, skip * self.per)
        self.model.train()
        if self.text is not None:
            self.text.encoder.eval()  # trained without dropout: deterministic targets (see SentenceEncoder)
        with tqdm(total=self.steps_per_epoch, initial=skip, desc=f"epoch {epoch + 1}/{self.cfg.epochs}",
                  unit="step", disable=not self.progress, leave=False) as bar:
            def after_step(stats: EpochStats) -> bool:
                bar.update(1)
                bar.set_postfix(loss=f"{stats.losses[-1]:.3f}", clips_s=f"{stats.summary()['clips_per_s']:.0f}")
                return self._after_step(stats, epoch, skip)

            stats = run_steps(self.loader, self._step, after_step, self.env, self.device)
        taken = skip + stats.steps
        line = {"epoch": epoch + 1, "epoch_step": taken, "partial": taken < self.steps_per_epoch, "step": self.step,
                **stats.summary()}
        return line, taken, bool(self.cfg.max_steps) and self.step >= self.cfg.max_steps

    # ------------------------------------------------------------------------------------ harness hooks
    def score_val(self) -> dict[str, Any]:
        sc = score_videos(self.net, self.val_loader, self.scoring_classes(), self.init.head, self.device, self.env)
        return {**split_metrics(sc, len(self.manifest.classes)), "temperature": temperature(self.loss_fn),
                "peak_gpu_gb": _peak_memory(self.device)}

    def report(self, line: dict[str, Any]) -> None:
        what = "init" if line["epoch"] == 0 else f"epoch {line['epoch']}" + (
            f" (stopped at step {self.step})" if line["partial"] else "")
        train = f"loss {line['loss']:.4f}  {line['clips_per_s']:.1f} clips/s  " if "loss" in line else ""
        self.echo(f"{what}: {train}val top-1 {line['top1']:.1f}  top-5 {line['top5']:.1f}  "
                  f"mean-class {line['mean_class']:.1f}")

    def checkpoint_fields(self) -> dict[str, Any]:
        """The init's fusion configs and class texts, the trained fusion and both backbones' weights."""
        i, net = self.init, self.net
        return dict(model=net.fusion.state_dict(), fusion=i.fusion, class_names=i.class_names,
                    store_config=i.store_config, store_dims=i.store_dims, text_model=i.text_model, train=i.train,
                    text_sets=i.text_sets if self.text is None else None,  # a tuned encoder: stale
                    kind="finetune", visual=net.visual.state_dict(), audio=net.audio.state_dict(),
                    finetune=self.cfg.to_dict(), init=self.cfg.init)

    def check_resumable(self, ckpt: Checkpoint) -> list[str]:
        if ckpt.kind != "finetune" or ckpt.state is None:
            raise CavnetError(f"{self.folder.last}: not a fine-tune checkpoint, cannot resume from it")
        return []

    def recorded_config(self, ckpt: Checkpoint) -> dict[str, Any]:
        return ckpt.finetune or {}

    def load_weights(self, ckpt: Checkpoint) -> None:
        self.net.fusion.load_state_dict(ckpt.model)
        self.net.visual.load_state_dict(ckpt.visual)
        self.net.audio.load_state_dict(ckpt.audio)

    def sync(self) -> None:
        fd.barrier(self.env)

    # ------------------------------------------------------------------------------------ the run
    def fit(self, resume: bool, eval_init: bool) -> FinetuneResult:
        """Train ``cfg.epochs`` epochs (or until ``max_steps``), from ``last.pt`` when ``resume``; with
        ``eval_init`` a fresh run first scores the init checkpoint (metrics.jsonl's epoch 0)."""
        resumed = self.folder.resumable(resume)
        start, skip, init = 0, 0, {}
        if resumed is not None:
            start, skip = self.resume(resumed)
            self.echo(f"resuming {self.folder.out} at epoch {start + 1}, step {self.step + 1}")
        record = {"finetune": self.cfg.to_dict(), "processes": self.env.world,
                  "train_videos": len(self.sampler.inner.dataset), "val_videos": len(self.val_rows)}
        self.folder.start(record, resumed)
        self.sync()
        if resumed is None and eval_init:
            init = {"epoch": 0, "step": 0, **self.score_val()}
            self.folder.append("metrics.jsonl", init)
            self.report(init)
        last = self.run_epochs(start, skip)
        self.folder.finish()
        return FinetuneResult(self.folder.out, self.folder.best, last, init)


def _tuned_text(cfg: FinetuneConfig, env: fd.DistEnv, device: torch.device, init: Checkpoint,
                config: ExtractConfig, classes: tuple[str, ...]) -> TunedText | None:
    """``--text-encoder-lr`` > 0: the sentence encoder of the init's store config (with the init's tuned
    weights when it has them), on ``device``, and the class prompts; else None."""
    if not cfg.tunes_text:
        return None
    require_text_head(init.head)
    if env.world > 1:
        raise CavnetError("--text-encoder-lr runs in one process for now (its gradients are not averaged over "
                          "processes); run without torchrun")
    from cavnet.extract.text_tables import class_prompts

    return load_tuned_text(config.text_model, int(init.class_embedding.shape[1]), device,
                           class_prompts(classes, config.prompt_template), {}, init.text_encoder)


CorpusRows = tuple[Manifest, list[ManifestRow], list[ManifestRow], str]


def corpus_rows(cfg: FinetuneConfig, env: fd.DistEnv, init: Checkpoint, corpus: Corpus) -> CorpusRows:
    """The manifest (rank 0 reads it first: ``synth`` may have to generate the corpus), its training rows
    (files on disk; labelled unless the targets are the videos' texts), its labelled val rows, the targets."""
    if not env.main:
        fd.barrier(env)
    m = corpus.load((cfg.train_split, cfg.val_split))
    if env.main:
        fd.barrier(env)
    init.check_classes(m.classes, f"the {corpus.dataset} corpus")
    kind = init.train.get("targets", "label")
    train_rows = [r for r in m.rows if r.split == cfg.train_split and r.exists and (r.label >= 0 or kind != "label")]
    val_rows = [r for r in m.rows if r.split == cfg.val_split and r.label >= 0]
    if len(train_rows) < 2 or not val_rows:
        raise CavnetError(f"need training videos in split {cfg.train_split!r} and labelled videos in "
                          f"{cfg.val_split!r}; found {len(train_rows)} and {len(val_rows)}")
    return m, train_rows, val_rows, kind


def _peak_memory(device: torch.device) -> float:
    return torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else 0.0
