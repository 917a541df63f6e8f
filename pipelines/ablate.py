"""ablate, wired: every variant of the paper's table trained on one store, over seeds, in parallel.

Each (variant, seed) is a fuse-train run in ``DIR/runs/{variant}/seed{k}``; a run that finished has a
``result.json`` and is skipped by a rerun. Runs execute on a local Dask cluster, one thread per worker.
"""

from __future__ import annotations

import csv
import json
import math
import os
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

from cavnet.errors import CavnetError
from cavnet.extract.files.outputs import atomic, write_json, write_text
from cavnet.fuse.config import preset_overrides
from cavnet.fuse.train_config import TrainConfig


@dataclass(frozen=True)
class Variant:
    key: str
    label: str
    group: str
    overrides: dict[str, Any] = field(default_factory=dict)
    pretrain: bool = False  # video-text pretraining on the same store first
    external: bool = False  # caption pretraining on ``--pretrain-store`` first
    train: dict[str, Any] = field(default_factory=dict)  # TrainConfig fields of its own (the text encoder's lr)
    kind: str = "fusion"  # or a frozen-encoder baseline, no fusion: "zero-shot", "probe" (fuse.baselines.probe)


PAPER = (
    Variant("audio-only", "Audio only (segment average)", "Audio only",
            {"modalities": "a", "self_attn": False, "pool": "mean"}),
    Variant("visual-mean", "Visual only (clip average)", "Visual only",
            {"modalities": "v", "self_attn": False, "pool": "mean"}),
    Variant("cavnet-visual", "CAV-Net (visual only)", "Visual only", {"modalities": "v"}),
    Variant("late-fusion", "Two-stream late fusion", "Multi-modal", {"fusion": "late"}),
    Variant("cavnet", "CAV-Net", "Multi-modal"),
    Variant("cavnet-pretrain", "CAV-Net + pretrain", "Multi-modal", pretrain=True),
)
COMPONENTS = (
    Variant("no-self-attn", "CAV-Net without self-attention", "Components", {"self_attn": False}),
    Variant("no-cross-attn", "CAV-Net without cross-attention", "Components", {"cross_attn": False}),
    Variant("mean-pool", "CAV-Net with mean pooling (no gate)", "Components", {"pool": "mean"}),
    Variant("content-only", "CAV-Net without the shared clock (content-only)", "Components", {"time_encoding": "none"}),
    Variant("linear-head", "CAV-Net with a linear softmax head", "Components", {"head": "linear"}),
)
FIDELITY = (
    Variant("paper-literal", "CAV-Net, eq. 1-9 as written (paper-literal)", "Fidelity",
            preset_overrides("paper-literal")),
    Variant("default", "CAV-Net, cavnet defaults", "Fidelity"),
    Variant("paper-loss", "CAV-Net, cavnet defaults with eq. 9's loss", "Fidelity", {"loss": "paper"}),
    Variant("set-gate", "CAV-Net with a set-level gate (eq. 7 per set)", "Fidelity", {"gate": "set"}),
    Variant("text-proj", "CAV-Net with a trainable text projection", "Fidelity", {"text_proj": True}),
    Variant("external-pretrain", "CAV-Net + external caption pretraining", "Fidelity", external=True),
    # 1e-5: the usual rate for fine-tuning a BERT-sized sentence encoder (MiniLM's own training used 2e-5),
    # two orders below the fusion's; much higher forgets the pretrained text space within a few dozen steps
    Variant("text-encoder", "CAV-Net + fine-tuned sentence encoder", "Fidelity", train={"text_encoder_lr": 1e-5}),
)
# The frozen encoder on its own, then with CAV-Net on top (a store of CLIP / CLAP features with their own text
# tower gives the zero-shot row; the probe and CAV-Net rows run on any store)
ENCODERS = (
    Variant("zero-shot", "Frozen encoder, zero-shot (its own text tower)", "Frozen encoder", kind="zero-shot"),
    Variant("linear-probe", "Frozen encoder, linear probe on pooled features", "Frozen encoder", kind="probe"),
    Variant("cavnet", "CAV-Net on the frozen features", "Frozen encoder"),
)
# "all" stays the paper and component rows (the demo runs it); "fidelity" repeats the default as a row of its own
PRESETS = {"paper": PAPER, "components": COMPONENTS, "fidelity": FIDELITY, "encoders": ENCODERS,
           "all": PAPER + COMPONENTS}
