"""The option groups cavnet's commands share, each option derived from its config field where there is one
(``cli_options.option``): dataset, backbone and Dask run options, the fusion model's and training's options,
fine-tuning's. Imports no torch: configs are imported inside each group.
"""

from __future__ import annotations

from pathlib import Path

import click

from cavnet.cli_options import option, options

EXISTING = click.Path(exists=True, path_type=Path)
OUT = click.Path(path_type=Path)


def run_opt(name: str, **kw):
    from cavnet.pipelines.extract.options import RunOptions

    return option(RunOptions, name, **kw)


DECODE_WORKERS_HELP = "decode processes [CUDA: cores per GPU - 1; CPU or a remote cluster: 0, decode in-process]"
DATASET_HELP = "k400: a Kinetics-400 copy; csv: a CSV manifest; synth: AV-Synth"


def corpus_options(default: str | None = "k400", dataset_help: str = DATASET_HELP):
    """--dataset, --root and --manifest: the corpus of every command that reads videos (``corpus_from``)."""
    def wrap(f):
        for opt in reversed([
            click.option("--dataset", type=click.Choice(["k400", "csv", "synth"]), default=default,
                         show_default=default is not None, help=dataset_help),
            click.option("--root", type=click.Path(path_type=Path),
                         help="corpus folder (k400), path base (csv), cache (synth)"),
            click.option("--manifest", type=EXISTING, help="generic CSV path,label[,text][,split] (--dataset csv)"),
        ]):
            f = opt(f)
        return f
    return wrap


def corpus_from(p: dict):
    """The ``extract.datasets.Corpus`` the corpus options name (None when no --dataset was given)."""
    from cavnet.extract.datasets import Corpus

    return Corpus(p["dataset"], p["root"], p["manifest"]) if p["dataset"] else None


def dataset_options(f):
    """The corpus options, plus --split (comma-separated) and --limit: what extract, probe and prepare read."""
    f = click.option("--limit", type=click.IntRange(min=1), default=None, help="only the first N videos")(f)
    f = click.option("--split", "split", default=None, help="comma-separated splits, e.g. train,val (default: all)")(f)
    return corpus_options()(f)


def backbone_options(f):
    from cavnet.extract.config import (CLIP_EMBEDDINGS, PRECISIONS, VIEW_CROPS, AudioSampling, ClipSampling,
                                       EncoderConfig, ExtractConfig, SpatialViews)

    for opt in reversed([
        option(ExtractConfig, "visual",
               help="visual backbone: resnext3d-*, r3d_18, mc3_18, r2plus1d_18, s3d, mvit_*, swin3d_*, clip-vit-b16, "
                    "clip-vit-b32, clip-vit-l14, videomae-base, videomae-large (docs/backbones.md)"),
        option(ExtractConfig, "audio", help="audio backbone: resnet50-audio, vggish, vggish-pca, cnn14, "
                                            "audio-cnn-tiny, ast, clap-htsat, clap-htsat-fused"),
        click.option("--visual-weights", type=EXISTING, default=None,
                     help="visual checkpoint (3D-ResNeXt release, torchvision state dict) or Hugging Face model folder "
                          "(CLIP, VideoMAE) [torchvision: hub cache; Hugging Face: its cache]"),
        click.option("--audio-weights", type=EXISTING, default=None,
                     help="audio checkpoint (torchvggish, PANNs CNN14, ...) or Hugging Face folder (AST, CLAP); "
                          "without it: random weights (AST, CLAP: the Hugging Face cache)"),
        click.option("--random-init", is_flag=True, default=False,
                     help="backbones whose release is not on this machine start from random weights (speed tests; "
                          "the store says so)"),
        option(ExtractConfig, "text_model",
               help="sentence-transformers model path or name (default: packaged all-MiniLM-L6-v2), or clip:DIR / "
                    "clap:DIR for CLIP's / CLAP's own text tower"),
        option(EncoderConfig, "frame_subset", help="CLIP: frames of each clip it sees, evenly spaced (0: all)"),
        option(EncoderConfig, "clip_embedding", choices=CLIP_EMBEDDINGS,
               help="CLIP frame embedding: projected (its text space) or pooled (before the projection)"),
        option(EncoderConfig, "audio_window", help="AST / CLAP: seconds of audio per segment (0: the model's input, "
                                                   "10.24 s / 10 s)"),
        option(ExtractConfig, "prompt_template", "--prompt", help="label prompt; must contain {label}"),
        option(ClipSampling, "clips", help="visual clips per video"),
        option(SpatialViews, "crops", "--views", type=click.Choice([str(c) for c in VIEW_CROPS]),
               callback=lambda _c, _p, v: int(v),
               help="spatial views of each clip: 1 (centre crop) or 3 (start/centre/end crops along the long side, "
                    "ThreeCrop); the visual backbone runs once per view"),
        option(SpatialViews, "flip", flag=True, help="also a horizontally flipped copy of each view (twice the views)"),
        option(AudioSampling, "segments", help="audio segments per video, aligned with the clips"),
        option(ExtractConfig, "precision", choices=PRECISIONS,
               help="backbone precision (recorded in the store: reduced precision changes the features)"),
    ]):
        f = opt(f)
    return f


