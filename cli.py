"""The `cavnet` command line: thin click commands that build a config and call ``cavnet.pipelines``.

Heavy imports (torch, av, dask) happen inside the commands, so ``cavnet --help`` stays instant.
Bad input ends with one line on stderr and exit code 2, never a traceback.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from cavnet import __version__
from cavnet.cli_groups import (DECODE_WORKERS_HELP, EXISTING, OUT, backbone_options, bench_options, corpus_from,
                               corpus_options, dataset_options, decoder_option, demo_opt, evaluate_options,
                               finetune_options, model_options, model_overrides, predict_options, prepare_options,
                               run_opt, run_options, train_opt, train_options)
from cavnet.cli_options import build
from cavnet.configs import MAX_SEED, MAX_WORKERS, check_device
from cavnet.cli_output import Group, echo, fail


@click.group(cls=Group, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="cavnet")
def main() -> None:
    """CAV-Net audio-visual action recognition: extract features once, fuse-train many times."""


def _splits(value: str | None) -> tuple[str, ...] | None:
    return tuple(s.strip() for s in value.split(",") if s.strip()) if value else None


# ----------------------------------------------------------------------------------------------- stage one
@main.command()
@click.argument("out", type=OUT)
@click.option("--videos", default=200, show_default=True, type=click.IntRange(min=4, max=100_000))
@click.option("--task", type=click.Choice(["easy", "hard"]), default="easy", show_default=True,
              help="easy: classes are pairs present throughout; hard: timed events (docs/results.md)")
@click.option("--classes", default=None, type=click.IntRange(min=4, max=1000),
              help="classes of the easy task  [default: 8]")
@click.option("--seed", default=0, show_default=True, type=click.IntRange(min=0, max=MAX_SEED))
@click.option("--workers", default=2, show_default=True, type=click.IntRange(min=1, max=MAX_WORKERS))
def synth(out: Path, videos: int, task: str, classes: int | None, seed: int, workers: int) -> None:
    """Write the AV-Synth corpus (Kinetics-400 layout) to OUT."""
    from cavnet.extract.synth import synth as make

    if task == "hard" and classes is not None:
        fail("--classes applies to the easy task; the hard task has its own 16 classes")
    s = make(out, videos=videos, classes=classes, seed=seed, workers=workers, task=task)
    splits = ", ".join(f"{k} {v}" for k, v in s.splits.items())
    echo(f"AV-Synth ({task}): {s.videos} videos ({splits}), {s.classes} classes, {s.no_audio} without audio, "
               f"{s.broken} broken on purpose, in {s.seconds:.1f} s -> {s.out}")


@main.command()
@dataset_options
@backbone_options
@click.option("--out", type=OUT, required=True, help="the store file to write (STORE.h5)")
@run_options
@run_opt("decode_workers", type=click.IntRange(min=0), help=DECODE_WORKERS_HELP + ", per worker")
@run_opt("batch_clips", help="clips per backbone batch")
@run_opt("device", choices=("auto", "cpu", "cuda"))
@decoder_option
@click.option("--progress/--no-progress", default=True)
def extract(**p) -> None:
    """Stage one: decode a corpus, run the backbones in Dask workers, write the HDF5 feature store."""
    from cavnet.extract.backbones.pretrained import extract_config
    from cavnet.pipelines.extract.options import RunOptions
    from cavnet.pipelines.extract.run import run_extract

    from cavnet.extract.config import EncoderConfig, SpatialViews

    m = corpus_from(p).load(_splits(p["split"]), p["limit"])
    config = extract_config(p["visual"], p["audio"], p["visual_weights"], p["audio_weights"], p["text_model"],
                            p["prompt_template"], p["clips"], p["segments"], p["precision"], random_ok=p["random_init"],
                            decoder=p["decoder"], encoder=build(EncoderConfig, p), views=build(SpatialViews, p))
    for modality, got, arch in (("visual", config.visual, config.encoder.visual_arch),
                                ("audio", config.audio, config.encoder.audio_arch)):
        if p[modality] != got:
            echo(f"note: --{modality} {p[modality]}: the folder is a {arch}; recorded as {got}", err=True)
    opts = build(RunOptions, p)
    from cavnet.extract.provenance import random_weights_note
    if random_weights_note(config):
        echo("warning: " + random_weights_note(config), err=True)
    s = run_extract(m, config, opts, p["out"], echo=echo, progress=p["progress"])
    if s.already_done:
        echo(f"{p['out']}: already complete ({s.videos} videos); nothing to do")
    counts = ", ".join(f"{k} {v}" for k, v in s.counts.items())
    echo(f"{p['out']}: {s.videos} videos in {s.seconds:.1f} s ({counts}); "
               f"shards run {s.shards_run}, reused {s.shards_skipped}")


@main.command()
@dataset_options
@click.option("--out", type=OUT, default=None, help="write the per-file table here (manifest.csv)")
@run_options
@click.option("--progress/--no-progress", default=True)
def probe(**p) -> None:
    """Open every file of a corpus (no full decode) on the Dask cluster and summarise what is there."""
    from cavnet.pipelines.extract.options import RunOptions
    from cavnet.pipelines.probe import run_probe

    corpus = corpus_from(p)
    run_probe(corpus.load(_splits(p["split"]), p["limit"]), build(RunOptions, p, device="cpu"), p["out"],
              echo=echo, progress=p["progress"], inputs=corpus.input_files())


@main.command()
@dataset_options
@click.option("--out", type=OUT, required=True, help="the prepared corpus folder (DST)")
@prepare_options
@run_options
@click.option("--progress/--no-progress", default=True)
@click.option("--dry-run", is_flag=True, help="print the plan and the disk it needs; write nothing")
def prepare(**p) -> None:
    """Re-encode a corpus to a short side (fast decoding) in the same layout; resumable, every file with a status."""
    from cavnet.extract.config import PrepareConfig
    from cavnet.pipelines.extract.options import RunOptions
    from cavnet.pipelines.prepare.run import PrepareSource, run_prepare

    source = PrepareSource(p["dataset"], p["root"], p["manifest"])
    m = source.load(_splits(p["split"]), p["limit"])
    s = run_prepare(m, source, build(PrepareConfig, p), build(RunOptions, p, device="cpu"), p["out"], echo=echo,
                    progress=p["progress"], dry_run=p["dry_run"])
    if s is not None:
        echo("\n".join(s.lines(source.extract_hint(p["out"]))))


@main.command()
@click.argument("store", type=EXISTING)
def check(store: Path) -> None:
    """Validate a feature store; list what is wrong and exit 1, or exit 0 when it is sound."""
    from cavnet.extract.store.check import check_store

    result = check_store(store)
    echo("\n".join(result.lines()))
    sys.exit(0 if result.ok else 1)


@main.command()
@click.option("--store", type=EXISTING, required=True, help="the feature store (STORE.h5)")
@click.option("--add-set", "add", multiple=True,
              help="add this label-text set (repeatable for built-in ones: name, clip-kinetics); without it: list")
@click.option("--template", default=None, help="the new set: one prompt template with {label}")
@click.option("--templates", type=EXISTING, default=None,
              help="the new set: a file of templates, one per line, averaged (a prompt ensemble)")
@click.option("--descriptions", type=EXISTING, default=None,
              help="the new set: a CSV class,description (several rows per class are averaged)")
@click.option("--replace", is_flag=True, help="write a set the store has already anew")
@click.option("--device", default="cpu", show_default=True, help="where the sentence encoder runs")
def text(store: Path, add: tuple[str, ...], template, templates, descriptions, replace: bool, device: str) -> None:
    """List a store's label-text sets, or add one (embedded by the store's sentence encoder, no video
    re-extracted); fuse-train, evaluate, predict and ablate pick one with --text-set(s)."""
    from cavnet.pipelines.extract.text_sets import add_sets, list_sets

    check_device("--device", device)
    if not add:
        if template or templates or descriptions or replace:
            fail("--template, --templates, --descriptions and --replace need --add-set NAME")
        echo("\n".join(list_sets(store)))
        return
    add_sets(store, add, template, templates, descriptions, replace, device, echo)


@main.command()
@click.argument("store", type=EXISTING)
@click.option("--format", "fmt", type=click.Choice(["npy", "parquet"]), default="npy", show_default=True,
              help="npy: {id}_{visual,audio,visual_mask,audio_mask,text}.npy per video; parquet: pooled features")
@click.option("--out", type=OUT, required=True, help="folder to write")
def export(store: Path, fmt: str, out: Path) -> None:
    """Write a store's features as per-video .npy files or a Parquet table of pooled features."""
    from cavnet.pipelines.export import export_store

    n = export_store(store, out, fmt)
    echo(f"{store}: {n} videos exported as {fmt} to {out}")


