"""The `cavnet` command line: thin click commands that build a config and call ``cavnet.pipelines``.

Heavy imports (torch, av, dask) happen inside the commands, so ``cavnet --help`` stays instant.
Bad input ends with one line on stderr and exit code 2, never a traceback.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from cavnet import __version__
from cavnet.errors import CavnetError

EXISTING = click.Path(exists=True, path_type=Path)
OUT = click.Path(path_type=Path)


class _Group(click.Group):
    """Maps usage errors and ``CavnetError`` to ``cavnet: error: ...`` and exit code 2."""

    def main(self, args=None, prog_name=None, **kwargs):  # type: ignore[override]
        try:
            return super().main(args=args, prog_name=prog_name, standalone_mode=False, **kwargs)
        except click.exceptions.Exit as exc:
            sys.exit(exc.exit_code)
        except click.exceptions.Abort:
            click.echo("cavnet: aborted", err=True)
            sys.exit(130)
        except click.exceptions.ClickException as exc:
            _fail(exc.format_message())
        except CavnetError as exc:
            _fail(str(exc))


def _fail(message: str) -> None:
    click.echo("cavnet: error: " + " ".join(str(message).split()), err=True)
    sys.exit(2)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="cavnet")
def main() -> None:
    """CAV-Net audio-visual action recognition: extract features once, fuse-train many times."""


def _splits(value: str | None) -> tuple[str, ...] | None:
    return tuple(s.strip() for s in value.split(",") if s.strip()) if value else None


def _not_built(name: str) -> None:
    _fail(f"'cavnet {name}' is not built yet in this version")


# ----------------------------------------------------------------------------------------------- stage one
@main.command()
@click.argument("out", type=OUT)
@click.option("--videos", default=200, show_default=True, type=click.IntRange(min=4))
@click.option("--task", type=click.Choice(["easy", "hard"]), default="easy", show_default=True,
              help="easy: classes are pairs present throughout; hard: timed events (docs/results.md)")
@click.option("--classes", default=None, type=click.IntRange(min=4), help="classes of the easy task  [default: 8]")
@click.option("--seed", default=0, show_default=True)
@click.option("--workers", default=2, show_default=True, type=click.IntRange(min=1))
def synth(out: Path, videos: int, task: str, classes: int | None, seed: int, workers: int) -> None:
    """Write the AV-Synth corpus (Kinetics-400 layout) to OUT."""
    from cavnet.extract.synth import synth as make

    if task == "hard" and classes is not None:
        _fail("--classes applies to the easy task; the hard task has its own 16 classes")
    s = make(out, videos=videos, classes=classes, seed=seed, workers=workers, task=task)
    splits = ", ".join(f"{k} {v}" for k, v in s.splits.items())
    click.echo(f"AV-Synth ({task}): {s.videos} videos ({splits}), {s.classes} classes, {s.no_audio} without audio, "
               f"{s.broken} broken on purpose, in {s.seconds:.1f} s -> {s.out}")


def dataset_options(f):
    for opt in reversed([
        click.option("--dataset", type=click.Choice(["k400", "csv", "synth"]), default="k400", show_default=True),
        click.option("--root", type=click.Path(path_type=Path), help="corpus folder (k400), path base (csv), cache (synth)"),
        click.option("--manifest", type=EXISTING, help="generic CSV path,label[,text][,split] (--dataset csv)"),
        click.option("--split", "split", default=None, help="comma-separated splits, e.g. train,val (default: all)"),
        click.option("--limit", type=click.IntRange(min=1), default=None, help="only the first N videos"),
    ]):
        f = opt(f)
    return f


def backbone_options(f):
    for opt in reversed([
        click.option("--visual", default="resnext3d-101", show_default=True, help="visual backbone"),
        click.option("--audio", default="resnet50-audio", show_default=True, help="audio backbone"),
        click.option("--visual-weights", type=EXISTING, default=None, help="released 3D-ResNeXt checkpoint"),
        click.option("--audio-weights", type=EXISTING, default=None, help="audio backbone checkpoint"),
        click.option("--text-model", default="default", show_default=True,
                     help="sentence-transformers model path or name (default: packaged all-MiniLM-L6-v2)"),
        click.option("--prompt", default="a video of a person {label}", show_default=True),
        click.option("--clips", default=10, show_default=True, type=click.IntRange(min=1)),
        click.option("--segments", default=10, show_default=True, type=click.IntRange(min=1)),
    ]):
        f = opt(f)
    return f


@main.command()
@dataset_options
@backbone_options
@click.option("--out", type=OUT, required=True, help="the store file to write (STORE.h5)")
@click.option("--shard-size", default=64, show_default=True, type=click.IntRange(min=1))
@click.option("--scheduler", default=None, help="address of an existing Dask scheduler")
@click.option("--workers", default=2, show_default=True, type=click.IntRange(min=1), help="local CPU workers")
@click.option("--decode-workers", default=None, type=click.IntRange(min=0),
              help="decode processes per worker (0: decode in the worker) [local GPU workers: cores/GPUs - 1, "
                   "else 0]")
@click.option("--batch-clips", default=64, show_default=True, type=click.IntRange(min=1))
@click.option("--device", default="auto", show_default=True, type=click.Choice(["auto", "cpu", "cuda"]))
@click.option("--progress/--no-progress", default=True)
def extract(dataset, root, manifest, split, limit, visual, audio, visual_weights, audio_weights, text_model,
            prompt, clips, segments, out, shard_size, scheduler, workers, decode_workers, batch_clips, device,
            progress) -> None:
    """Stage one: decode a corpus, run the backbones in Dask workers, write the HDF5 feature store."""
    from cavnet.extract.config import RunOptions
    from cavnet.pipelines.extract import run_extract
    from cavnet.pipelines.manifests import extract_config, load_manifest

    m = load_manifest(dataset, root, manifest, _splits(split), limit)
    config = extract_config(visual, audio, visual_weights, audio_weights, text_model, prompt, clips, segments)
    if not (visual_weights and audio_weights):
        click.echo("warning: no weights given for " + " and ".join(
            n for n, w in ((visual, visual_weights), (audio, audio_weights)) if not w)
            + ": randomly initialised backbones", err=True)
    if decode_workers is None:
        from cavnet.pipelines.dask_cluster import default_decode_workers
        decode_workers = default_decode_workers(device, scheduler)
    opts = RunOptions(shard_size=shard_size, workers=workers, scheduler=scheduler, decode_workers=decode_workers,
                      device=device, batch_clips=batch_clips, limit=limit)
    s = run_extract(m, config, opts, out, echo=click.echo, progress=progress)
    if s.already_done:
        click.echo(f"{out}: already complete ({s.videos} videos); nothing to do")
    counts = ", ".join(f"{k} {v}" for k, v in s.counts.items())
    click.echo(f"{out}: {s.videos} videos in {s.seconds:.1f} s ({counts}); "
               f"shards run {s.shards_run}, reused {s.shards_skipped}")


@main.command()
@dataset_options
@click.option("--out", type=OUT, default=None, help="write the per-file table here (manifest.csv)")
@click.option("--shard-size", default=64, show_default=True, type=click.IntRange(min=1), help="files per Dask task")
@click.option("--scheduler", default=None, help="address of an existing Dask scheduler")
@click.option("--workers", default=2, show_default=True, type=click.IntRange(min=1), help="local CPU workers")
@click.option("--progress/--no-progress", default=True)
def probe(dataset, root, manifest, split, limit, out, shard_size, scheduler, workers, progress) -> None:
    """Open every file of a corpus (no full decode) on the Dask cluster and summarise what is there."""
    from cavnet.extract.config import RunOptions
    from cavnet.pipelines.manifests import load_manifest
    from cavnet.pipelines.probe import run_probe

    m = load_manifest(dataset, root, manifest, _splits(split), limit)
    opts = RunOptions(shard_size=shard_size, workers=workers, scheduler=scheduler, device="cpu")
    run_probe(m, opts, out, echo=click.echo, progress=progress)


@main.command()
@click.argument("store", type=EXISTING)
def check(store: Path) -> None:
    """Validate a feature store; list what is wrong and exit 1, or exit 0 when it is sound."""
    from cavnet.pipelines.check import check_store

    result = check_store(store)
    click.echo("\n".join(result.lines()))
    sys.exit(0 if result.ok else 1)


# ----------------------------------------------------------------------------------------------- stage two
def model_options(f):
    for opt in reversed([
        click.option("--modalities", type=click.Choice(["av", "v", "a"]), default="av", show_default=True),
        click.option("--no-self-attn", is_flag=True, help="skip the inter-clip self-attention (eq. 2-3)"),
        click.option("--no-cross-attn", is_flag=True, help="skip the audio-visual cross-attention (eq. 4-5)"),
        click.option("--pool", type=click.Choice(["gate", "mean"]), default="gate", show_default=True),
        click.option("--fusion", type=click.Choice(["cavnet", "late"]), default="cavnet", show_default=True),
        click.option("--head", type=click.Choice(["text", "linear"]), default="text", show_default=True),
        click.option("--time-encoding", type=click.Choice(["shared", "none"]), default="shared",
                     show_default=True, help="one clock for both streams: time embedding and cross-attention time "
                     "bias; none: the paper's content-only fusion"),
        click.option("--d-model", type=click.IntRange(min=8), default=None, help="fusion width"),
        click.option("--dropout", type=click.FloatRange(0, 0.9), default=None),
    ]):
        f = opt(f)
    return f


def model_overrides(modalities, no_self_attn, no_cross_attn, pool, fusion, head, time_encoding, d_model,
                    dropout) -> dict:
    d = dict(modalities=modalities, self_attn=not no_self_attn, cross_attn=not no_cross_attn, pool=pool,
             fusion=fusion, head=head, time_encoding=time_encoding)
    if d_model is not None:
        d["d_model"] = d_model
    if dropout is not None:
        d["dropout"] = dropout
    return d


def train_options(f):
    for opt in reversed([
        click.option("--epochs", default=30, show_default=True, type=click.IntRange(min=1)),
        click.option("--batch-size", default=64, show_default=True, type=click.IntRange(min=2)),
        click.option("--lr", default=1e-3, show_default=True, type=click.FloatRange(min=0, min_open=True)),
        click.option("--weight-decay", default=0.05, show_default=True, type=click.FloatRange(min=0)),
        click.option("--seed", default=0, show_default=True),
        click.option("--device", default="auto", show_default=True),
        click.option("--targets", type=click.Choice(["label", "video-text"]), default="label", show_default=True),
    ]):
        f = opt(f)
    return f


@main.command("fuse-train")
@click.option("--store", type=EXISTING, required=True)
@click.option("--out", type=OUT, required=True, help="run folder")
@train_options
@model_options
@click.option("--init", type=EXISTING, default=None, help="start from this checkpoint's weights")
@click.option("--resume", is_flag=True, help="continue OUT/last.pt")
@click.option("--stream", is_flag=True, help="read the store block by block instead of into RAM")
@click.option("--progress/--no-progress", default=True)
def fuse_train(store, out, epochs, batch_size, lr, weight_decay, seed, device, targets, modalities, no_self_attn,
               no_cross_attn, pool, fusion, head, time_encoding, d_model, dropout, init, resume, stream,
               progress) -> None:
    """Stage two: train the CAV-Net fusion and contrastive head on a feature store."""
    from cavnet.fuse.train_config import TrainConfig
    from cavnet.pipelines.fuse_train import run_fuse_train

    tcfg = TrainConfig(epochs=epochs, batch_size=batch_size, lr=lr, weight_decay=weight_decay, seed=seed,
                       device=device, targets=targets, stream=stream)
    overrides = model_overrides(modalities, no_self_attn, no_cross_attn, pool, fusion, head, time_encoding, d_model,
                                dropout)
    r = run_fuse_train(store, out, tcfg, overrides, init=init, resume=resume, echo=click.echo, progress=progress)
    click.echo(f"best val top-1 {r.best['top1']:.1f} (epoch {r.best.get('epoch')}); checkpoints in {out}")


@main.command()
@click.option("--store", type=EXISTING, default=None, help="score on this store's features")
@click.option("--checkpoint", type=EXISTING, required=True)
@click.option("--dataset", type=click.Choice(["k400", "csv", "synth"]), default=None,
              help="score on raw videos of this corpus instead (any checkpoint, finetune ones included)")
@click.option("--root", type=click.Path(path_type=Path), help="corpus folder (k400), path base (csv), cache (synth)")
@click.option("--manifest", type=EXISTING, help="generic CSV path,label[,text][,split] (--dataset csv)")
@click.option("--split", default="val", show_default=True)
@click.option("--out", type=OUT, default=None, help="folder for per-class CSV and confusion matrix")
@click.option("--device", default="auto", show_default=True)
@click.option("--batch-size", default=8, show_default=True, type=click.IntRange(min=1), help="videos (--dataset)")
@click.option("--decode-workers", default=2, show_default=True, type=click.IntRange(min=0), help="(--dataset)")
@click.option("--json", "as_json", is_flag=True, help="print the metrics as JSON")
def evaluate(store, checkpoint, dataset, root, manifest, split, out, device, batch_size, decode_workers,
             as_json) -> None:
    """Score a checkpoint on a split of a store or of raw videos: top-1, top-5, mean class accuracy."""
    import json

    from cavnet.pipelines.finetune_eval import echo_metrics, evaluate_command

    out = out or Path(checkpoint).parent / "eval"
    r = evaluate_command(checkpoint, split, out, device, store=store, dataset=dataset, root=root, manifest=manifest,
                         batch_size=batch_size, decode_workers=decode_workers)
    if as_json:
        click.echo(json.dumps(r, indent=2))
        return
    echo_metrics(r, click.echo)
    click.echo(f"per-class accuracy and confusion matrix in {out}")


@main.command()
@click.option("--init", type=EXISTING, required=True, help="fuse-train (or finetune) checkpoint to start from")
@click.option("--out", type=OUT, required=True, help="run folder")
@click.option("--dataset", type=click.Choice(["k400", "csv", "synth"]), default="k400", show_default=True)
@click.option("--root", type=click.Path(path_type=Path), help="corpus folder (k400), path base (csv), cache (synth)")
@click.option("--manifest", type=EXISTING, help="generic CSV path,label[,text][,split] (--dataset csv)")
@click.option("--end-to-end", is_flag=True, help="back-propagate into the backbones (else they stay frozen)")
@click.option("--epochs", default=1, show_default=True, type=click.IntRange(min=1))
@click.option("--batch-size", default=8, show_default=True, type=click.IntRange(min=2),
              help="videos per step over all processes")
@click.option("--lr", default=1e-4, show_default=True, type=click.FloatRange(min=0, min_open=True),
              help="fusion and temperature")
@click.option("--backbone-lr", default=1e-5, show_default=True, type=click.FloatRange(min=0))
@click.option("--weight-decay", default=0.05, show_default=True, type=click.FloatRange(min=0))
@click.option("--warmup-epochs", default=0.25, show_default=True, type=click.FloatRange(min=0))
@click.option("--freeze-until", default="none", show_default=True,
              type=click.Choice(["none", "stem", "layer1", "layer2", "layer3", "layer4"]),
              help="visual stages kept frozen")
@click.option("--freeze-audio", is_flag=True, help="keep the audio backbone frozen")
@click.option("--freeze-bn/--train-bn", default=True, show_default=True,
              help="keep the backbones' BatchNorm running statistics")
@click.option("--grad-checkpoint", is_flag=True, help="recompute 3D-ResNeXt blocks in backward: less memory")
@click.option("--amp", type=click.Choice(["auto", "off", "bf16"]), default="auto", show_default=True,
              help="auto: audio backbone in bf16 on CUDA, the rest fp32/TF32")
@click.option("--decode-workers", default=2, show_default=True, type=click.IntRange(min=0))
@click.option("--device", default="auto", show_default=True)
@click.option("--seed", default=0, show_default=True)
@click.option("--augment/--no-augment", default=True, show_default=True)
@click.option("--eval-every", default=1, show_default=True, type=click.IntRange(min=0),
              help="score val and save every N epochs (0: at the end)")
@click.option("--save-every", default=0, show_default=True, type=click.IntRange(min=0),
              help="also save last.pt every N steps")
@click.option("--max-steps", default=0, show_default=True, type=click.IntRange(min=0),
              help="stop after N steps (0: all epochs)")
@click.option("--resume", is_flag=True, help="continue OUT/last.pt")
@click.option("--eval-init/--no-eval-init", default=True, show_default=True,
              help="score the --init checkpoint on val first (epoch 0)")
@click.option("--progress/--no-progress", default=True)
def finetune(init, out, dataset, root, manifest, end_to_end, epochs, batch_size, lr, backbone_lr, weight_decay,
             warmup_epochs, freeze_until, freeze_audio, freeze_bn, grad_checkpoint, amp, decode_workers, device, seed,
             augment, eval_every, save_every, max_steps, resume, eval_init, progress) -> None:
    """Train the whole CAV-Net from raw video, starting from a fuse-train checkpoint (torchrun: multi-GPU)."""
    from cavnet.extract.augment import AugmentConfig
    from cavnet.pipelines.finetune import run_finetune
    from cavnet.pipelines.finetune_config import FinetuneConfig

    cfg = FinetuneConfig(init=str(init), end_to_end=end_to_end, epochs=epochs, batch_size=batch_size, lr=lr,
                         backbone_lr=backbone_lr, weight_decay=weight_decay, warmup_epochs=warmup_epochs,
                         freeze_until=freeze_until, freeze_audio=freeze_audio, freeze_bn=freeze_bn,
                         grad_checkpoint=grad_checkpoint, amp=amp, decode_workers=decode_workers, device=device,
                         seed=seed, eval_every=eval_every, save_every=save_every, max_steps=max_steps,
                         augment=AugmentConfig(enabled=augment))
    r = run_finetune(cfg, dataset, root, manifest, out, resume=resume, eval_init=eval_init, echo=click.echo,
                     progress=progress)
    if r.best.get("top1", -1) >= 0:
        click.echo(f"best val top-1 {r.best['top1']:.1f} (epoch {r.best.get('epoch')}); checkpoints in {out}")


@main.command()
@click.option("--store", type=EXISTING, required=True)
@click.option("--out", type=OUT, required=True, help="folder for runs and results")
@click.option("--preset", type=click.Choice(["paper", "components", "all"]), default="all", show_default=True)
@click.option("--seeds", default=3, show_default=True, type=click.IntRange(min=1))
@click.option("--variants", default=None, help="comma-separated subset of the preset's variant keys")
@click.option("--epochs", default=30, show_default=True, type=click.IntRange(min=1))
@click.option("--batch-size", default=64, show_default=True, type=click.IntRange(min=2))
@click.option("--lr", default=1e-3, show_default=True, type=click.FloatRange(min=0, min_open=True))
@click.option("--seed", default=0, show_default=True, help="first seed")
@click.option("--d-model", type=click.IntRange(min=8), default=None, help="fusion width of every variant")
@click.option("--workers", default=2, show_default=True, type=click.IntRange(min=1), help="runs in parallel")
@click.option("--device", default="cpu", show_default=True)
def ablate(store, out, preset, seeds, variants, epochs, batch_size, lr, seed, d_model, workers, device) -> None:
    """Train every variant of the paper's table on one store; mean and std over seeds."""
    from cavnet.fuse.train_config import TrainConfig
    from cavnet.pipelines.ablate import run_ablate

    tcfg = TrainConfig(epochs=epochs, batch_size=batch_size, lr=lr, seed=seed, device=device)
    base = {"d_model": d_model} if d_model else {}
    rows = run_ablate(store, out, preset, seeds, tcfg, workers, click.echo, only=_splits(variants), base=base)
    click.echo((out / "results.md").read_text())
    click.echo(f"results in {out}/results.csv, results.md, results.png ({len(rows)} variants)")


