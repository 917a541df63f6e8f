"""The demo's report on AV-Synth hard: each ablation row beside the best accuracy its inputs allow, and a
reading that explains the row from the corpus design (extract/synth/hard.py, extract/synth/caps.py)."""

from __future__ import annotations

from typing import Any

# The ablation rows of the hard demo (the pretraining and linear-head rows test the loss, not timing).
HARD_VARIANTS = ("audio-only", "visual-mean", "cavnet-visual", "late-fusion", "cavnet", "no-self-attn",
                 "no-cross-attn", "mean-pool", "content-only")

# The view of the video each row's inputs keep, when the table gives it a cap (caps.py).
ROW_VIEWS = {"audio-only": "audio-pooled", "visual-mean": "visual-pooled", "cavnet-visual": "visual",
             "late-fusion": "pooled", "cavnet": "timeline"}

WHY = {
    "audio-only": "hears which sound plays and in how many blocks (so the kind of class), never what is on "
                  "screen",
    "visual-mean": "sees which patterns were on screen, not when nor with which sound",
    "cavnet-visual": "sees the patterns in order, not which of them was on screen while the sound played",
    "late-fusion": "knows the sound and the patterns on screen, but pools each stream before fusing, so not "
                   "which pattern was on while the sound played, nor the order of the two events",
    "no-cross-attn": "relates clips within each stream, but only the final sum meets the two streams: no token "
                     "knows what the other stream did at its time",
    "content-only": "cross-attends by content alone: nothing tells the model which clip is synchronous with a "
                    "sounding segment (the per-modality position tables start near zero)",
    "no-self-attn": "has no attention between the clips of one stream; it keeps the time-aware cross-attention, "
                    "which relates each clip to the other stream around its time, and each token's time",
    "mean-pool": "averages all 16 tokens, the 12 or so distractor tokens included, where the gate can weigh "
                 "them down",
}


def row_caps() -> dict[str, float]:
    """Best top-1 (%) each capped row's inputs allow, over all classes of the hard table."""
    from cavnet.extract.synth.caps import view_cap
    from cavnet.extract.synth.hard import hard_class_table

    table = hard_class_table()
    return {key: 100.0 * view_cap(table, view) for key, view in ROW_VIEWS.items()}  # type: ignore[arg-type]


def caps_table(rows: list[dict[str, Any]], caps: dict[str, float]) -> str:
    """Markdown: each row's measured top-1 beside its computed cap ('-' where the table gives none)."""
    lines = ["| Method | Top-1 (%) | Cap from the class table (%) |", "|---|---|---|"]
    for r in rows:
        cap = f"{caps[r['variant']]:.1f}" if r["variant"] in caps else "-"
        lines.append(f"| {r['label']} | {r['top1_mean']:.1f} ± {r['top1_std']:.1f} | {cap} |")
    return "\n".join(lines) + "\n"


def hard_reading(rows: list[dict[str, Any]], caps: dict[str, float]) -> list[str]:
    """One sentence per row: what its inputs allow, the measured top-1, and the gap to CAV-Net."""
    from cavnet.pipelines.demo.report import compare

    cav = next((r for r in rows if r["variant"] == "cavnet"), None)
    out = []
    if cav:
        out.append(f"CAV-Net reaches {cav['top1_mean']:.1f}% top-1 (± {cav['top1_std']:.1f}); the timeline of "
                   f"a video with audio names its class, so 100% is possible in principle.")
    for r in rows:
        if r["variant"] == "cavnet" or r["variant"] not in WHY:
            continue
        cap = f" (cap {caps[r['variant']]:.1f}%)" if r["variant"] in caps else ""
        gap = f"; CAV-Net vs this row: {compare(cav, r)}" if cav else ""
        out.append(f"{r['label']}: {r['top1_mean']:.1f}%{cap}. It {WHY[r['variant']]}{gap}.")
    return out


def render_hard_report(cfg: Any, counts: dict[str, int], rows: list[dict[str, Any]], t_extract: float,
                       t_total: float, weights_note: str | None = None) -> str:
    """report-hard.md: the setting, the ablation table, each row beside its cap, and the reading."""
    from cavnet.pipelines.ablate import results_table
    from cavnet.pipelines.demo.report import protocol

    caps = row_caps()
    status = ", ".join(f"{k}: {v}" for k, v in counts.items())
    lines = [
        "# cavnet demo report: AV-Synth hard", "",
        f"AV-Synth hard, {cfg.videos} videos, 16 classes (seed {cfg.seed}): 8 s videos of four 2 s blocks, one "
        "pattern per block; 'sync' classes are named by the pattern on screen while a sound plays, 'order' "
        "classes by two such events in order (docs/results.md). Backbones "
        f"{cfg.visual} + {cfg.audio}, randomly initialised; {cfg.clips} clips and {cfg.segments} audio segments "
        f"per video; fusion width {cfg.d_model}.", *([f"**{weights_note}**"] if weights_note else []),
        f"Extraction statuses: {status}. Ablation: {cfg.seeds} seeds x {cfg.epochs} epochs at peak lr "
        f"{cfg.lr:g}, val split, metrics "
        "of the last epoch (mean ± std over seeds).", "",
        results_table(rows, protocol(cfg.clips)),
        "![top-1 by variant](ablation-hard/results.png)", "",
        "## Measured beside the caps", "",
        "The cap of a row is the best top-1 any model given that row's inputs can reach, computed from the class "
        "table (`extract/synth/caps.py`), for videos with audio.", "",
        caps_table(rows, caps), "## Reading", "", *[f"- {s}" for s in hard_reading(rows, caps)], "",
        f"Time: extraction (with corpus) {t_extract:.0f} s, total {t_total:.0f} s.", "",
    ]
    return "\n".join(lines)
