"""finetune, wired: raw videos -> whole CAV-Net (backbones + fusion) -> ``finetune.trainer.fit``.

Starts from a fuse-train (or fine-tune) checkpoint: its store config decides the backbones and their
weights, the clip sampling, the log-mel front end and the text targets, so the fine-tune continues exactly
what fuse-train started. Runs in one process, or in several under ``torchrun`` (DDP, one shard of every
epoch per process); only rank 0 writes (see ``cavnet.finetune.trainer`` for the run folder's files).
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import torch

from cavnet.errors import CavnetError
from cavnet.extract.manifest import Manifest, ManifestRow
from cavnet.finetune import distributed as fd
from cavnet.finetune.build import build_avnet
from cavnet.finetune.config import FinetuneConfig
from cavnet.finetune.data import EpochSampler, VideoClips, epoch_steps, eval_loader, make_loader
from cavnet.finetune.engine import Trainer, targets_for
from cavnet.finetune.trainer import LOGS, FinetuneResult, FinetuneRun, fit
from cavnet.fuse.checkpoint import Checkpoint
from cavnet.fuse.engine import TunedText, warmup_cosine
from cavnet.fuse.loss import ContrastiveLoss
from cavnet.fuse.model import SentenceEncoder
from cavnet.fuse.run import RunFolder, hold_run_folder, param_groups


def run_finetune(cfg: FinetuneConfig, dataset: str, root: Path | None, manifest: Path | None, out: Path,
                 resume: bool = False, eval_init: bool = True, echo: Callable[[str], None] = print,
                 progress: bool = True) -> FinetuneResult:
    """Fine-tune ``cfg.init`` on a corpus, writing the run folder ``out``."""
    env, device = fd.setup(cfg.device)
    try:
        with hold_run_folder(out, env.main):
            return _finetune(cfg, env, device, dataset, root, manifest, out, resume, eval_init, echo, progress)
    finally:
        fd.teardown(env)


def _finetune(cfg, env, device, dataset, root, manifest, out, resume, eval_init, echo, progress) -> FinetuneResult:
    if cfg.batch_size % env.world:
        raise CavnetError(f"--batch-size {cfg.batch_size} does not split over {env.world} processes")
    init = Checkpoint.load(cfg.init)
    config = init.extract_config(cfg.init)
    m, train_rows, val_rows, kind = _corpus(cfg, env, init, dataset, root, manifest)
    text = _tuned_text(cfg, env, device, init, config, m.classes)  # before the seed: it draws no numbers after
    torch.manual_seed(cfg.seed)
    net = build_avnet(init, device, cfg)
    loss_fn = None
    if init.head == "text":
        loss_fn = ContrastiveLoss().to(device)
        loss_fn.load_state_dict(init.loss)
    per = cfg.batch_size // env.world
    train_set = VideoClips(train_rows, config, cfg.augment, cfg.seed)
    sampler = EpochSampler(train_set, env.world, env.rank, cfg.seed)
    share = len(sampler.inner)
    # a trailing batch of one video over all processes is dropped (no negatives); any larger one is kept
    loader = make_loader(train_set, per, cfg.decode_workers, device, sampler, world=env.world)
    run = FinetuneRun(cfg, init, RunFolder(out, LOGS, env.main, _corpus_record(dataset, root, manifest), cfg.tensorboard), m, val_rows, sampler, loader,
                      eval_loader(val_rows, config, device, env, per, cfg.decode_workers),
                      epoch_steps(share, per, env.world), echo if env.main else (lambda _: None), progress and env.main)
    head = list(net.fusion.parameters()) + (list(loss_fn.parameters()) if loss_fn is not None else [])
    parts = [("fusion", head, cfg.lr), ("visual", net.visual.parameters(), cfg.backbone_lr),
             ("audio", net.audio.parameters(), cfg.backbone_lr)]
    if text is not None:
        parts.append(("text_encoder", text.encoder.parameters(), cfg.text_encoder_lr))
    optimizer = torch.optim.AdamW(param_groups(parts, cfg.weight_decay))
    scheduler = warmup_cosine(optimizer, cfg.warmup_steps(run.steps_per_epoch), cfg.epochs * run.steps_per_epoch)
    targets = targets_for(train_rows, m, init, config, kind, device, tuned=text is not None)
    tr = Trainer(fd.wrap(net, env, device), net, loss_fn, optimizer, scheduler, targets, env, device, text=text)
    return fit(run, tr, resume, eval_init)


def _tuned_text(cfg: FinetuneConfig, env: fd.DistEnv, device: torch.device, init: Checkpoint, config,
                classes: tuple[str, ...]) -> TunedText | None:
    """``--text-encoder-lr`` > 0: the sentence encoder of the init's store config (with the init's tuned
    weights when it has them), on ``device``, and the class prompts; else None."""
    if not cfg.tunes_text:
        return None
    if init.head != "text":
        raise CavnetError("--text-encoder-lr needs the text head (head 'linear' has no text side)")
    if env.world > 1:
        raise CavnetError("--text-encoder-lr runs in one process for now (its gradients are not averaged over "
                          "processes); run without torchrun")
    from cavnet.extract.text import TextModelError, load_sentence_model
    from cavnet.extract.text_tables import class_prompts

    try:
        model = load_sentence_model(config.text_model, str(device), int(init.class_embedding.shape[1]),
                                    init.text_encoder)
    except TextModelError as exc:
        raise CavnetError(f"--text-encoder-lr: {exc}") from None
    return TunedText(SentenceEncoder(model), class_prompts(classes, config.prompt_template), {})


def _corpus_record(dataset: str, root: Path | None, manifest: Path | None) -> dict[str, str | None]:
    """What run.json says about the corpus a fine-tune reads (it reads videos, not a store)."""
    return {"dataset": dataset, "root": str(Path(root).resolve()) if root else None,
            "manifest": str(Path(manifest).resolve()) if manifest else None}


def _corpus(cfg: FinetuneConfig, env: fd.DistEnv, init: Checkpoint, dataset: str, root: Path | None,
            manifest: Path | None) -> tuple[Manifest, list[ManifestRow], list[ManifestRow], str]:
    """The manifest (rank 0 reads it first: ``synth`` may have to generate the corpus), its training rows
    (files on disk; labelled unless the targets are the videos' texts), its labelled val rows, the targets."""
    from cavnet.extract.datasets import load_manifest

    if not env.main:
        fd.barrier(env)
    m = load_manifest(dataset, root, manifest, (cfg.train_split, cfg.val_split))
    if env.main:
        fd.barrier(env)
    init.check_classes(m.classes, f"the {dataset} corpus")
    kind = init.train.get("targets", "label")
    train_rows = [r for r in m.rows if r.split == cfg.train_split and r.exists and (r.label >= 0 or kind != "label")]
    val_rows = [r for r in m.rows if r.split == cfg.val_split and r.label >= 0]
    if len(train_rows) < 2 or not val_rows:
        raise CavnetError(f"need training videos in split {cfg.train_split!r} and labelled videos in "
                          f"{cfg.val_split!r}; found {len(train_rows)} and {len(val_rows)}")
    return m, train_rows, val_rows, kind
