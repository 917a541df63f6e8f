"""Every command refuses invalid options the same way: one line ``cavnet: error: ...``, exit code 2, no
traceback, and before any work starts (no Dask cluster, no training)."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from cavnet.cli import main
from store_factory import make_store


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, str]:
    """A tiny store, a Kinetics-style root whose one video is missing, and a file that is no checkpoint."""
    work = tmp_path_factory.mktemp("invalid")
    make_store(work / "s.h5", videos=24)
    root = work / "k400"
    root.mkdir()
    (root / "train.csv").write_text("label,youtube_id,time_start,time_end,split\nwaving,abc,0,10,train\n")
    (work / "not.pt").write_text("not a checkpoint")
    return {"store": str(work / "s.h5"), "root": str(root), "bad_ckpt": str(work / "not.pt"), "out": str(work / "o")}


EXTRACT = ["extract", "--dataset", "k400", "--root", "{root}", "--out", "{out}/s.h5"]
FUSE = ["fuse-train", "--store", "{store}", "--out", "{out}/r"]
FINETUNE = ["finetune", "--init", "{bad_ckpt}", "--out", "{out}/ft", "--root", "{root}"]

CASES = [
    # (arguments, a piece of the one-line message)
    (FUSE + ["--d-model", "10"], "divisible by heads"),
    (FUSE + ["--epochs", "0"], "--epochs"),
    (FUSE + ["--batch-size", "1"], "--batch-size"),
    (FUSE + ["--lr", "0"], "--lr"),
    (FUSE + ["--lr", "-1e-3"], "--lr"),
    (FUSE + ["--weight-decay", "-1"], "--weight-decay"),
    (FUSE + ["--warmup-epochs", "-1"], "--warmup-epochs"),
    (FUSE + ["--dropout", "1.5"], "dropout"),
    (FUSE + ["--device", "tpu"], "--device tpu"),
    (FUSE + ["--modalities", "x"], "--modalities"),
    (FUSE + ["--epochs", "many"], "--epochs"),
    (EXTRACT + ["--clips", "0"], "clips"),
    (EXTRACT + ["--segments", "0"], "segments"),
    (EXTRACT + ["--shard-size", "0"], "--shard-size"),
    (EXTRACT + ["--workers", "0"], "--workers"),
    (EXTRACT + ["--batch-clips", "0"], "--batch-clips"),
    (EXTRACT + ["--precision", "int8"], "--precision"),
    (EXTRACT + ["--visual", "no-such-net"], "no-such-net"),
    (EXTRACT + ["--visual", "vggish"], "must be a visual backbone"),
    (EXTRACT + ["--prompt", "a video"], "{label}"),
    (["probe", "--dataset", "k400", "--root", "{root}", "--shard-size", "0"], "--shard-size"),
    (["probe", "--dataset", "csv"], "--manifest"),
    (["evaluate", "--checkpoint", "{bad_ckpt}"], "--store"),
    (["evaluate", "--checkpoint", "{bad_ckpt}", "--store", "{store}", "--dataset", "k400"], "not both"),
    (["evaluate", "--checkpoint", "{bad_ckpt}", "--store", "{store}"], "not a cavnet checkpoint"),
    (FINETUNE + ["--epochs", "0"], "--epochs"),
    (FINETUNE + ["--batch-size", "1"], "--batch-size"),
    (FINETUNE + ["--backbone-lr", "-1"], "--backbone-lr"),
    (FINETUNE + ["--eval-every", "-1"], "--eval-every"),
    (FINETUNE + ["--freeze-until", "layer9"], "--freeze-until"),
    (FINETUNE, "not a cavnet checkpoint"),
    (["ablate", "--store", "{store}", "--out", "{out}/ab", "--variants", "nosuch"], "nosuch"),
    (["ablate", "--store", "{store}", "--out", "{out}/ab", "--epochs", "0"], "--epochs"),
    (["ablate", "--store", "{store}", "--out", "{out}/ab", "--seeds", "0"], "--seeds"),
    (["bench", "--sections", "nosuch"], "nosuch"),
    (["demo", "--videos", "3"], "--videos"),
    (["demo", "--lr", "0"], "--lr"),
    (["synth", "{out}/syn", "--videos", "2"], "--videos"),
    (["check", "{out}/no-such.h5"], "does not exist"),
]


@pytest.mark.parametrize("args, needle", CASES, ids=[" ".join(a[:1] + a[-2:]) for a, _ in CASES])
def test_invalid_invocation_is_one_line_and_exit_2(files, args, needle):
    r = CliRunner().invoke(main, [a.format(**files) for a in args])
    assert r.exit_code == 2, (r.output, r.exception)
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("cavnet: error:"), r.stderr
    assert needle in lines[0], lines[0]
    assert "Traceback" not in r.output and not Path(files["out"], "r", "last.pt").exists()
