"""evaluate on raw videos: any checkpoint (fuse-train or fine-tune), decoded exactly as extraction decodes.

Also the dispatch behind ``cavnet evaluate``: a store (features as extracted) or raw videos, and a refusal
to score a checkpoint whose backbones were fine-tuned on a store's features computed by the old backbones.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import torch
from torch.utils.data import DataLoader

from cavnet.errors import CavnetError
from cavnet.extract.config import ExtractConfig
from cavnet.extract.manifest import ManifestRow
from cavnet.fuse.engine import accuracy_metrics
from cavnet.pipelines import finetune_dist as fd
from cavnet.pipelines.checkpoint import load_checkpoint
from cavnet.pipelines.extract_batch import resolve_device
from cavnet.pipelines.finetune_build import build_avnet, check_classes, store_config_of
from cavnet.pipelines.finetune_data import VideoClips, make_loader
from cavnet.pipelines.finetune_engine import VideoScores, score_videos


def backbones_trained(state: dict[str, Any]) -> bool:
    """Whether a checkpoint's backbones differ from those that computed its store's features."""
    return bool(state.get("finetune_config", {}).get("end_to_end")) and "visual" in state


def eval_loader(rows: list[ManifestRow], config: ExtractConfig, device: torch.device, env: fd.DistEnv,
                batch_size: int, workers: int) -> DataLoader:
    """Batches of ``rows`` decoded as extraction decodes them; this process takes every W-th row."""
    return make_loader(VideoClips(rows, config), batch_size, workers, device,
                       indices=range(env.rank, len(rows), env.world))


def metrics_of(sc: VideoScores, num_classes: int) -> dict[str, Any]:
    """top-1/top-5/mean-class of all decodable videos and of those with audio, plus status counts."""
    return {**accuracy_metrics(sc.scores, sc.labels, num_classes),
            "audio_present": accuracy_metrics(sc.scores[sc.audio_present], sc.labels[sc.audio_present],
                                              num_classes),
            "statuses": dict(sorted(sc.statuses.items()))}


def run_evaluate_videos(checkpoint: Path, dataset: str, root: Path | None, manifest: Path | None,
                        split: str = "val", out_dir: Path | None = None, device: str = "auto",
                        batch_size: int = 8, decode_workers: int = 2) -> dict[str, Any]:
    """Metrics of ``checkpoint`` on the labelled videos of ``split`` of a corpus, from raw video."""
    from cavnet.pipelines.evaluate import write_reports
    from cavnet.pipelines.manifests import load_manifest

    state = load_checkpoint(checkpoint)
    config = store_config_of(state, str(checkpoint))
    m = load_manifest(dataset, root, manifest, (split,))
    check_classes(state, m, str(checkpoint))
    rows = [r for r in m.rows if r.label >= 0]
    if not rows:
        raise CavnetError(f"split {split!r} of this {dataset} corpus has no labelled videos")
    dev = resolve_device(device)
    net = build_avnet(state, dev)
    class_emb = state["class_embedding"].float().to(dev)
    env = fd.DistEnv()
    sc = score_videos(net, eval_loader(rows, config, dev, env, batch_size, decode_workers), class_emb,
                      state["fusion_config"]["head"], dev, env)
    if len(sc.labels) == 0:
        raise CavnetError(f"no video of split {split!r} could be decoded ({sc.statuses})")
    result = {"split": split, "checkpoint": str(checkpoint), **metrics_of(sc, len(m.classes))}
    if out_dir is not None:
        write_reports(out_dir, split, sc.scores, sc.labels, list(m.classes))
        result["reports"] = str(out_dir)
    return result


def evaluate_command(checkpoint: Path, split: str, out_dir: Path | None, device: str, store: Path | None = None,
                     dataset: str | None = None, root: Path | None = None, manifest: Path | None = None,
                     batch_size: int = 8, decode_workers: int = 2) -> dict[str, Any]:
    """``cavnet evaluate``: from a store's features, or (``dataset`` given) from raw videos."""
    if store is not None and dataset is not None:
        raise CavnetError("give either --store or --dataset to evaluate on, not both")
    if store is None and dataset is None:
        raise CavnetError("give --store STORE.h5, or --dataset with --root / --manifest to evaluate on raw videos")
    if dataset is not None:
        return run_evaluate_videos(checkpoint, dataset, root, manifest, split, out_dir, device, batch_size,
                                   decode_workers)
    from cavnet.pipelines.evaluate import run_evaluate

    if backbones_trained(load_checkpoint(checkpoint)):
        raise CavnetError(f"{checkpoint} fine-tuned its backbones, so a store's features do not fit it: "
                          "evaluate it on the videos (--dataset k400 --root PATH)")
    return run_evaluate(store, checkpoint, split, out_dir, device)


def echo_metrics(r: dict[str, Any], echo: Callable[[str], None]) -> None:
    """The lines ``cavnet evaluate`` prints."""
    split, a = r["split"], r["audio_present"]
    echo(f"{split}: {r['count']} videos  top-1 {r['top1']:.2f}  top-5 {r['top5']:.2f}  "
         f"mean-class {r['mean_class']:.2f}")
    echo(f"{split} with audio: {a['count']} videos  top-1 {a['top1']:.2f}  top-5 {a['top5']:.2f}  "
         f"mean-class {a['mean_class']:.2f}")
    if r.get("random_weights"):
        echo(r["random_weights"])
    if "statuses" in r:
        echo(f"{split} decode statuses: " + ", ".join(f"{k} {v}" for k, v in r["statuses"].items()))
