"""demo, wired: AV-Synth -> extract (small backbones, local Dask) -> ablation -> report.md.

Every step reuses what an earlier run left: the corpus, the store, finished ablation runs.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Callable

from cavnet.fuse.train_config import TrainConfig
from cavnet.pipelines.demo.config import DemoConfig
from cavnet.pipelines.extract.options import RunOptions


def run_demo(out: Path, cfg: DemoConfig, echo: Callable[[str], None] = print, progress: bool = True) -> Path:
    from cavnet.extract.provenance import random_weights_note
    from cavnet.extract.synth import synth
    from cavnet.pipelines.ablate import run_ablate
    from cavnet.pipelines.demo.hard import HARD_VARIANTS, render_hard_report
    from cavnet.pipelines.demo.report import render_report
    from cavnet.pipelines.extract.run import run_extract
    from cavnet.extract.backbones.pretrained import extract_config
    from cavnet.extract.datasets import load_manifest
    from cavnet.extract.files.outputs import Output, check_outputs, claim_folder, write_text

    t0 = time.perf_counter()
    hard = cfg.task == "hard"
    tag = "-hard" if hard else ""
    # a folder of other files is refused; a demo folder of an older cavnet (its corpus, no marker) goes on
    check_outputs([Output(out, "--out", folder=True)], command="demo", legacy=(f"av-synth{tag}",))
    claim_folder(out, "demo")
    corpus, store = out / f"av-synth{tag}", out / f"features{tag}.h5"
    if not (corpus / "train.csv").exists():
        what = "hard, 16 classes" if hard else f"{cfg.classes} classes"
        echo(f"[1/3] writing AV-Synth ({cfg.videos} videos, {what}) to {corpus}")
        synth(corpus, videos=cfg.videos, classes=None if hard else cfg.classes, seed=cfg.seed, workers=cfg.workers,
              task=cfg.task)
    else:
        echo(f"[1/3] reusing the corpus in {corpus}")
    echo(f"[2/3] extracting features with {cfg.visual} + {cfg.audio} (random weights) into {store}")
    manifest = load_manifest("k400", corpus)
    config = extract_config(cfg.visual, cfg.audio, None, None, "default", "a video of a person {label}",
                            cfg.clips, cfg.segments)
    ex = run_extract(manifest, config, RunOptions(shard_size=25, workers=cfg.workers, device="auto"), store,
                     echo=echo, progress=progress)
    t_extract = time.perf_counter() - t0
    echo(f"[3/3] ablation: preset {cfg.preset}, {cfg.seeds} seeds, {cfg.epochs} epochs, peak lr {cfg.lr:g}")
    tcfg = TrainConfig(epochs=cfg.epochs, batch_size=cfg.batch_size, lr=cfg.lr, seed=cfg.seed, device="cpu")
    rows = run_ablate(store, out / f"ablation{tag}", cfg.preset, cfg.seeds, tcfg, cfg.workers, echo,
                      only=HARD_VARIANTS if hard else None, base={"d_model": cfg.d_model})
    report = out / f"report{tag}.md"
    render = render_hard_report if hard else render_report
    write_text(report, render(cfg, ex.counts, rows, t_extract, time.perf_counter() - t0,
                              random_weights_note(config)))
    return report
