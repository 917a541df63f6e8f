"""The fine-tune run: epochs of steps over raw-video batches, val scoring, logs and checkpoints through the
shared run harness (``fuse.run``), mid-epoch saves and an exact resume. Only the main process writes.

Writes config.json, steps.jsonl (every step), metrics.jsonl (the init's val scores as epoch 0, then every
scored epoch), last.pt and best.pt to the run folder.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch

from cavnet.errors import CavnetError
from cavnet.extract.manifest import Manifest, ManifestRow
from cavnet.finetune import distributed as fd
from cavnet.finetune.config import FinetuneConfig
from cavnet.finetune.data import EpochSampler
from cavnet.finetune.engine import EpochStats, Trainer, score_videos, train_epoch
from cavnet.fuse.checkpoint import Checkpoint, TrainingState
from cavnet.fuse.metrics import split_metrics
from cavnet.fuse.run import RunFolder, changed_options, restore, rng_state, temperature

# FinetuneConfig fields a resumed run may change: where it runs and when it stops, scores and saves.
RESUME_FREE = ("device", "decode_workers", "eval_every", "save_every", "max_steps", "init", "tensorboard")
LOGS = {"steps.jsonl": "step", "metrics.jsonl": "step"}


@dataclass
class FinetuneResult:
    out: Path
    best: dict[str, Any]
    last: dict[str, Any]
    init: dict[str, Any] = field(default_factory=dict)


@dataclass
class FinetuneRun:
    """What the epoch loop needs besides the trainer."""

    cfg: FinetuneConfig
    init: Checkpoint
    folder: RunFolder
    manifest: Manifest
    val_rows: list[ManifestRow]
    sampler: EpochSampler
    loader: Any
    val_loader: Any
    steps_per_epoch: int
    say: Callable[[str], None]
    progress: bool


def fit(run: FinetuneRun, tr: Trainer, resume: bool, eval_init: bool) -> FinetuneResult:
    """Train ``run.cfg.epochs`` epochs (or until ``max_steps``), from ``last.pt`` when ``resume``."""
    cfg, env = run.cfg, tr.env
    resumed = run.folder.resumable(resume)
    start, skip, init = 0, 0, {}
    if resumed is not None:
        start, skip = _resume(resumed, tr, run)
        run.say(f"resuming {run.folder.out} at epoch {start + 1}, step {tr.step + 1}")
    record = {"finetune": cfg.to_dict(), "processes": env.world, "train_videos": len(run.sampler.inner.dataset),
              "val_videos": len(run.val_rows)}
    run.folder.start(record, resumed)
    fd.barrier(env)
    if resumed is None and eval_init:
        init = _record(run, tr, {"epoch": 0, "step": 0}, None)
    last: dict[str, Any] = {}
    for epoch in range(start, cfg.epochs):
        first = skip if epoch == start else 0
        stats, stopped = _epoch(run, tr, epoch, first)
        taken = first + stats.steps
        finished = taken >= run.steps_per_epoch
        due = cfg.eval_every and (epoch + 1) % cfg.eval_every == 0
        if due or stopped or epoch + 1 == cfg.epochs:
            head = {"epoch": epoch + 1, "epoch_step": taken, "partial": not finished, "step": tr.step,
                    **stats.summary()}
            last = _record(run, tr, head, (epoch + 1, 0) if finished else (epoch, taken))
        if stopped:
            break
    run.folder.finish()
    return FinetuneResult(run.folder.out, run.folder.best, last, init)


def _epoch(run: FinetuneRun, tr: Trainer, epoch: int, skip: int) -> tuple[EpochStats, bool]:
    """Train one epoch (from step ``skip``); True as second value when ``max_steps`` stopped it."""
    from tqdm import tqdm

    cfg = run.cfg
    run.sampler.set_epoch(epoch, skip * (cfg.batch_size // tr.env.world))
    state = {"stopped": False}
    with tqdm(total=run.steps_per_epoch, initial=skip, desc=f"epoch {epoch + 1}/{cfg.epochs}", unit="step",
              disable=not run.progress, leave=False) as bar:
        def after_step(stats: EpochStats) -> bool:
            bar.update(1)
            bar.set_postfix(loss=f"{stats.losses[-1]:.3f}", clips_s=f"{stats.summary()['clips_per_s']:.0f}")
            lrs = {g["name"]: g["lr"] for g in tr.optimizer.param_groups}
            run.folder.append("steps.jsonl", {"step": tr.step, "epoch": epoch + 1, "loss": stats.losses[-1],
                                              "lr": lrs.get("fusion.decay"),
                                              "backbone_lr": lrs.get("visual.decay", lrs.get("audio.decay")),
                                              **stats.last})
            if cfg.save_every and tr.step % cfg.save_every == 0 and skip + stats.steps < run.steps_per_epoch:
                _save(run, tr, "last.pt", epoch, skip + stats.steps)
            state["stopped"] = bool(cfg.max_steps) and tr.step >= cfg.max_steps
            return not state["stopped"]

        stats = train_epoch(tr, run.loader, EpochStats(), after_step)
    return stats, state["stopped"]


def _record(run: FinetuneRun, tr: Trainer, head: dict[str, Any], where: tuple[int, int] | None) -> dict[str, Any]:
    """Score the val split, append to metrics.jsonl, print; with ``where`` = (completed epochs, steps into
    the next) also write last.pt, and best.pt when val top-1 improved."""
    class_emb = scoring_classes(run, tr)
    sc = score_videos(tr.net, run.val_loader, class_emb, run.init.head, tr.device, tr.env)
    line = {**head, **split_metrics(sc, len(run.manifest.classes)), "temperature": temperature(tr.loss_fn),
            "peak_gpu_gb": _peak_memory(tr.device)}
    run.folder.append("metrics.jsonl", line)
    what = "init" if where is None else f"epoch {line['epoch']}" + (
        f" (stopped at step {tr.step})" if line["partial"] else "")
    train = f"loss {line['loss']:.4f}  {line['clips_per_s']:.1f} clips/s  " if "loss" in line else ""
    run.say(f"{what}: {train}val top-1 {line['top1']:.1f}  top-5 {line['top5']:.1f}  "
            f"mean-class {line['mean_class']:.1f}")
    if where is not None:
        if run.folder.improved(line):
            _save(run, tr, "best.pt", *where)
        _save(run, tr, "last.pt", *where)
    return line


def _save(run: FinetuneRun, tr: Trainer, name: str, epoch: int, epoch_step: int) -> None:
    if tr.env.main:
        run.folder.save(name, checkpoint(run, tr, epoch, epoch_step))
    fd.barrier(tr.env)


def checkpoint(run: FinetuneRun, tr: Trainer, epoch: int, epoch_step: int) -> Checkpoint:
    """A fine-tune checkpoint: the init's fusion configs and class texts, the trained fusion and both
    backbones' weights, and where in the schedule it was taken."""
    rng, cuda_rng = rng_state(tr.device)
    state = TrainingState(tr.optimizer.state_dict(), tr.scheduler.state_dict(), epoch, run.folder.best, rng,
                          epoch_step, tr.step, cuda_rng)
    i, net = run.init, tr.net
    return Checkpoint(model=net.fusion.state_dict(), fusion=i.fusion, class_names=i.class_names,
                      class_embedding=scoring_classes(run, tr).cpu(), store_config=i.store_config,
                      store_dims=i.store_dims,
                      text_model=i.text_model, train=i.train,
                      loss=tr.loss_fn.state_dict() if tr.loss_fn is not None else {}, kind="finetune", state=state,
                      visual=net.visual.state_dict(), audio=net.audio.state_dict(), finetune=run.cfg.to_dict(),
                      init=run.cfg.init,
                      text_encoder=tr.text.state() if tr.text is not None else i.text_encoder)


