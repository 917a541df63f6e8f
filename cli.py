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
@click.option("--classes", default=8, show_default=True, type=click.IntRange(min=4))
@click.option("--seed", default=0, show_default=True)
@click.option("--workers", default=2, show_default=True, type=click.IntRange(min=1))
def synth(out: Path, videos: int, classes: int, seed: int, workers: int) -> None:
    """Write the AV-Synth corpus (Kinetics-400 layout) to OUT."""
    from cavnet.extract.synth import synth as make

    summary = make(out, videos=videos, classes=classes, seed=seed, workers=workers)
    click.echo(f"AV-Synth: {summary}")


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
@click.option("--decode-workers", default=0, show_default=True, type=click.IntRange(min=0),
              help="decode processes per worker (0: decode in the worker)")
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
    opts = RunOptions(shard_size=shard_size, workers=workers, scheduler=scheduler, decode_workers=decode_workers,
                      device=device, batch_clips=batch_clips, limit=limit)
    s = run_extract(m, config, opts, out, echo=click.echo, progress=progress)
    if s.already_done:
        click.echo(f"{out}: already complete ({s.videos} videos); nothing to do")
    counts = ", ".join(f"{k} {v}" for k, v in s.counts.items())
    click.echo(f"{out}: {s.videos} videos in {s.seconds:.1f} s ({counts}); "
               f"shards run {s.shards_run}, reused {s.shards_skipped}")


@main.command()
def probe() -> None:
    """Open every file of a corpus quickly and summarise what is there (not built yet)."""
    _not_built("probe")


@main.command()
@click.argument("store", type=click.Path(path_type=Path))
def check(store: Path) -> None:
    """Validate a feature store (not built yet)."""
    _not_built("check")


# ----------------------------------------------------------------------------------------------- stage two
def model_options(f):
    for opt in reversed([
        click.option("--modalities", type=click.Choice(["av", "v", "a"]), default="av", show_default=True),
        click.option("--no-self-attn", is_flag=True, help="skip the inter-clip self-attention (eq. 2-3)"),
        click.option("--no-cross-attn", is_flag=True, help="skip the audio-visual cross-attention (eq. 4-5)"),
        click.option("--pool", type=click.Choice(["gate", "mean"]), default="gate", show_default=True),
        click.option("--fusion", type=click.Choice(["cavnet", "late"]), default="cavnet", show_default=True),
        click.option("--head", type=click.Choice(["text", "linear"]), default="text", show_default=True),
        click.option("--d-model", type=click.IntRange(min=8), default=None, help="fusion width"),
        click.option("--dropout", type=click.FloatRange(0, 0.9), default=None),
    ]):
        f = opt(f)
    return f


def model_overrides(modalities, no_self_attn, no_cross_attn, pool, fusion, head, d_model, dropout) -> dict:
    d = dict(modalities=modalities, self_attn=not no_self_attn, cross_attn=not no_cross_attn, pool=pool,
             fusion=fusion, head=head)
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
               no_cross_attn, pool, fusion, head, d_model, dropout, init, resume, stream, progress) -> None:
    """Stage two: train the CAV-Net fusion and contrastive head on a feature store."""
    from cavnet.fuse.train_config import TrainConfig
    from cavnet.pipelines.fuse_train import run_fuse_train

    tcfg = TrainConfig(epochs=epochs, batch_size=batch_size, lr=lr, weight_decay=weight_decay, seed=seed,
                       device=device, targets=targets, stream=stream)
    overrides = model_overrides(modalities, no_self_attn, no_cross_attn, pool, fusion, head, d_model, dropout)
    r = run_fuse_train(store, out, tcfg, overrides, init=init, resume=resume, echo=click.echo, progress=progress)
    click.echo(f"best val top-1 {r.best['top1']:.1f} (epoch {r.best.get('epoch')}); checkpoints in {out}")


@main.command()
@click.option("--store", type=EXISTING, required=True)
@click.option("--checkpoint", type=EXISTING, required=True)
@click.option("--split", default="val", show_default=True)
@click.option("--out", type=OUT, default=None, help="folder for per-class CSV and confusion matrix")
@click.option("--device", default="auto", show_default=True)
@click.option("--json", "as_json", is_flag=True, help="print the metrics as JSON")
def evaluate(store, checkpoint, split, out, device, as_json) -> None:
    """Score a checkpoint on a split of a store: top-1, top-5, mean class accuracy."""
    import json

    from cavnet.pipelines.evaluate import run_evaluate

    out = out or Path(checkpoint).parent / "eval"
    r = run_evaluate(store, checkpoint, split, out, device)
    if as_json:
        click.echo(json.dumps(r, indent=2))
        return
    a = r["audio_present"]
    click.echo(f"{split}: {r['count']} videos  top-1 {r['top1']:.2f}  top-5 {r['top5']:.2f}  "
               f"mean-class {r['mean_class']:.2f}")
    click.echo(f"{split} with audio: {a['count']} videos  top-1 {a['top1']:.2f}  top-5 {a['top5']:.2f}  "
               f"mean-class {a['mean_class']:.2f}")
    click.echo(f"per-class accuracy and confusion matrix in {out}")


@main.command()
def finetune() -> None:
    """Fine-tune end to end from raw video (not built yet)."""
    _not_built("finetune")


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
@click.option("--workers", default=2, show_default=True, type=click.IntRange(min=1), help="runs in parallel")
@click.option("--device", default="cpu", show_default=True)
def ablate(store, out, preset, seeds, variants, epochs, batch_size, lr, seed, workers, device) -> None:
    """Train every variant of the paper's table on one store; mean and std over seeds."""
    from cavnet.fuse.train_config import TrainConfig
    from cavnet.pipelines.ablate import run_ablate

    tcfg = TrainConfig(epochs=epochs, batch_size=batch_size, lr=lr, seed=seed, device=device)
    rows = run_ablate(store, out, preset, seeds, tcfg, workers, click.echo, only=_splits(variants))
    click.echo((out / "results.md").read_text())
    click.echo(f"results in {out}/results.csv, results.md, results.png ({len(rows)} variants)")


@main.command()
@click.option("--out", type=OUT, default=Path("demo-out"), show_default=True)
@click.option("--videos", default=200, show_default=True, type=click.IntRange(min=24))
@click.option("--seeds", default=3, show_default=True, type=click.IntRange(min=1))
@click.option("--epochs", default=40, show_default=True, type=click.IntRange(min=1))
@click.option("--workers", default=2, show_default=True, type=click.IntRange(min=1))
@click.option("--progress/--no-progress", default=True)
def demo(out, videos, seeds, epochs, workers, progress) -> None:
    """Generate AV-Synth, extract it, run the ablation and write OUT/report.md."""
    from cavnet.pipelines.demo import DemoConfig, run_demo

    report = run_demo(out, DemoConfig(videos=videos, seeds=seeds, epochs=epochs, workers=workers),
                      echo=click.echo, progress=progress)
    click.echo(report.read_text())
    click.echo(f"report: {report}")


@main.command()
def bench() -> None:
    """Measure decode, backbone, extract, store-read and fuse-train speed (not built yet)."""
    _not_built("bench")


if __name__ == "__main__":
    main()