METRICS = ("top1", "top5", "mean_class")
# beside each variant's fused figure: the same checkpoint with its audio masked, with its visual masked, and
# the modality confusion both ways (evaluate's ``modalities``; NaN where a row has no such figure)
MODALITY = ("visual_top1", "audio_top1", "visual_confusion", "audio_confusion")


def _run_one(store: str, run_dir: str, variant: Variant, tcfg: TrainConfig, base: dict[str, Any],
             pretrain_store: str | None = None) -> dict[str, Any]:
    """One (variant, seed): optional video-text pretraining (on the store, or on ``pretrain_store`` for an
    external variant), then label training; the last epoch's val metrics."""
    import torch

    from cavnet.pipelines.fuse_train import run_fuse_train

    torch.set_num_threads(int(os.environ.get("CAVNET_TORCH_THREADS", "1")))
    out, quiet = Path(run_dir), (lambda _msg: None)
    if variant.kind != "fusion":
        return _run_baseline(Path(store), out, variant, tcfg)
    overrides = {**base, **variant.overrides}
    # val scored and checkpoints written once, at the end: the table reads the last epoch, and an unfinished
    # ablation run is run again from its start, never resumed (neither changes what is trained)
    tcfg = replace(tcfg, eval_every=0, checkpoint_every=0, **variant.train)
    init = None
    if variant.pretrain:
        from cavnet.fuse.run.folder import claim_run_folder

        claim_run_folder(out, "fuse-train")  # its pretrain/ sub-folder comes first
        pre = run_fuse_train(Path(store), out / "pretrain", replace(tcfg, targets="video-text"),
                             overrides, echo=quiet, progress=False)
        init = pre.out / "last.pt"
    external = Path(pretrain_store) if variant.external and pretrain_store else None
    r = run_fuse_train(Path(store), out, tcfg, overrides, init=init, echo=quiet, progress=False,
                       pretrain_store=external, allow_overlap=True)  # run_ablate checked it once
    result = {"variant": variant.key, "seed": tcfg.seed, **{k: r.last[k] for k in METRICS},
              "best_top1": r.best["top1"], "epochs": r.last["epoch"], **modality_columns(Path(store), out, tcfg)}
    write_json(out / "result.json", result)
    return result


def modality_columns(store: Path, run: Path, tcfg: TrainConfig) -> dict[str, float]:
    """The per-modality figures of a finished run's ``last.pt`` on the val split (``evaluate``'s)."""
    from cavnet.pipelines.evaluate import evaluate_command
    from cavnet.pipelines.options import EvaluateOptions

    m = evaluate_command(run / "last.pt", None, EvaluateOptions(split=tcfg.val_split, device=tcfg.device),
                         store=store)["modalities"] or {}

    def get(key: str, field: str) -> float:
        return float(m[key][field]) if m.get(key) else math.nan

    return {"visual_top1": get("visual_only", "top1"), "audio_top1": get("audio_only", "top1"),
            "visual_confusion": get("visual_right_fused_wrong", "percent"),
            "audio_confusion": get("audio_right_fused_wrong", "percent")}


def _run_baseline(store: Path, out: Path, variant: Variant, tcfg: TrainConfig) -> dict[str, Any]:
    """A frozen-encoder row (nothing trained but the probe's logistic regression): its val metrics."""
    from cavnet.extract.store.reader import FeatureStore
    from cavnet.fuse.baselines.probe import linear_probe, zero_shot, zero_shot_modality
    from cavnet.fuse.classes import with_classes

    with FeatureStore(store) as whole:
        s = with_classes(whole, tcfg.classes)  # the rows and class table of --classes, as the fusion rows'
        if variant.kind == "zero-shot":
            modality = zero_shot_modality(s)
            if modality is None:
                raise CavnetError(f"{store}: {variant.label} needs a CLIP / CLAP backbone with its own text tower")
            m = zero_shot(s, tcfg.val_split, modality)
        else:
            m = linear_probe(s, tcfg.train_split, tcfg.val_split)
    result = {"variant": variant.key, "seed": tcfg.seed, **{k: m[k] for k in METRICS}, "best_top1": m["top1"],
              "epochs": 0}
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "result.json", result)
    return result