# ----------------------------------------------------------------------------------------------- stage two
@main.command("fuse-train")
@click.option("--store", type=EXISTING, required=True)
@click.option("--out", type=OUT, required=True, help="run folder")
@train_options
@model_options
@click.option("--init", type=EXISTING, default=None, help="start from this checkpoint's weights")
@click.option("--pretrain-store", type=EXISTING, default=None,
              help="first pretrain on this store's videos and captions (no labels needed), in OUT/pretrain")
@click.option("--pretrain-epochs", type=click.IntRange(min=0), default=0, show_default=True,
              help="epochs of --pretrain-store (0: as many as --epochs)")
@click.option("--allow-overlap", is_flag=True,
              help="let --pretrain-store be the target store or share videos with its val/test splits")
@click.option("--resume", is_flag=True, help="continue OUT/last.pt")
@train_opt("stream", flag=True, help="read the store block by block instead of into RAM")
@train_opt("tensorboard", flag=True, help="also log loss, accuracy, temperature and lr to OUT/tensorboard")
@click.option("--progress/--no-progress", default=True)
def fuse_train(**p) -> None:
    """Stage two: train the CAV-Net fusion and contrastive head on a feature store."""
    from cavnet.fuse.train_config import TrainConfig
    from cavnet.pipelines.fuse_train import run_fuse_train

    r = run_fuse_train(p["store"], p["out"], build(TrainConfig, p), model_overrides(p), init=p["init"],
                       resume=p["resume"], echo=echo, progress=p["progress"],
                       pretrain_store=p["pretrain_store"], pretrain_epochs=p["pretrain_epochs"],
                       allow_overlap=p["allow_overlap"])
    echo(f"best val top-1 {r.best['top1']:.1f} (epoch {r.best.get('epoch')}); checkpoints in {p['out']}")


