"""End to end through the real CLI: AV-Synth -> extract with r2plus1d_18 + VGGish weight files -> a store whose
config names both weights and the torchvision preprocessing -> check (no random-weights line) -> fuse-train."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import h5py
import pytest
import torch
from torchvision.models import video as tv

from cavnet.extract.backbones.audio_cnn import VGGish
from cavnet.extract.backbones.checkpoint_file import file_sha256


def cavnet(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "CAVNET_LAYOUT": "contiguous"}  # one layout, none timed (also set by conftest)
    return subprocess.run([sys.executable, "-m", "cavnet.cli", *args], capture_output=True, text=True,
                          timeout=900, env=env)


@pytest.mark.slow
def test_extract_with_weight_files_then_fuse_train(tmp_path: Path) -> None:
    corpus, store, run = tmp_path / "av-synth", tmp_path / "s.h5", tmp_path / "run"
    r = cavnet("synth", str(corpus), "--videos", "12", "--classes", "4", "--workers", "1")
    assert r.returncode == 0, r.stderr
    torch.manual_seed(0)
    w1, w2 = tmp_path / "r2plus1d_18-weights.pth", tmp_path / "vggish-10086976.pth"
    torch.save(tv.r2plus1d_18(weights=None).state_dict(), w1)  # torchvision's format, fc included
    torch.save(VGGish().state_dict(), w2, _use_new_zipfile_serialization=False)  # torchvggish's format
    r = cavnet("extract", "--dataset", "k400", "--root", str(corpus), "--visual", "r2plus1d_18", "--audio", "vggish",
               "--visual-weights", str(w1), "--audio-weights", str(w2), "--clips", "1", "--segments", "2",
               "--workers", "1", "--batch-clips", "2", "--device", "cpu", "--out", str(store), "--no-progress")
    assert r.returncode == 0, r.stderr[-3000:]
    assert "random weights" not in r.stderr + r.stdout
    with h5py.File(store, "r") as f:
        config, dims = json.loads(f.attrs["config"]), json.loads(f.attrs["dims"])
    assert (config["visual_weights_name"], config["audio_weights_name"]) == (f"file {w1.name}", f"file {w2.name}")
    assert (config["visual_weights_sha256"], config["audio_weights_sha256"]) == (file_sha256(w1), file_sha256(w2))
    s = config["sampling"]
    assert (s["frames"], s["size"], s["resize"], s["clips"]) == (16, 112, [128, 171], 1)
    assert abs(s["mean"][0] - 0.43216 * 255) < 1e-6 and abs(s["std"][2] - 0.216989 * 255) < 1e-6
    assert (dims["visual_dim"], dims["audio_dim"]) == (512, 128)
    r = cavnet("check", str(store))
    assert r.returncode == 0 and "random weights" not in r.stdout, r.stdout
    r = cavnet("fuse-train", "--store", str(store), "--out", str(run), "--epochs", "2", "--batch-size", "4",
               "--d-model", "16", "--device", "cpu", "--no-progress")
    assert r.returncode == 0, r.stderr[-3000:]
    assert "random weights" not in r.stdout and len((run / "metrics.jsonl").read_text().splitlines()) == 2