def zero_shot_note(store_path: Path) -> str | None:
    """None when the store's encoders have their own text side, else the line saying the row is left out."""
    from cavnet.extract.store.reader import FeatureStore
    from cavnet.fuse.baselines.probe import zero_shot_modality

    with FeatureStore(store_path) as s:
        if zero_shot_modality(s):
            return None
        return (f"the store's backbones ({s.config.visual}, {s.config.audio}) and text model share no CLIP / CLAP "
                "checkpoint: 'Frozen encoder, zero-shot' is left out (extract with --text-model clip:DIR or "
                "clap:DIR of the backbone's own folder)")


def has_video_texts(store_path: Path) -> bool:
    """True when some video's own text differs from its class prompt (captions, titles)."""
    import numpy as np

    from cavnet.extract.store.reader import FeatureStore

    with FeatureStore(store_path) as store:
        rows = store.rows()
        idx = np.flatnonzero(rows.labels >= 0)
        text = store.video_text()[idx]
        return bool(np.abs(text - store.class_embedding[rows.labels[idx]]).max() > 1e-2) if len(idx) else False


def run_ablate(store: Path, out: Path, preset: str, seeds: int, tcfg: TrainConfig, workers: int,
               echo: Callable[[str], None] = print, only: tuple[str, ...] | None = None,
               base: dict[str, Any] | None = None, pretrain_store: Path | None = None,
               allow_overlap: bool = False, text_sets: tuple[str, ...] | None = None) -> list[dict[str, Any]]:
    """Train every variant of ``preset`` (or ``only`` those keys) over ``seeds`` seeds; writes
    results.csv/.md/.png in ``out``. ``base`` holds model settings shared by every variant (d_model ...);
    ``pretrain_store`` is the caption store of the external-pretraining row (left out without one), refused
    when it overlaps the target's val/test videos unless ``allow_overlap`` (``check_pretrain_store``);
    ``text_sets``: label-text sets of the store, every chosen variant trained once with each."""
    from cavnet.extract.device import resolve_device
    from cavnet.extract.store.reader import FeatureStore
    from cavnet.fuse.run.fusion import fusion_config_for

    resolve_device(tcfg.device)  # every run's device exists here, and the shared model settings are sound,
    with FeatureStore(store) as s:  # before the folder is touched
        fusion_config_for(s, dict(base or {}))
    chosen = list(PRESETS[preset])
    if only:
        unknown = sorted(set(only) - {v.key for v in chosen})
        if unknown:
            raise CavnetError(f"unknown variant(s) {', '.join(unknown)}; preset {preset} has "
                              + ", ".join(v.key for v in chosen))
        chosen = [v for v in chosen if v.key in only]
    if text_sets:
        from cavnet.extract.store.reader import FeatureStore

        with FeatureStore(store) as s:
            chosen = per_text_set(chosen, text_sets, s.text_sets(), store)
    if pretrain_store is not None and not allow_overlap and any(v.external for v in chosen):
        from cavnet.pipelines.fuse_train import check_pretrain_store

        check_pretrain_store(store, pretrain_store, tcfg.val_split)
    from cavnet.fuse.run.folder import hold_run_folder

    key = ablate_key(store, tcfg, base, pretrain_store)
    with hold_run_folder(out, what="ablate folder", command="ablate", key=key,
                         inputs=[store] + ([pretrain_store] if pretrain_store else [])):
        return _ablate(store, out, chosen, seeds, tcfg, workers, echo, base, preset, pretrain_store)