@main.command()
@click.option("--store", type=EXISTING, default=None, help="score on this store's features")
@click.option("--checkpoint", type=EXISTING, required=True)
@corpus_options(default=None, dataset_help="score on raw videos of this corpus instead (any checkpoint, finetune "
                                           "ones included)")
@click.option("--out", type=OUT, default=None, help="folder for the reports [CHECKPOINT's folder/eval]")
@evaluate_options
@click.option("--json", "as_json", is_flag=True, help="print the metrics as JSON")
@click.option("--progress/--no-progress", default=True)
def evaluate(**p) -> None:
    """Score a checkpoint on a split of a store or of raw videos: top-1, top-5, mean class accuracy;
    OUT gets metrics.json, predictions_SPLIT.csv, run.json, per-class accuracy and the confusion matrix."""
    import json

    from cavnet.pipelines.evaluate import echo_metrics, evaluate_command
    from cavnet.pipelines.options import EvaluateOptions

    out = p["out"] or Path(p["checkpoint"]).parent / "eval"
    r = evaluate_command(p["checkpoint"], out, build(EvaluateOptions, p), store=p["store"], corpus=corpus_from(p),
                         progress=p["progress"] and not p["as_json"])
    if p["as_json"]:
        echo(json.dumps(r, indent=2))
        return
    echo_metrics(r, echo)
    echo(f"per-class accuracy and confusion matrix in {out}")


