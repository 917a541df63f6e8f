"""Figures written next to results (matplotlib, headless)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_curves(metrics_jsonl: Path, out_png: Path) -> None:
    """Training loss and val top-1/top-5 per epoch."""
    rows = [json.loads(line) for line in Path(metrics_jsonl).read_text().splitlines() if line.strip()]
    if not rows:
        return
    plt = _pyplot()
    epochs = [r["epoch"] for r in rows]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(9, 3.5))
    ax1.plot(epochs, [r["loss"] for r in rows])
    ax1.set(xlabel="epoch", ylabel="train loss")
    scored = [r for r in rows if "top1" in r]  # epochs whose val split was scored (fuse-train --eval-every)
    for key in ("top1", "top5", "mean_class"):
        ax2.plot([r["epoch"] for r in scored], [r[key] for r in scored], label=key, marker=".")
    ax2.set(xlabel="epoch", ylabel="val accuracy (%)", ylim=(0, 100))
    ax2.legend()
    fig.tight_layout()
    fig.savefig(out_png, dpi=100)
    plt.close(fig)


def plot_confusion(matrix: np.ndarray, names: list[str], out_png: Path) -> None:
    plt = _pyplot()
    size = max(4.0, 0.35 * len(names) + 2)
    fig, ax = plt.subplots(figsize=(size, size))
    ax.imshow(matrix, cmap="Blues")
    ax.set(xlabel="predicted", ylabel="true", xticks=range(len(names)), yticks=range(len(names)))
    ax.set_xticklabels(names, rotation=90, fontsize=7)
    ax.set_yticklabels(names, fontsize=7)
    fig.tight_layout()
    fig.savefig(out_png, dpi=100)
    plt.close(fig)


def plot_results(labels: list[str], means: list[float], stds: list[float], out_png: Path,
                 ylabel: str = "val top-1 (%)") -> None:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(max(5.0, 0.8 * len(labels) + 2), 4))
    ax.bar(range(len(labels)), means, yerr=stds, capsize=4, color="#4c78a8")
    ax.set_xticks(range(len(labels)))
    ax.set_xticklabels(labels, rotation=30, ha="right", fontsize=8)
    ax.set(ylabel=ylabel, ylim=(0, 100))
    fig.tight_layout()
    fig.savefig(out_png, dpi=100)
    plt.close(fig)