def _ablate(store: Path, out: Path, chosen: list[Variant], seeds: int, tcfg: TrainConfig, workers: int,
            echo: Callable[[str], None], base: dict[str, Any] | None, preset: str,
            pretrain_store: Path | None) -> list[dict[str, Any]]:
    variants = [v for v in chosen if not v.pretrain or has_video_texts(store)]
    if len(variants) < len(chosen):
        echo("the store has no per-video texts: 'CAV-Net + pretrain' is left out")
    if pretrain_store is None and any(v.external for v in variants):
        echo("no --pretrain-store: 'CAV-Net + external caption pretraining' is left out")
        variants = [v for v in variants if not v.external]
    if any(v.kind == "zero-shot" for v in variants) and (note := zero_shot_note(store)):
        echo(note)
        variants = [v for v in variants if v.kind != "zero-shot"]
    if any(v.train.get("text_encoder_lr") for v in variants) and (note := tower_note(store)):
        echo(note)
        variants = [v for v in variants if not v.train.get("text_encoder_lr")]
    from cavnet.extract.store.reader import FeatureStore
    from cavnet.fuse.run.folder import now, run_record, write_run_record

    with FeatureStore(store) as s:
        record = {**run_record(s), "preset": preset, "seeds": seeds, "variants": [v.key for v in variants]}
    write_run_record(out, record)
    jobs, results = [], []
    for v in variants:
        for s in range(seeds if v.kind == "fusion" else 1):  # the frozen-encoder rows do not depend on a seed
            run_dir = out / "runs" / v.key / f"seed{s}"
            done = done_result(run_dir / "result.json")
            if done is not None:
                results.append(done)
            else:
                jobs.append((str(store), str(run_dir), v, replace(tcfg, seed=tcfg.seed + s), dict(base or {}),
                             str(pretrain_store) if pretrain_store else None))
    echo(f"ablate: {len(variants)} variants x {seeds} seeds; {len(jobs)} to run, {len(results)} done before")
    if jobs:  # the dearest runs first, so that the cheap ones fill the workers at the end
        results += _run_jobs(sorted(jobs, key=lambda job: -run_cost(job[2])), workers, echo)
    rows = summarise(variants, results)
    write_results(out, rows)
    write_run_record(out, {**record, "ended": now()})
    return rows


def ablate_key(store: Path, tcfg: TrainConfig, base: dict[str, Any] | None,
               pretrain_store: Path | None) -> dict[str, Any]:
    """What an ablate folder's runs are runs of: the store's (and pretrain store's) content fingerprint, the
    training settings that change the numbers (not the device or logging) and the shared model settings.
    A folder holding other runs is refused, so their numbers are never reported as these."""
    from cavnet.extract.store.reader import FeatureStore
    from cavnet.fuse.run.fusion import FusionRun

    def fingerprint(path: Path) -> str:
        with FeatureStore(path) as s:
            return s.fingerprint()

    train = {k: v for k, v in asdict(tcfg).items() if k not in FusionRun.resume_free}
    return {"store": fingerprint(store), "train": train, "model": dict(sorted((base or {}).items())),
            "pretrain_store": fingerprint(pretrain_store) if pretrain_store else None}