@main.command()
@click.option("--out", type=OUT, default=Path("demo-out"), show_default=True)
@click.option("--task", type=click.Choice(["easy", "hard"]), default="easy", show_default=True,
              help="which AV-Synth (hard: OUT/report-hard.md)")
@click.option("--videos", default=None, type=click.IntRange(min=24), help="[easy 200, hard 640]")
@click.option("--seeds", default=3, show_default=True, type=click.IntRange(min=1))
@click.option("--epochs", default=None, type=click.IntRange(min=1), help="[easy 30, hard 20]")
@click.option("--workers", default=2, show_default=True, type=click.IntRange(min=1))
@click.option("--progress/--no-progress", default=True)
def demo(out, task, videos, seeds, epochs, workers, progress) -> None:
    """Generate AV-Synth, extract it, run the ablation and write OUT/report.md."""
    from cavnet.pipelines.demo import DemoConfig, run_demo

    hard = task == "hard"
    videos, epochs = videos or (640 if hard else 200), epochs or (20 if hard else 30)
    report = run_demo(out, DemoConfig(videos=videos, task=task, seeds=seeds, epochs=epochs, workers=workers),
                      echo=click.echo, progress=progress)
    click.echo(report.read_text())
    click.echo(f"report: {report}")


@main.command()
@click.option("--videos", type=click.IntRange(min=1), default=None, help="corpus size [CPU 16, CUDA 128]")
@click.option("--seconds", type=click.FloatRange(min=1.0), default=None, help="video length [10; 2 with --small]")
@click.option("--device", default="auto", show_default=True, type=click.Choice(["auto", "cpu", "cuda"]))
@click.option("--workers", type=click.IntRange(min=1), default=None, help="Dask workers [CPU 2, CUDA one per GPU]")
@click.option("--decode-workers", type=click.IntRange(min=0), default=None,
              help="decode processes per worker [CPU 0, CUDA cores/GPUs - 1]")
