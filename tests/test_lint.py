"""The tree passes ruff's check with the configuration in pyproject.toml ([tool.ruff]): pyflakes (unused
and undefined names), pycodestyle and bugbear, lines up to 120 characters."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_ruff_check_finds_nothing():
    r = subprocess.run([sys.executable, "-m", "ruff", "check", "--no-cache", str(ROOT)], capture_output=True,
                       text=True, cwd=ROOT)
    assert r.returncode == 0, r.stdout + r.stderr
