"""`cavnet bench` and the speed work behind it: the report's shape (never timing thresholds), the GPU check
script's CPU smoke mode, and that the fast paths give the same numbers as the plain ones."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from cavnet.extract.media import decode as decode_mod
from cavnet.extract.config import ClipSampling, ExtractConfig, LogMel
from cavnet.extract import runtime
from cavnet.bench.run import checks
from cavnet.bench.corpus import CorpusSpec, _encode
from cavnet.bench.timing import LOCAL, for_at_least, interleaved, rates, summary
from cavnet.extract.embed import BatchEmbedder, DecodedItem

REPO = Path(__file__).resolve().parents[1]


def _numbers(node, path=""):
    """Every number in a nested report, with its path."""
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _numbers(v, f"{path}/{k}")
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _numbers(v, f"{path}[{i}]")
    elif isinstance(node, (int, float)) and not isinstance(node, bool):
        yield path, node


@pytest.mark.slow
def test_gpu_check_script_cpu_smoke(tmp_path):
    """The one-call check script runs the whole bench on CPU and leaves a complete report under $OUT."""
    # The script's own budget (285 s, sized for one GPU call) is the caller's to set: on a busy 2-core machine
    # the CPU smoke can take several times longer, and the test waits for the script to end, not for a clock.
    env = {**os.environ, "OUT": str(tmp_path / "out"), "PYTHON": sys.executable, "TMPDIR": str(tmp_path),
           "CAVNET_CHECK_TIMEOUT": "3000", "CAVNET_NVDEC_TIMEOUT": "3000",
           "CAVNET_ENCODER_CHECK": "0"}  # the full-size CLIP + AST part is for GPUs
    env.pop("CAVNET_LAYOUT", None)  # the bench times both layouts, as on a user's machine
    proc = subprocess.run(["bash", str(REPO / "bench" / "gpu_check.sh"), "--device", "cpu", "--small",
                           "--videos", "2", "--repeats", "1", "--size", "320x180"],  # both runs: small frames
                          env=env, capture_output=True, text=True, timeout=3300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    out = tmp_path / "out"
    report = json.loads((out / "bench.json").read_text())
    for section in ("decode", "backbone", "extract", "store"):
        assert section in report, section
    figures = {
        "decode cavnet": report["decode"]["cavnet"]["videos_per_s"]["median"],
        "decode reference": report["decode"]["pyav-plain"]["videos_per_s"]["median"],
        "decode only": report["decode"]["pyav-decode-only"]["frames_per_s"],
        "decode torchcodec": report["decode"]["torchcodec"]["videos_per_s"]["median"],
        "decode prepared": report["decode"]["prepared"]["videos_per_s"]["median"],
        "visual": report["backbone"]["visual"]["fastest_per_s"],
        "audio": report["backbone"]["audio"]["fastest_per_s"],
        "backbone path": report["backbone"]["pipeline"]["videos_per_s"]["median"],
        "extract": report["extract"]["steady"]["videos_per_s"]["median"],
        "expected": report["extract"]["expected_videos_per_s"],
        "read memory": report["store"]["read_memory_batches_per_s"]["median"],
        "read store": report["store"]["read_store_batches_per_s"]["median"],
        "train memory": report["store"]["train_memory_videos_per_s"]["median"],
        "train store": report["store"]["train_store_videos_per_s"]["median"],
        "help": report["help_s"],
    }
    for name, value in figures.items():
        assert math.isfinite(value) and value > 0, (name, value)
    for path, value in _numbers({k: report[k] for k in ("decode", "backbone", "extract", "store")}):
        assert math.isfinite(value) and value >= 0, (path, value)
    assert set(report["checks"]) >= {"decode cavnet/pyav-plain", "decode cavnet/torchcodec", "decode prepared/cavnet",
                                      "extract steady/expected", "fuse-train store/memory"}
    assert report["decode"]["prepare"]["files"] == 2 and report["decode"]["left_out"] == {}
    hd = json.loads((out / "bench-720p.json").read_text())  # the second run (decode only; 1280x720 unless told)
    assert hd["settings"]["corpus"]["size"] == [320, 180] and {"cavnet", "torchcodec", "prepared"} <= set(hd["decode"])
    assert report["machine"]["cores"] >= 1 and report["versions"]["torch"]
    table = (out / "bench.txt").read_text()
    assert "decode (" in table and "extract end to end" in table and "checks" in table


def test_the_decode_checks_compare_cavnet_with_torchcodec_and_the_prepared_corpus():
    from cavnet.bench.table import _decode

    med = lambda v: {"videos_per_s": {"median": v}, "frames_per_s": 30 * v}  # noqa: E731
    decode = {"processes": 2, "ffmpeg_threads": 1, "ffmpeg_cli": "not installed", "reference": "pyav-plain",
              "cavnet": med(4.0), "pyav-plain": med(3.0), "torchcodec": med(2.0), "prepared": med(6.0),
              "ratios": {"cavnet/pyav-plain": 4 / 3, "cavnet/torchcodec": 2.0, "cavnet/prepared": 4 / 6},
              "left_out": {"torchcodec-nvdec": "the corpus (340x256) is below the NVDEC threshold"},
              "prepare": {"short_side": 128, "files": 16, "workers": 2, "seconds": 8.0, "files_per_s": 2.0,
                          "src_bytes": 5e6, "bytes": 4e6}}
    report = {"settings": {"device": "cpu"}, "help_s": 0.1, "decode": decode}
    got = checks(report)
    assert got["decode cavnet/torchcodec"] == {"value": 2.0, "target": 1.0, "met": True}
    assert got["decode prepared/cavnet"]["value"] == pytest.approx(1.5) and got["decode prepared/cavnet"]["met"]
    lines = "\n".join(_decode(decode))
    assert "torchcodec-nvdec    left out: the corpus (340x256)" in lines and "--short-side 128 on 2 workers" in lines


def test_rates_span_all_ranks_and_interleave():
    # two ranks, two repeats: items over (latest end - earliest start)
    per_rank = [[(0.0, 1.0, 10.0), (5.0, 6.0, 10.0)], [(0.5, 2.0, 10.0), (5.0, 7.0, 30.0)]]
    assert rates(per_rank) == [10.0, 20.0]
    s = summary([3.0, 1.0, 2.0, math.nan])
    assert (s["median"], s["min"], s["max"]) == (2.0, 1.0, 3.0)
    calls = []
    works = {name: (lambda name=name: calls.append(name) or 1.0) for name in "abc"}
    spans = interleaved(works, LOCAL, repeats=3)
    assert calls == list("abcbcacab") and all(len(v) == 3 for v in spans.values())
    assert for_at_least(0.0, lambda: 2.0)() == 2.0


def test_reduced_precision_needs_a_clear_margin(monkeypatch):
    assert runtime.best_mode({"fp32/contiguous": 100, "fp32/channels_last": 120, "bf16/channels_last": 125}) \
        == runtime.RunMode("fp32", "channels_last")
    assert runtime.best_mode({"fp32/contiguous": 100, "bf16/channels_last": 150}).precision == "bf16"
    monkeypatch.delenv("CAVNET_PRECISION", raising=False)
    cpu = torch.device("cpu")
    assert {m.precision for m in runtime.candidate_modes(cpu)} == {"fp32"}
    assert {m.precision for m in runtime.candidate_modes(cpu, "auto")} == {"fp32", "bf16"}
    monkeypatch.setenv("CAVNET_LAYOUT", "contiguous")
    assert [m.layout for m in runtime.candidate_modes(cpu)] == ["contiguous"]


def test_expected_extract_rate_depends_on_the_device():
    def report(device):
        return {"settings": {"device": device}, "help_s": 0.1,
                "decode": {"cavnet": {"videos_per_s": {"median": 4.0}}, "pyav-plain": {"videos_per_s": {"median": 4.0}},
                           "cavnet+logmel": {"videos_per_s": {"median": 4.0}}},
                "backbone": {"pipeline": {"videos_per_s": {"median": 12.0}}},
                "extract": {"steady": {"videos_per_s": {"median": 3.0}}}}

    cpu, cuda = report("cpu"), report("cuda")
    assert checks(cpu)["extract steady/expected"]["value"] == pytest.approx(1.0)  # 1 / (1/4 + 1/12) = 3
    assert checks(cuda)["extract steady/expected"]["value"] == pytest.approx(0.75)  # min(4, 12) = 4
    assert checks(cpu)["fuse-train store/memory"]["met"] is None  # not measured


def test_embedder_batches_across_videos_like_one_at_a_time():
    torch.manual_seed(0)
    cfg = ExtractConfig(visual="resnext3d-tiny", audio="audio-cnn-tiny",
                        sampling=ClipSampling(clips=3, frames=8, short_side=32, size=32))
    embedder = BatchEmbedder(cfg, "cpu", batch_clips=2)  # videos split across batches, several per call
    rng = np.random.default_rng(0)
    items = []
    for k, m in ((3, 2), (0, 0), (1, 3), (3, 0), (2, 1)):
        clips = rng.integers(0, 255, (k, 8, 32, 32, 3), dtype=np.uint8)
        items.append(DecodedItem("ok", "", 1.0, 25.0, clips, rng.normal(size=(m, 1, 96, 64)).astype(np.float32)))
    got = {}
    for i, item in enumerate(items):
        got.update(embedder.add(i, item))
    got.update(embedder.flush())
    assert sorted(got) == list(range(len(items)))
    mean = torch.tensor(cfg.sampling.mean).view(1, 3, 1, 1, 1)
    with torch.inference_mode():
        for i, item in enumerate(items):
            assert got[i].visual.shape == (len(item.clips), embedder.visual_dim)
            assert got[i].audio.shape == (len(item.examples), embedder.audio_dim)
            if len(item.clips):
                x = torch.from_numpy(item.clips).permute(0, 4, 1, 2, 3).float() - mean
                np.testing.assert_allclose(got[i].visual, embedder.visual(x.contiguous()).numpy(), rtol=1e-4, atol=1e-4)
            if len(item.examples):
                ref = embedder.audio(torch.from_numpy(item.examples).contiguous()).numpy()
                np.testing.assert_allclose(got[i].audio, ref, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("threads", [1, 2])
def test_skipping_frames_between_clips_changes_nothing(tmp_path, monkeypatch, threads):
    """A B-frame file: dropping unreferenced frames between clips gives the same clips, audio, duration
    and status as decoding every frame."""
    path = str(tmp_path / "b.mp4")
    _encode((CorpusSpec(videos=1, seconds=4.0, size=(96, 64)), 0, path))
    sampling = ClipSampling(clips=4, frames=8, short_side=32, size=32)
    dropped, real = [], decode_mod._GapSkipper.dropped
    monkeypatch.setattr(decode_mod._GapSkipper, "dropped", lambda self: dropped.append(real(self)) or dropped[-1])
    fast = decode_mod.decode_video(path, sampling, LogMel(), 4, threads)
    assert dropped and dropped[0] > 0, "no frame was dropped between clips"
    sent = []
    monkeypatch.setattr(decode_mod._GapSkipper, "before", lambda self, packet: sent.append(packet.pts))
    plain = decode_mod.decode_video(path, sampling, LogMel(), 4, threads)
    assert sent, "the skipper was not consulted"
    assert (fast.status, fast.error) == (plain.status, plain.error) == ("ok", "")
    assert fast.duration == plain.duration and fast.fps == plain.fps
    np.testing.assert_array_equal(fast.clips, plain.clips)
    np.testing.assert_array_equal(fast.clip_times, plain.clip_times)
    np.testing.assert_array_equal(fast.audio, plain.audio)