def decoder_option(f):
    from cavnet.extract.config import DECODERS, ExtractConfig

    return option(ExtractConfig, "decoder", choices=DECODERS,
                  help="pyav, or torchcodec (pip install 'cavnet[torchcodec]'; NVDEC for 720p+ H.264/HEVC on CUDA "
                       "workers); recorded in the store")(f)


def prepare_options(f):
    from cavnet.extract.config import X264_PRESETS, PrepareConfig

    return options(PrepareConfig, {"short_side": "shorter side of the re-encoded frames (never upscaled; 128 is "
                                                 "enough for 112-pixel crops)",
                                   "keyframe_seconds": "a keyframe at least this often (cheap seeks)",
                                   "crf": "x264 quality (lower: better, larger)", "preset": "x264 speed",
                                   "audio_bitrate": "bits/s of the AAC written when the audio cannot be copied"},
                   preset={"choices": X264_PRESETS})(f)


def run_options(f):
    from cavnet.pipelines.extract.options import RunOptions

    return options(RunOptions, {"shard_size": "videos per Dask task",
                                "scheduler": "address of an existing Dask scheduler",
                                "workers": "local CPU workers"})(f)


MODEL_HELP = {
    "modalities": "av: both streams; v / a: one stream only",
    "self_attn": "the inter-clip self-attention (eq. 2-3)",
    "cross_attn": "the audio-visual cross-attention (eq. 4-5)",
    "pool": "gate: gated pooling (eq. 7-8); mean: masked mean",
    "fusion": "cavnet: the paper's encoder; late: two-stream late fusion",
    "head": "text: contrastive head against label texts; linear: class logits",
    "time_encoding": "shared: one clock for both streams (token times); none: content-only cross-attention (eq. 4-5)",
    "gate": "token: a gate per token (eq. 7); set: one channel gate from the whole set",
    "text_proj": "a learnable projection of the sentence embeddings (identity at start), targets and prompts alike",
    "loss": "clip: CLIP's N x K cross-entropy; paper: eq. 9 as written (2N-way denominator, both directions)",
    "d_model": "fusion width",
    "dropout": None,
}


def model_options(f):
    from cavnet.fuse.config import (FUSION_PRESETS, FUSIONS, GATES, HEADS, LOSSES, MODALITIES, POOLS,
                                    TIME_ENCODINGS,
                                    FusionConfig)

    f = options(FusionConfig, MODEL_HELP, modalities={"choices": MODALITIES}, pool={"choices": POOLS},
                fusion={"choices": FUSIONS}, head={"choices": HEADS}, time_encoding={"choices": TIME_ENCODINGS},
                gate={"choices": GATES}, loss={"choices": LOSSES})(f)
    return click.option("--preset", type=click.Choice(list(FUSION_PRESETS)), default="default", show_default=True,
                        help="paper-literal: eq. 1-9 as written (one head, no residual, LayerNorm, FFN, positions, "
                             "clock, biases or dropout; eq. 9's loss); the model options above apply on top where "
                             "they differ from their defaults")(f)


def model_overrides(p: dict) -> dict:
    """The preset's fields, then every model option given a value other than its default."""
    import dataclasses

    from cavnet.fuse.config import FusionConfig, preset_overrides

    defaults = {f.name: f.default for f in dataclasses.fields(FusionConfig)}
    chosen = {k: p[k] for k in MODEL_HELP if p[k] != defaults.get(k)}
    return {**preset_overrides(p.get("preset", "default")), **chosen}


def train_opt(name: str, **kw):
    from cavnet.fuse.train_config import TrainConfig

    return option(TrainConfig, name, **kw)


def train_options(f):
    from cavnet.fuse.train_config import TARGETS, TRAIN_VIEWS, TrainConfig

    return options(TrainConfig, {"epochs": None, "batch_size": "videos per step", "lr": "peak learning rate",
                                 "weight_decay": None, "warmup_epochs": "linear warm-up, in epochs", "seed": None,
                                 "device": "auto, cpu, cuda or cuda:N",
                                 "targets": "label: class prompts; video-text: each video's own text",
                                 "text_encoder_lr": TEXT_ENCODER_HELP,
                                 "eval_every": "score val every N epochs (0: after the last only)",
                                 "checkpoint_every": "write last.pt / best.pt every N epochs (0: at the end)",
                                 "text_set": TEXT_SET_HELP, "classes": CLASSES_HELP,
                                 "train_views": "a store with spatial views (extract --views/--flip): random: one "
                                                "view per video per epoch; centre: the centre view only"},
                   targets={"choices": TARGETS}, train_views={"choices": TRAIN_VIEWS})(f)


