"""ablate and demo through the real CLI: results files parse, reruns skip finished work."""

from __future__ import annotations

import csv
import json
import subprocess
import sys

import pytest

from cavnet.pipelines.ablate import summarise, PAPER
from cavnet.pipelines.demo.report import reading
from store_factory import make_store


def cavnet(*args: str, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cavnet.cli", *args], capture_output=True, text=True,
                          timeout=600, cwd=cwd)


@pytest.mark.slow
def test_tiny_ablation_end_to_end_and_rerun_skips(tmp_path):
    store = tmp_path / "s.h5"
    make_store(store, videos=60, classes=4)
    out = tmp_path / "abl"
    args = ["ablate", "--store", str(store), "--out", str(out), "--preset", "paper", "--variants",
            "visual-mean,cavnet", "--seeds", "1", "--epochs", "1", "--batch-size", "16", "--d-model", "16",
            "--workers", "1"]
    r = cavnet(*args)
    assert r.returncode == 0, r.stderr
    assert "2 to run, 0 done before" in r.stdout
    with open(out / "results.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert [x["variant"] for x in rows] == ["visual-mean", "cavnet"]
    assert all(0.0 <= float(x["top1_mean"]) <= 100.0 and x["seeds"] == "1" for x in rows)
    md = (out / "results.md").read_text()
    assert "| Visual only (clip average) |" in md and "| CAV-Net |" in md
    # the per-modality columns beside the fused figure: a visual-only row has no audio-only figure
    assert "Audio only (%)" in md and "Confusion V→AV (%)" in md
    assert float(rows[1]["visual_top1_mean"]) >= 0.0 and float(rows[1]["audio_confusion_mean"]) >= 0.0
    assert rows[0]["audio_top1_mean"] == "nan" and float(rows[0]["visual_top1_mean"]) == float(rows[0]["top1_mean"])
    assert (out / "results.png").stat().st_size > 1000
    done = json.loads((out / "runs" / "cavnet" / "seed0" / "result.json").read_text())
    assert done["epochs"] == 1
    r2 = cavnet(*args)
    assert r2.returncode == 0 and "0 to run, 2 done before" in r2.stdout, r2.stdout + r2.stderr
    r3 = cavnet(*args[:-6], "--variants", "bogus", "--workers", "1")
    assert r3.returncode == 2 and "unknown variant(s) bogus" in r3.stderr


def test_summary_statistics_and_reading():
    results = [{"variant": "cavnet", "seed": s, "top1": t, "top5": 100.0, "mean_class": t} for s, t in
               enumerate([90.0, 100.0])]
    results += [{"variant": "visual-mean", "seed": 0, "top1": 50.0, "top5": 90.0, "mean_class": 50.0}]
    rows = summarise([PAPER[1], PAPER[4]], results)
    cav = rows[1]
    assert cav["top1_mean"] == 95.0 and cav["top1_std"] == pytest.approx(7.0710678) and cav["seeds"] == 2
    assert rows[0]["top1_std"] == 0.0
    text = " ".join(reading(rows, classes=8))
    assert "+45.0 points over the best single-modality row" in text and "above chance (12.5%)" in text


@pytest.mark.slow
def test_demo_smoke_through_the_cli(tmp_path):
    out = tmp_path / "demo"
    r = cavnet("demo", "--out", str(out), "--videos", "24", "--seeds", "1", "--epochs", "2", "--no-progress")
    assert r.returncode == 0, r.stderr[-2000:]
    report = (out / "report.md").read_text()
    assert "| CAV-Net |" in report and "## Reading" in report
    assert "2 epochs at peak lr 0.001" in report  # the easy task's default learning rate
    assert (out / "features.h5").exists() and (out / "ablation" / "results.png").exists()
    r2 = cavnet("demo", "--out", str(out), "--videos", "24", "--seeds", "1", "--epochs", "2", "--no-progress")
    assert r2.returncode == 0 and "reusing the corpus" in r2.stdout and "already complete" not in r2.stderr
    assert "0 to run" in r2.stdout


def _rows(top1: dict[str, tuple[float, float]]) -> list[dict]:
    from cavnet.pipelines.ablate import PRESETS

    variants = [v for v in PRESETS["all"] if v.key in top1]
    results = [{"variant": k, "seed": s, "top1": m + d, "top5": 100.0, "mean_class": m + d}
               for k, (m, spread) in top1.items() for s, d in enumerate((-spread, spread))]
    return summarise(variants, results)


def test_hard_report_puts_each_row_beside_its_cap():
    from cavnet.extract.synth.caps import view_cap
    from cavnet.extract.synth.hard import hard_class_table
    from cavnet.pipelines.demo.hard import HARD_VARIANTS, caps_table, hard_reading, row_caps

    rows = _rows({"audio-only": (24.0, 1.0), "late-fusion": (46.0, 2.0), "cavnet": (94.0, 1.0),
                  "mean-pool": (93.0, 1.0), "no-cross-attn": (50.0, 3.0)})
    caps = row_caps()
    assert set(caps) <= set(HARD_VARIANTS)
    assert caps["late-fusion"] == pytest.approx(100 * view_cap(hard_class_table(), "pooled"))
    assert caps["cavnet"] == pytest.approx(100.0)
    table = caps_table(rows, caps)
    assert f"| Two-stream late fusion | 46.0 ± 2.8 | {caps['late-fusion']:.1f} |" in table
    assert "| CAV-Net without cross-attention | 50.0 ± 4.2 | - |" in table
    text = "\n".join(hard_reading(rows, caps))
    assert "Two-stream late fusion: 46.0%" in text and "+48.0 points top-1 (better beyond the spread" in text
    assert "with mean pooling (no gate): 93.0%" in text and "+1.0 points top-1, within the spread" in text


@pytest.mark.slow
def test_hard_demo_small_version(tmp_path):
    """The hard demo end to end on a tiny corpus: corpus, store, every hard row, report with caps."""
    from cavnet.pipelines.demo.config import DemoConfig
    from cavnet.pipelines.demo.run import run_demo
    from cavnet.pipelines.demo.hard import HARD_VARIANTS

    cfg = DemoConfig(task="hard", videos=24, seeds=1, epochs=1, d_model=16, batch_size=8, workers=1, clips=4,
                     segments=4, lr=3e-3)
    report = run_demo(tmp_path, cfg, echo=lambda _m: None, progress=False)
    assert report.name == "report-hard.md"
    text = report.read_text()
    assert "## Measured beside the caps" in text and "| CAV-Net |" in text and "## Reading" in text
    assert "1 seeds x 1 epochs at peak lr 0.003" in text
    run_config = json.loads((tmp_path / "ablation-hard" / "runs" / "cavnet" / "seed0" / "config.json").read_text())
    assert run_config["train"]["lr"] == 3e-3
    with open(tmp_path / "ablation-hard" / "results.csv") as fh:
        assert [r["variant"] for r in csv.DictReader(fh)] == list(HARD_VARIANTS)
    assert (tmp_path / "ablation-hard" / "results.png").exists()
    assert (tmp_path / "av-synth-hard" / "timelines.csv").exists()


def test_fidelity_rows_run_with_an_external_caption_store(tmp_path):
    from cavnet.fuse.train_config import TrainConfig
    from cavnet.pipelines.ablate import FIDELITY, run_ablate

    store, captions = tmp_path / "s.h5", tmp_path / "c.h5"
    make_store(store, videos=48, classes=4, text_dim=384)  # 384: the default sentence encoder's (text-encoder row)
    make_store(captions, videos=24, classes=6, captions=True, labelled=False, seed=3, text_dim=384, id_prefix="cap")
    tcfg = TrainConfig(epochs=1, batch_size=16, device="cpu")
    msgs = []
    rows = run_ablate(store, tmp_path / "a", "fidelity", 1, tcfg, 1, msgs.append, base={"d_model": 16, "heads": 2},
                      pretrain_store=captions)
    assert [r["variant"] for r in rows] == [v.key for v in FIDELITY]
    assert (tmp_path / "a" / "runs" / "external-pretrain" / "seed0" / "pretrain" / "last.pt").exists()
    lit = json.loads((tmp_path / "a" / "runs" / "paper-literal" / "seed0" / "config.json").read_text())["fusion"]
    assert lit["residual"] is False and lit["heads"] == 1 and lit["loss"] == "paper"  # the preset beats the base
    paper_loss = json.loads((tmp_path / "a" / "runs" / "paper-loss" / "seed0" / "config.json").read_text())["fusion"]
    assert paper_loss == {**json.loads((tmp_path / "a" / "runs" / "default" / "seed0" / "config.json").read_text())[
        "fusion"], "loss": "paper"}  # the default model, eq. 9's loss
    tuned = json.loads((tmp_path / "a" / "runs" / "text-encoder" / "seed0" / "config.json").read_text())["train"]
    assert tuned["text_encoder_lr"] == 1e-5 and (tmp_path / "a" / "runs" / "default" / "seed0" / "config.json").exists()
    from cavnet.errors import CavnetError

    with pytest.raises(CavnetError, match="no results"):  # without a caption store the row is left out
        run_ablate(store, tmp_path / "b", "fidelity", 1, tcfg, 1, msgs.append, only=("external-pretrain",))
    assert "no --pretrain-store: 'CAV-Net + external caption pretraining' is left out" in msgs
    old = tmp_path / "old.h5"  # a store from before stored texts: label targets need only its class prompts
    make_store(old, videos=48, classes=4, strings=False, text_dim=384)
    rows = run_ablate(old, tmp_path / "c", "fidelity", 1, tcfg, 1, msgs.append, base={"d_model": 16, "heads": 2},
                      only=("default", "text-encoder"))
    assert [r["variant"] for r in rows] == ["default", "text-encoder"]


def test_dearer_runs_are_started_first():
    """The ablation starts the runs with more attention blocks first (the cheap ones then fill the tail)."""
    from cavnet.pipelines.ablate import PRESETS, run_cost

    cost = {v.key: run_cost(v) for v in PRESETS["all"] + PRESETS["fidelity"]}
    assert cost["audio-only"] == cost["visual-mean"] < cost["cavnet-visual"] < cost["no-self-attn"] < cost["cavnet"]
    assert cost["late-fusion"] < cost["no-cross-attn"] < cost["mean-pool"] == cost["content-only"] == cost["cavnet"]
    assert cost["cavnet"] < cost["cavnet-pretrain"] == cost["external-pretrain"] < cost["text-encoder"]
