"""finetune, wired: raw videos -> whole CAV-Net (backbones + fusion) -> checkpoints and metrics.

Starts from a fuse-train (or fine-tune) checkpoint: its store config decides the backbones and their
weights, the clip sampling, the log-mel front end and the text targets, so the fine-tune continues exactly
what fuse-train started. Runs in one process, or in several under ``torchrun`` (DDP, one shard of every
epoch per process); only rank 0 writes. Writes config.json, steps.jsonl (every step), metrics.jsonl (the
init's val scores as epoch 0, then every epoch), last.pt and best.pt.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch

from cavnet.errors import CavnetError
from cavnet.extract.manifest import Manifest, ManifestRow
from cavnet.fuse.engine import warmup_cosine
from cavnet.fuse.loss import ContrastiveLoss
from cavnet.finetune import distributed as fd
from cavnet.fuse.checkpoint import load_checkpoint, save_checkpoint, trim_jsonl
from cavnet.finetune.build import build_avnet, check_classes, store_config_of
from cavnet.finetune.config import FinetuneConfig
from cavnet.finetune.data import EpochSampler, VideoClips, make_loader
from cavnet.finetune.engine import EpochStats, Targets, Trainer, score_videos, train_epoch
from cavnet.pipelines.finetune_eval import eval_loader, metrics_of
from cavnet.finetune.model import param_groups


@dataclass
class FinetuneResult:
    out: Path
    best: dict[str, Any]
    last: dict[str, Any]
    init: dict[str, Any] = field(default_factory=dict)


@dataclass
class _Run:
    """What the epoch loop needs besides the trainer."""

    cfg: FinetuneConfig
    init_state: dict[str, Any]
    out: Path
    manifest: Manifest
    val_rows: list[ManifestRow]
    sampler: EpochSampler
    loader: Any
    val_loader: Any
    steps_per_epoch: int
    say: Callable[[str], None]
    progress: bool
    best: dict[str, Any] = field(default_factory=lambda: {"top1": -1.0})


def run_finetune(cfg: FinetuneConfig, dataset: str, root: Path | None, manifest: Path | None, out: Path,
                 resume: bool = False, eval_init: bool = True, echo: Callable[[str], None] = print,
                 progress: bool = True) -> FinetuneResult:
    """Fine-tune ``cfg.init`` on a corpus; see the module docstring for what is written to ``out``."""
    env, device = fd.setup(cfg.device)
    try:
        return _finetune(cfg, env, device, dataset, root, manifest, out, resume, eval_init, echo, progress)
    finally:
        fd.teardown(env)


def _finetune(cfg, env, device, dataset, root, manifest, out, resume, eval_init, echo, progress) -> FinetuneResult:
    if cfg.batch_size % env.world:
        raise CavnetError(f"--batch-size {cfg.batch_size} does not split over {env.world} processes")
    state = load_checkpoint(Path(cfg.init))
    config = store_config_of(state, cfg.init)
    m, train_rows, val_rows, kind = _corpus(cfg, env, state, dataset, root, manifest)
    torch.manual_seed(cfg.seed)
    net = build_avnet(state, device, cfg)
    loss_fn = None
    if state["fusion_config"]["head"] == "text":
        loss_fn = ContrastiveLoss().to(device)
        loss_fn.load_state_dict(state["loss"])
    per = cfg.batch_size // env.world
    train_set = VideoClips(train_rows, config, cfg.augment, cfg.seed)
    sampler = EpochSampler(train_set, env.world, env.rank, cfg.seed)
    share = len(sampler.inner)
    full = share >= per  # drop a last, smaller batch (a contrastive batch of 1 or 2 teaches little)
    loader = make_loader(train_set, per, cfg.decode_workers, device, sampler, drop_last=full)
    run = _Run(cfg, state, out, m, val_rows, sampler, loader,
               eval_loader(val_rows, config, device, env, per, cfg.decode_workers),
               share // per if full else 1, echo if env.main else (lambda _: None), progress and env.main)
    optimizer = torch.optim.AdamW(param_groups(net, loss_fn, cfg.lr, cfg.backbone_lr, cfg.weight_decay))
    total = cfg.epochs * run.steps_per_epoch
    scheduler = warmup_cosine(optimizer, int(round(cfg.warmup_epochs * run.steps_per_epoch)), total)
    targets = _targets(train_rows, m, state, config, kind, device)
    tr = Trainer(fd.wrap(net, env, device), net, loss_fn, optimizer, scheduler, targets, env, device)
    return _train(run, tr, resume, eval_init)


def _corpus(cfg: FinetuneConfig, env: fd.DistEnv, state: dict[str, Any], dataset: str, root: Path | None,
            manifest: Path | None) -> tuple[Manifest, list[ManifestRow], list[ManifestRow], str]:
    """The manifest (rank 0 reads it first: ``synth`` may have to generate the corpus), its training rows
    (files on disk; labelled unless the targets are the videos' texts), its labelled val rows, the targets."""
    from cavnet.pipelines.manifests import load_manifest

    if not env.main:
        fd.barrier(env)
    m = load_manifest(dataset, root, manifest, (cfg.train_split, cfg.val_split))
    if env.main:
        fd.barrier(env)
    check_classes(state, m, cfg.init)
    kind = state.get("train_config", {}).get("targets", "label")
    train_rows = [r for r in m.rows if r.split == cfg.train_split and r.exists and (r.label >= 0 or kind != "label")]
    val_rows = [r for r in m.rows if r.split == cfg.val_split and r.label >= 0]
    if len(train_rows) < 2 or not val_rows:
        raise CavnetError(f"need training videos in split {cfg.train_split!r} and labelled videos in "
                          f"{cfg.val_split!r}; found {len(train_rows)} and {len(val_rows)}")
    return m, train_rows, val_rows, kind


def _targets(rows: list[ManifestRow], m: Manifest, state: dict[str, Any], config, kind: str,
             device: torch.device) -> Targets:
    """Label targets: the checkpoint's class embeddings. Video-text targets: each video's own text, embedded
    with the text model recorded in the store config (the class prompt when it has none)."""
    class_emb = state["class_embedding"].float()
    if kind == "label":
        labels = torch.tensor([r.label for r in rows])
        return Targets(class_emb[labels].to(device), labels.to(device))
    from cavnet.fuse.data import text_groups
    from cavnet.extract.text_tables import embed_texts

    tables = embed_texts(Manifest(tuple(rows), m.classes), config, "cpu")
    text = torch.from_numpy(tables.video)
    return Targets(text.to(device), torch.from_numpy(text_groups(tables.video)).to(device))


def _train(run: _Run, tr: Trainer, resume: bool, eval_init: bool) -> FinetuneResult:
    cfg, out, env = run.cfg, run.out, tr.env
    if env.main:
        out.mkdir(parents=True, exist_ok=True)
    fd.barrier(env)
    start, skip, init = 0, 0, {}
    if resume and (out / "last.pt").exists():
        start, skip = _resume(out / "last.pt", tr, run)
        if env.main:
            _trim_logs(out, tr.step)
        run.say(f"resuming {out} at epoch {start + 1}, step {tr.step + 1}")
    else:
        if env.main:
            for name in ("metrics.jsonl", "steps.jsonl"):
                (out / name).unlink(missing_ok=True)
        if eval_init:
            init = _record(run, tr, {"epoch": 0, "step": 0}, None)
    if env.main:
        (out / "config.json").write_text(json.dumps({"finetune": cfg.to_dict(), "processes": env.world,
                                                     "train_videos": len(run.sampler.inner.dataset),
                                                     "val_videos": len(run.val_rows)}, indent=2))
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
    return FinetuneResult(out, run.best, last, init)


def _trim_logs(out: Path, step: int) -> None:
    """Drop the log lines written after the checkpoint a run resumes from, so redone steps are not logged twice."""
    for name in ("steps.jsonl", "metrics.jsonl"):
        trim_jsonl(out / name, "step", step)


def _epoch(run: _Run, tr: Trainer, epoch: int, skip: int) -> tuple[EpochStats, bool]:
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
            _log_step(run, tr, epoch, stats)
            if cfg.save_every and tr.step % cfg.save_every == 0 and skip + stats.steps < run.steps_per_epoch:
                _save(run, tr, "last.pt", epoch, skip + stats.steps)
            state["stopped"] = bool(cfg.max_steps) and tr.step >= cfg.max_steps
            return not state["stopped"]

        stats = train_epoch(tr, run.loader, EpochStats(), after_step)
    return stats, state["stopped"]


def _log_step(run: _Run, tr: Trainer, epoch: int, stats: EpochStats) -> None:
    if tr.env.main:
        lrs = {g["name"]: g["lr"] for g in tr.optimizer.param_groups}
        line = {"step": tr.step, "epoch": epoch + 1, "loss": stats.losses[-1], "lr": lrs.get("fusion.decay"),
                "backbone_lr": lrs.get("visual.decay", lrs.get("audio.decay")), **stats.last}
        with open(run.out / "steps.jsonl", "a") as fh:
            fh.write(json.dumps(line) + "\n")


def _record(run: _Run, tr: Trainer, head: dict[str, Any], where: tuple[int, int] | None) -> dict[str, Any]:
    """Score the val split, append to metrics.jsonl, print; with ``where`` = (completed epochs, steps into
    the next) also write last.pt, and best.pt when val top-1 improved."""
    env = tr.env
    class_emb = run.init_state["class_embedding"].float().to(tr.device)
    sc = score_videos(tr.net, run.val_loader, class_emb, run.init_state["fusion_config"]["head"], tr.device, env)
    line = {**head, **metrics_of(sc, len(run.manifest.classes)), "temperature": _temperature(tr.loss_fn),
            "peak_gpu_gb": _peak_memory(tr.device)}
    if env.main:
        with open(run.out / "metrics.jsonl", "a") as fh:
            fh.write(json.dumps(line) + "\n")
    what = "init" if where is None else f"epoch {line['epoch']}" + (
        f" (stopped at step {tr.step})" if line["partial"] else "")
    train = f"loss {line['loss']:.4f}  {line['clips_per_s']:.1f} clips/s  " if "loss" in line else ""
    run.say(f"{what}: {train}val top-1 {line['top1']:.1f}  top-5 {line['top5']:.1f}  "
            f"mean-class {line['mean_class']:.1f}")
    if where is not None:
        if line["top1"] > run.best["top1"]:
            run.best = _plain(line)
            _save(run, tr, "best.pt", *where)
        _save(run, tr, "last.pt", *where)
    return line


def _save(run: _Run, tr: Trainer, name: str, epoch: int, epoch_step: int) -> None:
    if tr.env.main:
        save_checkpoint(run.out / name, _state(run, tr, epoch, epoch_step))
    fd.barrier(tr.env)


def _state(run: _Run, tr: Trainer, epoch: int, epoch_step: int) -> dict[str, Any]:
    """A fine-tune checkpoint: a fuse-train checkpoint (fusion ``model``, configs, class embeddings) plus
    both backbones' weights and where in the schedule it was taken."""
    init, net = run.init_state, tr.net
    keep = ("fusion_config", "train_config", "store_config", "store_dims", "class_names", "class_embedding",
            "text_model")
    cuda = tr.device.type == "cuda"
    return {**{k: init[k] for k in keep if k in init}, "kind": "finetune", "model": net.fusion.state_dict(),
            "visual": net.visual.state_dict(), "audio": net.audio.state_dict(),
            "loss": tr.loss_fn.state_dict() if tr.loss_fn is not None else {},
            "optimizer": tr.optimizer.state_dict(), "scheduler": tr.scheduler.state_dict(), "epoch": epoch,
            "epoch_step": epoch_step, "step": tr.step, "best": run.best,
            "finetune_config": run.cfg.to_dict(), "init": run.cfg.init, "rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state(tr.device) if cuda else torch.zeros(0, dtype=torch.uint8)}


def _plain(d: dict[str, Any]) -> dict[str, Any]:
    """Metrics as plain JSON types (what ``torch.load(weights_only=True)`` accepts)."""
    return json.loads(json.dumps(d))


def _resume(path: Path, tr: Trainer, run: _Run) -> tuple[int, int]:
    """Load last.pt into the trainer; (completed epochs, steps into the next) to go on from."""
    state, cfg = load_checkpoint(path), run.cfg
    if state.get("kind") != "finetune":
        raise CavnetError(f"{path}: not a fine-tune checkpoint, cannot resume from it")
    old = state["finetune_config"]
    shape = ("end_to_end", "freeze_until", "freeze_audio")  # what decides the trainable weights
    changed = [k for k in shape if old.get(k) != getattr(cfg, k)]
    if (old.get("backbone_lr", 0) > 0) != (cfg.backbone_lr > 0):
        changed.append("backbone_lr")
    if changed:
        names = ", ".join("--" + k.replace("_", "-") for k in changed)
        raise CavnetError(f"{path} was trained with other {names}; resume it with the same options")
    if state["epoch_step"] and old.get("batch_size") != cfg.batch_size:
        raise CavnetError(f"{path} stopped inside an epoch with --batch-size {old.get('batch_size')}; "
                          f"resume it with the same batch size, not {cfg.batch_size}")
    net = tr.net
    net.fusion.load_state_dict(state["model"])
    net.visual.load_state_dict(state["visual"])
    net.audio.load_state_dict(state["audio"])
    if tr.loss_fn is not None:
        tr.loss_fn.load_state_dict(state["loss"])
    tr.optimizer.load_state_dict(state["optimizer"])
    tr.scheduler.load_state_dict(state["scheduler"])
    torch.set_rng_state(state["rng"])
    if tr.device.type == "cuda" and state["cuda_rng"].numel():
        torch.cuda.set_rng_state(state["cuda_rng"], tr.device)
    tr.step = int(state["step"])
    run.best = dict(state["best"])
    return int(state["epoch"]), int(state["epoch_step"])


def _temperature(loss_fn) -> float:
    if loss_fn is None:
        return float("nan")
    return float(1.0 / loss_fn.scale.detach())


def _peak_memory(device: torch.device) -> float:
    return torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else 0.0
