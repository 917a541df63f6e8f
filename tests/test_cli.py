"""The command line: instant help without torch, one-line errors with exit code 2."""

from __future__ import annotations

import subprocess
import sys

import pytest

COMMANDS = ["synth", "probe", "prepare", "extract", "check", "export", "fuse-train", "evaluate", "predict", "finetune",
            "ablate", "demo", "bench"]


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cavnet.cli", *args], capture_output=True, text=True, timeout=120)


def test_help_lists_every_command_and_does_not_import_torch():
    code = ("import sys; from click.testing import CliRunner; from cavnet.cli import main;"
            "r = CliRunner().invoke(main, ['--help']); print(r.output);"
            "print('HEAVY', sorted(m for m in ('torch', 'av', 'dask', 'h5py', 'numpy') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60).stdout
    for name in COMMANDS:
        assert f"  {name} " in out
    assert "HEAVY []" in out


def test_version_does_not_import_torch():
    code = ("import sys\nfrom cavnet.cli import main\ntry:\n    main(['--version'])\nexcept SystemExit:\n    pass\n"
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60).stdout
    assert "cavnet, version" in out and out.strip().endswith("False")


@pytest.mark.parametrize("args, needle", [
    (["extract", "--no-such-option"], "No such option"),
    (["fuse-train", "--store", "/no/such/store.h5", "--out", "x"], "does not exist"),
    (["evaluate", "--store", "/no/such.h5", "--checkpoint", "/no/such.pt"], "does not exist"),
    (["extract", "--dataset", "k400", "--root", "/no/such/root", "--out", "s.h5"], "/no/such/root"),
    (["nonsense"], "No such command"),
])
def test_bad_arguments_give_one_line_and_exit_2(args, needle, tmp_path):
    r = subprocess.run([sys.executable, "-m", "cavnet.cli", *args], capture_output=True, text=True, timeout=120,
                       cwd=tmp_path)
    assert r.returncode == 2, r.stderr
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("cavnet: error:") and needle in lines[0], r.stderr
    assert "Traceback" not in r.stderr


def test_cli_reference_documents_every_option():
    """docs/cli.md must name every option of every command (regenerate it from --help when this fails)."""
    from pathlib import Path

    import click

    from cavnet.cli import main

    doc = (Path(__file__).parent.parent / "docs" / "cli.md").read_text()
    missing = []
    for name, cmd in main.commands.items():
        assert f"## `cavnet {name}`" in doc, name
        for param in cmd.params:
            if isinstance(param, click.Option):
                missing += [f"{name} {o}" for o in param.opts if o not in doc]
    assert not missing, missing