def done_result(path: Path) -> dict[str, Any] | None:
    """A run's finished ``result.json``; None when it is absent or torn (a kill while it was written: the run
    is done again)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and "variant" in data else None


def tower_note(store_path: Path) -> str | None:
    """The line leaving out the fine-tuned-sentence-encoder row of a store whose text model is a text tower."""
    from cavnet.extract.store.reader import FeatureStore
    from cavnet.extract.backbones.hf.text import tower_kind

    with FeatureStore(store_path) as s:
        if tower_kind(s.config.text_model):
            return (f"the store's text model is {s.config.text_model.split(':')[0].upper()}'s text tower: "
                    "'CAV-Net + fine-tuned sentence encoder' is left out")
    return None


def per_text_set(variants: list[Variant], sets: tuple[str, ...], have: list[str], store: Path) -> list[Variant]:
    """Each variant once per label-text set (``have``: the sets of ``store``): key ``KEY@SET``, its label
    naming the set, the set its training's ``text_set``. A set the store lacks is refused in one line, and so
    is a fine-tuned sentence encoder on a set other than ``default`` (it tunes the default prompts)."""
    missing = [t for t in sets if t not in have]
    if missing:
        raise CavnetError(f"{store} has no text set {missing[0]!r}; it has {', '.join(have)} (cavnet text --add-set)")
    tuned = [v.key for v in variants if v.train.get("text_encoder_lr") and any(t != "default" for t in sets)]
    if tuned:
        raise CavnetError(f"variant {tuned[0]} tunes the sentence encoder on the default prompts: leave it out "
                          "of --text-sets other than default")
    return [replace(v, key=f"{v.key}@{t}", label=f"{v.label}, label texts '{t}'", train={**v.train, "text_set": t})
            for v in variants for t in sets]


def _run_jobs(jobs: list[tuple], workers: int, echo: Callable[[str], None]) -> list[dict[str, Any]]:
    if workers <= 1:
        return [_run_one(*job) for job in jobs]
    import dask
    from distributed import Client, LocalCluster, as_completed

    threads = str(max(1, (os.cpu_count() or 1) // workers))
    dask.config.set({"distributed.worker.daemon": False, "distributed.worker.profile.enabled": False})
    out = []
    with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None,
                      silence_logs=50, env={"CAVNET_TORCH_THREADS": threads}) as cluster, Client(cluster) as client:
        futures = [client.submit(_run_one, *job, pure=False) for job in jobs]
        for fut in as_completed(futures):
            r = fut.result()
            echo(f"  {r['variant']:<16} seed {r['seed']}: top-1 {r['top1']:.1f}")
            out.append(r)
    return out


def run_cost(variant: Variant) -> int:
    """A rough relative cost of one run of ``variant``: streams x attention blocks per stream, doubled by a
    pretraining stage, x10 when the sentence encoder trains too (only the order of runs depends on it)."""
    if variant.kind != "fusion":
        return 0
    o = variant.overrides
    streams = len(o.get("modalities", "av"))
    blocks = 1 if o.get("fusion") == "late" else (
        1 + bool(o.get("self_attn", True)) + (streams == 2 and bool(o.get("cross_attn", True))))
    return (streams * blocks * (2 if variant.pretrain or variant.external else 1)
            * (10 if variant.train.get("text_encoder_lr") else 1))


def summarise(variants: list[Variant], results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    rows = []
    for v in variants:
        mine = [r for r in results if r["variant"] == v.key]
        row: dict[str, Any] = {"variant": v.key, "label": v.label, "group": v.group, "seeds": len(mine)}
        for m in METRICS + MODALITY:
            vals = [r.get(m, math.nan) for r in mine]
            mean = sum(vals) / len(vals) if vals else math.nan
            std = math.sqrt(sum((x - mean) ** 2 for x in vals) / (len(vals) - 1)) if len(vals) > 1 else 0.0
            row[f"{m}_mean"], row[f"{m}_std"] = mean, std
        rows.append(row)
    return rows


def write_results(out: Path, rows: list[dict[str, Any]]) -> None:
    from cavnet.pipelines.plots import plot_results

    if not rows:
        raise CavnetError("no results to write")
    out.mkdir(parents=True, exist_ok=True)
    with atomic(out / "results.csv", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    write_text(out / "results.md", results_table(rows))
    plot_results([r["label"] for r in rows], [r["top1_mean"] for r in rows], [r["top1_std"] for r in rows],
                 out / "results.png")


def results_table(rows: list[dict[str, Any]], protocol: str = "") -> str:
    """The markdown table: fused top-1/top-5/mean class, then the same checkpoint's visual-only (audio
    masked) and audio-only (visual masked) top-1 and its modality confusion (V→AV, A→AV: % of the videos one
    modality alone gets right that the fused model gets wrong); ``protocol``: a line stating it, above."""
    lines = ([f"Protocol: {protocol}", ""] if protocol else []) + [
        "| Method | Top-1 (%) | Top-5 (%) | Mean class (%) | Visual only (%) | Audio only (%) | Confusion V→AV (%) "
        "| Confusion A→AV (%) | Seeds |", "|---|---|---|---|---|---|---|---|---|"]
    group = None
    for r in rows:
        if r["group"] != group:
            group = r["group"]
            lines.append(f"| *{group}* | | | | | | | | |")
        cells = [_cell(r, m) for m in METRICS + MODALITY]
        lines.append(f"| {r['label']} | " + " | ".join(cells) + f" | {r['seeds']} |")
    return "\n".join(lines) + "\n"


def _cell(row: dict[str, Any], metric: str) -> str:
    mean, std = row.get(f"{metric}_mean", math.nan), row.get(f"{metric}_std", 0.0)
    return "–" if mean is None or math.isnan(mean) else f"{mean:.1f} ± {std:.1f}"
