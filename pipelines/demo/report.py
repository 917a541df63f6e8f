"""The demo's report on the easy task: the ablation table and plain sentences on what it shows."""

from __future__ import annotations

from typing import Any

from cavnet.pipelines.demo.config import DemoConfig


def row(rows: list[dict[str, Any]], key: str) -> dict[str, Any] | None:
    return next((r for r in rows if r["variant"] == key), None)


def reading(rows: list[dict[str, Any]], classes: int) -> list[str]:
    """Plain sentences on what the table shows: fusion vs each modality, gate vs mean pooling."""
    out, chance = [], 100.0 / classes
    cav = row(rows, "cavnet")
    singles = [r for r in rows if r["variant"] in ("audio-only", "visual-mean", "cavnet-visual")]
    if cav and singles:
        best = max(singles, key=lambda r: r["top1_mean"])
        gap = cav["top1_mean"] - best["top1_mean"]
        out.append(f"CAV-Net reaches {cav['top1_mean']:.1f}% top-1, {gap:+.1f} points over the best single-modality "
                   f"row ({best['label']}, {best['top1_mean']:.1f}%); AV-Synth caps each single modality at 50%.")
        above = all(r["top1_mean"] > chance for r in singles)
        out.append(f"Every single-modality row is {'above' if above else 'NOT above'} chance ({chance:.1f}%).")
    for key, what in (("mean-pool", "The gate vs mean pooling"), ("late-fusion", "Attention fusion vs two-stream "
                      "late fusion"), ("content-only", "The shared clock vs content-only fusion"),
                      ("linear-head", "The language-guided head vs a linear softmax head")):
        other = row(rows, key)
        if cav and other:
            out.append(f"{what}: {compare(cav, other)}.")
    return out


def compare(a: dict[str, Any], b: dict[str, Any]) -> str:
    """A difference of top-1 means, called clear only when it exceeds the spread over seeds."""
    d = a["top1_mean"] - b["top1_mean"]
    spread = max(a["top1_std"], b["top1_std"])
    if abs(d) <= spread or d == 0:
        return f"{d:+.1f} points top-1, within the spread over seeds (±{spread:.1f}): no clear difference here"
    return f"{d:+.1f} points top-1 ({'better' if d > 0 else 'worse'} beyond the spread over seeds, ±{spread:.1f})"


def render_report(cfg: DemoConfig, counts: dict[str, int], rows: list[dict[str, Any]], t_extract: float,
                  t_total: float, weights_note: str | None = None) -> str:
    from cavnet.pipelines.ablate import results_table

    status = ", ".join(f"{k}: {v}" for k, v in counts.items())
    lines = [
        "# cavnet demo report", "",
        f"AV-Synth, {cfg.videos} videos, {cfg.classes} classes (seed {cfg.seed}); backbones {cfg.visual} + "
        f"{cfg.audio}, randomly initialised; {cfg.clips} clips and {cfg.segments} audio segments per video; "
        f"fusion width {cfg.d_model}.", *([f"**{weights_note}**"] if weights_note else []),
        f"Extraction statuses: {status}. Ablation: {cfg.seeds} seeds x {cfg.epochs} epochs at peak lr "
        f"{cfg.lr:g}, val split, "
        "metrics of the last epoch (mean ± std over seeds).", "",
        results_table(rows, protocol(cfg.clips)),
        "![top-1 by variant](ablation/results.png)", "", "## Reading", "",
        *[f"- {s}" for s in reading(rows, cfg.classes)], "",
        f"Time: extraction (with corpus) {t_extract:.0f} s, total {t_total:.0f} s.", "",
    ]
    return "\n".join(lines)


def protocol(clips: int) -> str:
    """The evaluation protocol a demo table states: the store holds one centre crop per clip."""
    return f"{clips} clips x 1 crop (centre), class scores averaged over clips, val split"