@main.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--checkpoint", type=EXISTING, required=True, help="fuse-train or finetune checkpoint")
@click.option("--labels", type=EXISTING, default=None,
              help="score against these label texts instead (one per line), zero-shot through the text head")
@click.option("--json", "json_out", type=OUT, default=None, help="write every prediction here as JSON")
@click.option("--csv", "csv_out", type=OUT, default=None, help="write every prediction here as CSV")
@predict_options
def predict(**p) -> None:
    """Top-k labels of video files (or folders of them); a file that does not decode shows its status."""
    from cavnet.pipelines.options import PredictOptions
    from cavnet.pipelines.predict import predict_command

    preds = predict_command(p["paths"], p["checkpoint"], build(PredictOptions, p), p["labels"], p["json_out"],
                            p["csv_out"], echo)
    bad = sum(not x.labels for x in preds)
    echo(f"{len(preds)} files, {len(preds) - bad} predicted, {bad} not decodable", err=True)


@main.command()
@click.option("--init", type=EXISTING, required=True, help="fuse-train (or finetune) checkpoint to start from")
@click.option("--out", type=OUT, required=True, help="run folder")
@corpus_options()
@finetune_options
@click.option("--augment/--no-augment", default=True, show_default=True)
@click.option("--resume", is_flag=True, help="continue OUT/last.pt")
@click.option("--eval-init/--no-eval-init", default=True, show_default=True,
              help="score the --init checkpoint on val first (epoch 0)")
@click.option("--progress/--no-progress", default=True)
def finetune(**p) -> None:
    """Train the whole CAV-Net from raw video, starting from a fuse-train checkpoint (torchrun: multi-GPU)."""
    from cavnet.finetune.config import AugmentConfig, FinetuneConfig
    from cavnet.pipelines.finetune import run_finetune

    cfg = build(FinetuneConfig, {**p, "init": str(p["init"]), "augment": AugmentConfig(enabled=p["augment"])})
    r = run_finetune(cfg, corpus_from(p), p["out"], resume=p["resume"], eval_init=p["eval_init"], echo=echo,
                     progress=p["progress"])
    if r.best.get("top1", -1) >= 0:
        echo(f"best val top-1 {r.best['top1']:.1f} (epoch {r.best.get('epoch')}); checkpoints in {p['out']}")


@main.command()
@click.option("--store", type=EXISTING, required=True)
@click.option("--out", type=OUT, required=True, help="folder for runs and results")
@click.option("--preset", type=click.Choice(["paper", "components", "fidelity", "encoders", "all"]), default="all",
              show_default=True, help="encoders: the frozen encoder's zero-shot and linear probe, and CAV-Net on top")
@click.option("--seeds", default=3, show_default=True, type=click.IntRange(min=1, max=1000))
@click.option("--variants", default=None, help="comma-separated subset of the preset's variant keys")
@train_opt("epochs")
@train_opt("batch_size")
@train_opt("lr")
@train_opt("seed", help="first seed")
@train_opt("classes", help="a subset of the store's classes: FILE (one name a line) or kinetics-sounds")
@click.option("--d-model", type=click.IntRange(min=8), default=None, help="fusion width of every variant [256]")
@click.option("--workers", default=2, show_default=True, type=click.IntRange(min=1, max=MAX_WORKERS),
              help="runs in parallel")
@click.option("--pretrain-store", type=EXISTING, default=None,
              help="caption store of the external-pretraining row (without it the row is left out)")
@click.option("--allow-overlap", is_flag=True,
              help="let --pretrain-store be the target store or share videos with its val/test splits")
@click.option("--text-sets", default=None,
              help="comma-separated label-text sets of the store: every variant once per set (cavnet text)")