def scoring_classes(run: FinetuneRun, tr: Trainer) -> torch.Tensor:
    """(C, Dt) on the device: the init's class embeddings, or the class prompts through the tuned encoder."""
    if tr.text is not None:
        return tr.text.class_embedding()
    return run.init.class_embedding.float().to(tr.device)


def _resume(ckpt: Checkpoint, tr: Trainer, run: FinetuneRun) -> tuple[int, int]:
    """Load last.pt into the trainer; (completed epochs, steps into the next) to go on from."""
    where, cfg = run.folder.last, run.cfg
    if ckpt.kind != "finetune" or ckpt.state is None:
        raise CavnetError(f"{where}: not a fine-tune checkpoint, cannot resume from it")
    new = cfg.to_dict()
    changed = changed_options(ckpt.finetune or {}, new, [k for k in new if k not in RESUME_FREE])
    if changed:
        raise CavnetError(f"{where} was trained with other {', '.join(changed)}; resume it with the same options")
    net = tr.net
    net.fusion.load_state_dict(ckpt.model)
    net.visual.load_state_dict(ckpt.visual)
    net.audio.load_state_dict(ckpt.audio)
    if tr.loss_fn is not None:
        tr.loss_fn.load_state_dict(ckpt.loss)
    if tr.text is not None:
        tr.text.resume(ckpt.text_encoder, where)
    restore(ckpt.state, tr.optimizer, tr.scheduler, tr.device)
    tr.step = ckpt.state.step
    return ckpt.state.epoch, ckpt.state.epoch_step


def _peak_memory(device: torch.device) -> float:
    return torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else 0.0