CLASSES_HELP = "a subset of the store's classes: FILE (one name a line) or kinetics-sounds"
TEXT_SET_HELP = "the store's label-text set the classes are embedded with (cavnet text lists them)"
TEXT_ENCODER_HELP = "also fine-tune the sentence encoder itself at this lr (0: frozen text embeddings)"
FINETUNE_HELP = {
    "end_to_end": "back-propagate into the backbones (else they stay frozen)",
    "epochs": None, "batch_size": "videos per step over all processes", "lr": "fusion and temperature",
    "backbone_lr": None, "weight_decay": None, "warmup_epochs": None,
    "freeze_until": "visual stages kept frozen", "freeze_audio": "keep the audio backbone frozen",
    "freeze_bn": "keep the backbones' BatchNorm running statistics",
    "grad_checkpoint": "recompute 3D-ResNeXt blocks in backward: less memory",
    "amp": "auto: audio backbone in bf16 on CUDA, the rest fp32/TF32",
    "decode_workers": DECODE_WORKERS_HELP, "device": None, "seed": None,
    "eval_every": "score val and save every N epochs (0: at the end)",
    "save_every": "also save last.pt every N steps", "max_steps": "stop after N steps (0: all epochs)",
    "tensorboard": "also log loss, accuracy, temperature and lr to OUT/tensorboard",
    "text_encoder_lr": TEXT_ENCODER_HELP,
}


def finetune_options(f):
    from cavnet.finetune.config import AMP_MODES, FREEZE_STAGES, FinetuneConfig

    return options(FinetuneConfig, FINETUNE_HELP, end_to_end={"flag": True}, freeze_audio={"flag": True},
                   tensorboard={"flag": True},
                   grad_checkpoint={"flag": True}, freeze_bn={"decls": ("--freeze-bn/--train-bn",)},
                   freeze_until={"choices": FREEZE_STAGES}, amp={"choices": AMP_MODES},
                   decode_workers={"type": click.IntRange(min=0)})(f)


def evaluate_options(f):
    from cavnet.pipelines.options import EVAL_VIEWS, EvaluateOptions

    return options(EvaluateOptions, {"split": None, "device": None, "batch_size": "videos per batch (--dataset)",
                                     "decode_workers": DECODE_WORKERS_HELP + " (--dataset)",
                                     "top_k": "labels per video in the predictions CSV",
                                     "text_set": "score the classes with this label-text set [the one it "
                                                 "trained with]",
                                     "views": "all: class scores averaged over the store's spatial views (e.g. "
                                              "10 clips x 3 crops); centre: the centre view only",
                                     "classes": CLASSES_HELP + " [the checkpoint's]"},
                   views={"choices": EVAL_VIEWS}, batch_size={"type": click.IntRange(min=1)},
                   decode_workers={"type": click.IntRange(min=0)},
                   top_k={"type": click.IntRange(min=1)})(f)


def predict_options(f):
    from cavnet.pipelines.options import PredictOptions

    return options(PredictOptions, {"top_k": "labels shown per file", "device": None,
                                    "batch_size": "videos per batch", "decode_workers": DECODE_WORKERS_HELP,
                                    "text_set": "score the classes with this label-text set of the checkpoint's "
                                                "store [the one it trained with]"},
                   top_k={"type": click.IntRange(min=1)}, batch_size={"type": click.IntRange(min=1)},
                   decode_workers={"type": click.IntRange(min=0)})(f)


def bench_options(f):
    from cavnet.bench.run import BenchConfig

    return options(BenchConfig, {
        "videos": "corpus size [CPU 16, CUDA 128]", "seconds": "video length [10; 2 with --small]",
        "device": None, "workers": "Dask workers [CPU 2, CUDA one per GPU]", "decode_workers": DECODE_WORKERS_HELP,
        "repeats": "timed repeats per figure [3]",
        "visual": "visual backbone, as extract [CPU resnext3d-tiny, CUDA resnext3d-101]",
        "audio": "audio backbone, as extract [CPU audio-cnn-tiny, CUDA resnet50-audio]",
        "small": "a quick smoke run: 4 short videos, 2 repeats, small store",
        "batch_clips": "clips per visual batch, 4x as many audio segments [CUDA 128, CPU 16, 4 with --small]"},
        videos={"type": click.IntRange(min=1)}, seconds={"type": click.FloatRange(min=1.0)},
        device={"choices": ("auto", "cpu", "cuda")}, workers={"type": click.IntRange(min=1)},
        decode_workers={"type": click.IntRange(min=0)}, repeats={"type": click.IntRange(min=1)},
        small={"flag": True}, batch_clips={"type": click.IntRange(min=1)})(f)


def demo_opt(name: str, **kw):
    from cavnet.pipelines.demo.config import DemoConfig

    return option(DemoConfig, name, **kw)