@train_opt("device", default="cpu", help="runs share the machine: the CPU unless told otherwise")
def ablate(**p) -> None:
    """Train every variant of the paper's table on one store; mean and std over seeds."""
    from cavnet.fuse.train_config import TrainConfig
    from cavnet.pipelines.ablate import run_ablate

    out = p["out"]
    base = {"d_model": p["d_model"]} if p["d_model"] else {}
    rows = run_ablate(p["store"], out, p["preset"], p["seeds"], build(TrainConfig, p), p["workers"], echo,
                      only=_splits(p["variants"]), base=base, pretrain_store=p["pretrain_store"],
                      allow_overlap=p["allow_overlap"], text_sets=_splits(p["text_sets"]))
    echo((out / "results.md").read_text())
    echo(f"results in {out}/results.csv, results.md, results.png ({len(rows)} variants)")


@main.command()
@click.option("--out", type=OUT, default=Path("demo-out"), show_default=True)
@demo_opt("task", choices=("easy", "hard"), help="which AV-Synth (hard: OUT/report-hard.md)")
@click.option("--videos", default=None, type=int, help="[easy 200, hard 640]")
@demo_opt("seeds", help="seeds per ablation row")
@click.option("--epochs", default=None, type=int, help="fuse-train epochs per run [easy 30, hard 20]")
@click.option("--lr", default=None, type=float, help="fuse-train peak learning rate [easy 1e-3, hard 2e-3]")
@demo_opt("workers", help="local workers (extraction, then ablation runs in parallel)")
@click.option("--progress/--no-progress", default=True)
def demo(**p) -> None:
    """Generate AV-Synth, extract it, run the ablation and write OUT/report.md."""
    from cavnet.pipelines.demo.config import TASK_DEFAULTS, DemoConfig
    from cavnet.pipelines.demo.run import run_demo

    p.update({k: v if p[k] is None else p[k] for k, v in TASK_DEFAULTS[p["task"]].items()})
    report = run_demo(p["out"], build(DemoConfig, p), echo=echo, progress=p["progress"])
    echo(report.read_text())
    echo(f"report: {report}")


@main.command()
@bench_options
@click.option("--sections", default=",".join(("decode", "backbone", "extract", "store")), show_default=True)
@click.option("--work", type=OUT, default=None, help="keep the corpus here for reuse (default: a temp folder)")
@click.option("--json", "json_out", type=OUT, default=None, help="write the full report (every repeat) here")
@click.option("--size", default=None, help="the corpus' frame size WxH [340x256]; e.g. 1280x720 for NVDEC")
def bench(**p) -> None:
    """Measure decode, backbone, extract, store-read and fuse-train speed on a generated corpus."""
    from cavnet.bench.run import SECTIONS, BenchConfig, run_bench, write_json
    from cavnet.bench.table import render

    chosen = _splits(p["sections"]) or SECTIONS
    if set(chosen) - set(SECTIONS):
        fail(f"--sections: unknown {', '.join(sorted(set(chosen) - set(SECTIONS)))}; known: {', '.join(SECTIONS)}")
    size = p["size"]
    dims = size.lower().split("x") if size else None
    if dims is not None and not (len(dims) == 2 and all(d.isdigit() and 16 <= int(d) <= 8192 and int(d) % 2 == 0
                                                        for d in dims)):
        fail(f"--size {size!r}: give the frame size as WxH, even numbers from 16 to 8192 (e.g. 1280x720)")
    cfg = build(BenchConfig, {**p, "sections": chosen, "work": str(p["work"]) if p["work"] else None,
                              "size": (int(dims[0]), int(dims[1])) if dims else None})
    json_out = p["json_out"]
    if json_out:
        from cavnet.extract.files.outputs import Output, check_outputs

        check_outputs([Output(json_out, "--json")])  # before minutes of measuring
    save = (lambda r: write_json(r, json_out)) if json_out else None
    report = run_bench(cfg, echo=lambda m: echo(m, err=True), checkpoint=save)
    echo(render(report))
    if save:
        save(report)
        echo(f"report: {json_out}")


if __name__ == "__main__":
    main()
