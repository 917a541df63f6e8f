"""End-to-end fine-tune check on one GPU, in one call, in under 5 minutes.

Generates an AV-Synth corpus, writes a starting checkpoint for 3D-ResNeXt-101 + ResNet-50 audio (seeded
random backbones, a fresh fusion head and random class embeddings: the check measures speed and memory, and
that the loss falls), then runs ``finetune --end-to-end`` for a few hundred steps with the default options
(audio in bf16, visual in TF32, frozen BatchNorm statistics). First it times one forward + backward pass of
each backbone in float32 and in bf16, so the ``--amp auto`` choice can be checked on the card at hand.

    python bench/finetune_gpu_check.py                          # CUDA, full size
    python bench/finetune_gpu_check.py --grad-checkpoint        # the same with checkpointing
    python bench/finetune_gpu_check.py --small --device cpu --steps 3 --videos 12   # smoke run

Prints the card, the date, training clips/s and the share of time spent waiting for decoded clips (both
over the steps after the first 10), videos/s over the whole run, peak GPU memory and the loss at the start
and the end; writes the same to ``$OUT/finetune_check.json`` (``OUT`` defaults to ./finetune-check-out).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
try:
    import cavnet  # noqa: F401
except ImportError:  # run from a checkout that is not installed: make the root importable as `cavnet`
    link = Path(tempfile.mkdtemp()) / "cavnet"
    link.symlink_to(ROOT)
    sys.path.insert(0, str(link.parent))

import numpy as np  # noqa: E402
import torch  # noqa: E402


def parse() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cuda")
    p.add_argument("--small", action="store_true", help="resnext3d-tiny + audio-cnn-tiny")
    p.add_argument("--steps", type=int, default=250)
    p.add_argument("--videos", type=int, default=160)
    p.add_argument("--batch-size", type=int, default=8, help="videos per step")
    p.add_argument("--clips", type=int, default=10)
    p.add_argument("--decode-workers", type=int, default=max(1, min(14, (os.cpu_count() or 2) - 2)))
    p.add_argument("--amp", default="auto", choices=["auto", "off", "bf16"])
    p.add_argument("--grad-checkpoint", action="store_true")
    p.add_argument("--out", type=Path, default=Path(os.environ.get("OUT", "finetune-check-out")))
    return p.parse_args()


def time_backbone(name: str, x: torch.Tensor, bf16: bool, iters: int = 5) -> float:
    """Items per second of one forward + backward pass of backbone ``name`` on ``x``."""
    from cavnet.extract.backbones import create_backbone

    model = create_backbone(name).to(x.device).train()
    if x.dim() == 5 and x.is_cuda:
        model, x = model.to(memory_format=torch.channels_last_3d), x.contiguous(memory_format=torch.channels_last_3d)
    best = float("inf")
    for i in range(iters + 2):
        sync(x.device)
        t0 = time.perf_counter()
        with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=bf16):
            model(x).float().square().mean().backward()
        sync(x.device)
        best = min(best, time.perf_counter() - t0) if i >= 2 else best
    return x.shape[0] / best


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def precision_check(visual: str, audio: str, device: torch.device, small: bool) -> dict[str, float]:
    """fw+bw items/s of each backbone in float32 (TF32) and in bf16."""
    torch.backends.cudnn.benchmark = True
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    clips = torch.randn(4 if small else 32, 3, 16, 112, 112, device=device)
    examples = torch.randn(16 if small else 128, 1, 96, 64 if small else 128, device=device)
    out = {}
    for name, x in ((visual, clips), (audio, examples)):
        for bf16 in (False, True):
            out[f"{name} {'bf16' if bf16 else 'fp32'}"] = time_backbone(name, x, bf16)
    return out


def make_init(path: Path, corpus: Path, visual: str, audio: str, clips: int) -> None:
    """A fuse-train-shaped checkpoint: store config for ``visual``/``audio`` without weight files, a fresh
    fusion and random unit class embeddings (384-d, the default text model's width)."""
    from cavnet.extract.backbones import get_spec
    from cavnet.extract.datasets import read_k400
    from cavnet.fuse.config import FusionConfig
    from cavnet.fuse.loss import ContrastiveLoss
    from cavnet.fuse.model import CAVNet
    from cavnet.fuse.train_config import TrainConfig
    from cavnet.fuse.checkpoint import Checkpoint
    from cavnet.extract.backbones.pretrained import extract_config

    classes = read_k400(corpus).classes
    config = extract_config(visual, audio, None, None, "default", "a video of a person {label}", clips, clips)
    fcfg = FusionConfig(visual_dim=get_spec(visual).out_dim, audio_dim=get_spec(audio).out_dim, text_dim=384,
                        num_classes=len(classes))
    torch.manual_seed(0)
    emb = torch.nn.functional.normalize(torch.randn(len(classes), 384), dim=-1)
    Checkpoint(model=CAVNet(fcfg).state_dict(), fusion=fcfg, class_names=list(classes), class_embedding=emb,
               store_config=config.to_json(), text_model="random (finetune_gpu_check)", train=TrainConfig().to_dict(),
               loss=ContrastiveLoss().state_dict()).save(path)


def summary(run: Path, device: torch.device) -> dict[str, float]:
    steps = [json.loads(x) for x in (run / "steps.jsonl").read_text().splitlines()]
    metrics = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()][-1]
    steady = steps[10:] or steps
    secs = sum(s["seconds"] for s in steady)
    k = max(1, min(20, len(steps) // 4))
    return {"steps": len(steps), "clips_per_s": sum(s["clips"] for s in steady) / secs,
            "data_wait_share": sum(s["wait"] for s in steady) / secs, "videos_per_s_overall": metrics["videos_per_s"],
            "peak_gpu_gb": metrics["peak_gpu_gb"], "loss_first": float(np.mean([s["loss"] for s in steps[:k]])),
            "loss_last": float(np.mean([s["loss"] for s in steps[-k:]])), "val_top1": metrics["top1"]}


def main() -> None:
    args = parse()
    from cavnet.extract.synth import synth
    from cavnet.extract.device import resolve_device
    from cavnet.extract.datasets import Corpus
    from cavnet.pipelines.finetune import run_finetune
    from cavnet.finetune.config import FinetuneConfig

    device = resolve_device(args.device)
    visual, audio = ("resnext3d-tiny", "audio-cnn-tiny") if args.small else ("resnext3d-101", "resnet50-audio")
    card = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    report = {"card": card, "date": datetime.date.today().isoformat(), "torch": torch.__version__,
              "visual": visual, "audio": audio, "batch_videos": args.batch_size, "clips": args.clips,
              "amp": args.amp, "grad_checkpoint": args.grad_checkpoint}
    print(json.dumps(report), flush=True)
    report["fw_bw_items_per_s"] = precision_check(visual, audio, device, args.small)
    print("forward+backward items/s:", json.dumps(report["fw_bw_items_per_s"]), flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    corpus = args.out / "corpus"
    t0 = time.perf_counter()
    if not (corpus / "train.csv").exists():
        synth(corpus, videos=args.videos, classes=8, seed=0, workers=os.cpu_count() or 2)
    make_init(args.out / "init.pt", corpus, visual, audio, args.clips)
    print(f"corpus and init checkpoint in {time.perf_counter() - t0:.1f} s", flush=True)
    cfg = FinetuneConfig(init=str(args.out / "init.pt"), end_to_end=True, epochs=10_000, batch_size=args.batch_size,
                         lr=1e-4, backbone_lr=1e-4, warmup_epochs=0.0, grad_checkpoint=args.grad_checkpoint,
                         amp=args.amp, decode_workers=args.decode_workers, device=str(device),
                         eval_every=0, max_steps=args.steps)
    try:
        run_finetune(cfg, Corpus("k400", corpus), args.out / "run", eval_init=False, progress=False)
    except torch.cuda.OutOfMemoryError:
        report["error"] = f"out of GPU memory at {args.batch_size} videos x {args.clips} clips per step"
        (args.out / "finetune_check.json").write_text(json.dumps(report, indent=2))
        sys.exit(f"finetune_gpu_check: {report['error']}; try --grad-checkpoint or a smaller --batch-size")
    report.update(summary(args.out / "run", device))
    (args.out / "finetune_check.json").write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