@click.option("--repeats", type=click.IntRange(min=1), default=None, help="timed repeats per figure [3]")
@click.option("--visual", default=None, help="visual backbone [CPU resnext3d-tiny, CUDA resnext3d-101]")
@click.option("--audio", default=None, help="audio backbone [CPU audio-cnn-tiny, CUDA resnet50-audio]")
@click.option("--small", is_flag=True, help="a quick smoke run: 4 short videos, 2 repeats, small store")
@click.option("--sections", default=",".join(("decode", "backbone", "extract", "store")), show_default=True)
@click.option("--work", type=OUT, default=None, help="keep the corpus here for reuse (default: a temp folder)")
@click.option("--json", "json_out", type=OUT, default=None, help="write the full report (every repeat) here")
def bench(videos, seconds, device, workers, decode_workers, repeats, visual, audio, small, sections, work,
          json_out) -> None:
    """Measure decode, backbone, extract, store-read and fuse-train speed on a generated corpus."""
    from cavnet.pipelines.bench import SECTIONS, BenchConfig, run_bench, write_json
    from cavnet.pipelines.bench_table import render

    chosen = _splits(sections) or SECTIONS
    if set(chosen) - set(SECTIONS):
        _fail(f"--sections: unknown {', '.join(sorted(set(chosen) - set(SECTIONS)))}; known: {', '.join(SECTIONS)}")
    cfg = BenchConfig(device=device, videos=videos, seconds=seconds, workers=workers, decode_workers=decode_workers,
                      repeats=repeats, visual=visual, audio=audio, small=small, sections=chosen,
                      work=str(work) if work else None)
    save = (lambda r: write_json(r, json_out)) if json_out else None
    report = run_bench(cfg, echo=lambda m: click.echo(m, err=True), checkpoint=save)
    click.echo(render(report))
    if save:
        save(report)
        click.echo(f"report: {json_out}")


if __name__ == "__main__":
    main()
