"""Every numeric option of every command is finite and in range, and every device exists: a bad value is
one line ``cavnet: error: ...``, exit code 2, no traceback, and nothing is written (the rule lives in the
configs' ``__post_init__``, ``configs.check_int`` / ``check_number`` / ``check_seed`` / ``check_device``, and
in ``extract.device.resolve_device``; docs/reliability.md, "Options")."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from cavnet.cli import main
from store_factory import make_store

HUGE = str(2**64)


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, str]:
    """A tiny store, a checkpoint trained on it, a Kinetics-style root whose one video is missing, a file."""
    work = tmp_path_factory.mktemp("bounds")
    make_store(work / "s.h5", videos=24)
    r = CliRunner().invoke(main, ["fuse-train", "--store", str(work / "s.h5"), "--out", str(work / "run"),
                                  "--epochs", "1", "--batch-size", "8", "--d-model", "16", "--device", "cpu",
                                  "--no-progress"])
    assert r.exit_code == 0, r.output
    root = work / "k400"
    root.mkdir()
    (root / "train.csv").write_text("label,youtube_id,time_start,time_end,split\nwaving,abc,0,10,train\n")
    (work / "v.mp4").write_bytes(b"\0" * 64)
    return {"store": str(work / "s.h5"), "ckpt": str(work / "run" / "last.pt"), "root": str(root),
            "video": str(work / "v.mp4")}


FUSE = ["fuse-train", "--store", "{store}", "--out", "{out}", "--epochs", "1"]
FINETUNE = ["finetune", "--init", "{ckpt}", "--out", "{out}", "--root", "{root}"]
EVALUATE = ["evaluate", "--checkpoint", "{ckpt}", "--store", "{store}", "--out", "{out}"]
PREDICT = ["predict", "{video}", "--checkpoint", "{ckpt}", "--csv", "{out}/p.csv"]
EXTRACT = ["extract", "--dataset", "k400", "--root", "{root}", "--out", "{out}/s.h5"]
PROBE = ["probe", "--dataset", "k400", "--root", "{root}", "--out", "{out}/m.csv"]
PREPARE = ["prepare", "--dataset", "k400", "--root", "{root}", "--out", "{out}"]
ABLATE = ["ablate", "--store", "{store}", "--out", "{out}", "--epochs", "1", "--seeds", "1"]
DEMO = ["demo", "--out", "{out}"]
SYNTH = ["synth", "{out}"]
BENCH = ["bench", "--json", "{out}/b.json"]
TEXT = ["text", "--store", "{store}", "--add-set", "clip-kinetics"]

DEVICES = ["meta", "mps", "cuda:7", "garbage", "cuda:x", ""]
CASES = (
    [(FUSE, [opt, v]) for opt, v in [("--seed", HUGE), ("--seed", "-1"), ("--lr", "inf"), ("--lr", "nan"),
                                      ("--lr", "-1e-3"), ("--lr", "1e6"), ("--epochs", "1000000000"),
                                      ("--batch-size", "1000000000"), ("--d-model", "10000000"),
                                      ("--d-model", "65536"), ("--warmup-epochs", "inf"),
                                      ("--weight-decay", "nan"), ("--text-encoder-lr", "inf"),
                                      ("--dropout", "nan"), ("--eval-every", HUGE)]]
    + [(FUSE, ["--device", d]) for d in DEVICES]
    + [(FINETUNE, [opt, v]) for opt, v in [("--lr", "inf"), ("--seed", HUGE), ("--backbone-lr", "nan"),
                                            ("--decode-workers", "1000000"), ("--max-steps", HUGE),
                                            ("--warmup-epochs", "nan")]]
    + [(FINETUNE, ["--device", d]) for d in ("meta", "mps", "cuda:7")]
    + [(EVALUATE, [opt, v]) for opt, v in [("--device", "meta"), ("--device", "cuda:7"), ("--device", "mps"),
                                            ("--batch-size", "1000000000"), ("--top-k", "0"),
                                            ("--decode-workers", "1000000")]]
    + [(PREDICT, [opt, v]) for opt, v in [("--device", "mps"), ("--device", "cuda:7"), ("--device", "meta"),
                                           ("--top-k", "1000000000"), ("--batch-size", "0")]]
    + [(EXTRACT, [opt, v]) for opt, v in [("--device", "meta"), ("--clips", "1000000"),
                                           ("--workers", "1000000"), ("--batch-clips", "1000000000"),
                                           ("--audio-window", "inf"), ("--audio-window", "nan"),
                                           ("--segments", "1000000"), ("--shard-size", HUGE)]]
    + [(PROBE, [opt, v]) for opt, v in [("--shard-size", "1000000000"), ("--workers", "100000")]]
    + [(PREPARE, [opt, v]) for opt, v in [("--keyframe-seconds", "inf"), ("--keyframe-seconds", "nan"),
                                           ("--short-side", "1000000"), ("--audio-bitrate", "1000000000000")]]
    + [(BENCH, [opt, v]) for opt, v in [("--seconds", "inf"), ("--seconds", "nan"), ("--videos", "1000000000"),
                                         ("--device", "meta"), ("--repeats", "0"), ("--workers", "100000")]]
    + [(ABLATE, [opt, v]) for opt, v in [("--lr", "inf"), ("--seed", HUGE), ("--device", "meta"),
                                          ("--device", "cuda:7"), ("--d-model", "10000000"),
                                          ("--seeds", "1000000"), ("--workers", "1000000")]]
    + [(DEMO, [opt, v]) for opt, v in [("--lr", "inf"), ("--lr", "nan"), ("--epochs", "1000000000"),
                                        ("--videos", "1000000000"), ("--seeds", "1000000")]]
    + [(SYNTH, [opt, v]) for opt, v in [("--seed", HUGE), ("--seed", "-1"), ("--videos", "1000000000"),
                                         ("--workers", "1000000")]]
    + [(TEXT, ["--device", d]) for d in ("meta", "mps", "garbage")]
)


@pytest.mark.parametrize("command, bad", CASES, ids=[f"{c[0]} {' '.join(b)}" for c, b in CASES])
def test_bad_option_is_one_line_exit_2_and_writes_nothing(files, tmp_path, command, bad):
    out = tmp_path / "out"
    before = sorted(p.name for p in tmp_path.iterdir())
    r = CliRunner().invoke(main, [a.format(out=out, **files) for a in command] + bad)
    assert r.exit_code == 2, (r.output, r.exception)
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("cavnet: error:"), r.stderr
    assert "Traceback" not in r.output
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == before


def _configs():
    from cavnet.bench.run import BenchConfig
    from cavnet.extract.config import AudioSampling, ClipSampling, EncoderConfig, PrepareConfig
    from cavnet.finetune.config import FinetuneConfig
    from cavnet.fuse.config import FusionConfig
    from cavnet.fuse.train_config import TrainConfig
    from cavnet.pipelines.demo.config import DemoConfig
    from cavnet.pipelines.extract.options import RunOptions
    from cavnet.pipelines.options import EvaluateOptions, PredictOptions

    inf, nan = float("inf"), float("nan")
    return [(TrainConfig, {"lr": inf}), (TrainConfig, {"lr": nan}), (TrainConfig, {"seed": 2**64}),
            (TrainConfig, {"warmup_epochs": inf}), (TrainConfig, {"device": "meta"}),
            (TrainConfig, {"epochs": True}), (FinetuneConfig, {"init": "x", "backbone_lr": nan}),
            (FinetuneConfig, {"init": "x", "device": "mps"}), (EvaluateOptions, {"device": "cuda:x"}),
            (PredictOptions, {"batch_size": 2**40}), (RunOptions, {"workers": 10**6}), (RunOptions, {"limit": 0}),
            (BenchConfig, {"seconds": inf}), (BenchConfig, {"device": "cuda:0"}), (DemoConfig, {"lr": nan}),
            (FusionConfig, {"visual_dim": 8, "audio_dim": 8, "d_model": 10**7}),
            (FusionConfig, {"visual_dim": 8, "audio_dim": 8, "d_model": 65536, "heads": 4}),
            (FusionConfig, {"visual_dim": 8, "audio_dim": 8, "mlp_ratio": inf}),
            (FusionConfig, {"visual_dim": 8, "audio_dim": 8, "d_model": 30, "heads": 4}),
            (AudioSampling, {"segments": 10**6}), (ClipSampling, {"clips": 10**6}),
            (EncoderConfig, {"audio_window": nan}), (PrepareConfig, {"keyframe_seconds": inf})]


@pytest.mark.parametrize("index", range(len(_configs())))
def test_the_python_api_is_checked_by_the_same_rule(index):
    from cavnet.errors import CavnetError

    cls, fields = _configs()[index]
    with pytest.raises(CavnetError):
        cls(**fields)


@pytest.mark.parametrize("device", ["meta", "mps", "cuda:7", "cuda:-1", "xla", "cpu:0", ""])
def test_resolve_device_refuses_what_this_machine_lacks(device):
    import torch

    from cavnet.errors import CavnetError
    from cavnet.extract.device import resolve_device

    if device == "cuda:7" and torch.cuda.device_count() > 7:
        pytest.skip("this machine has a cuda:7")
    with pytest.raises(CavnetError, match="--device"):
        resolve_device(device)
