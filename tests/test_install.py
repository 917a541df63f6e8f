"""The install check that `make test` runs first: versions against the lock, one line naming the package."""

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "tools" / "check_install.py"


def _check(lock: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), "--lock", str(lock)], capture_output=True, text=True,
                          timeout=120)


def test_the_committed_lock_is_what_is_installed():
    r = _check(REPO / "requirements.lock")
    assert r.returncode == 0, r.stderr
    assert "torchaudio" in r.stdout and "at their locked versions" in r.stdout


def test_a_version_other_than_the_locked_one_fails_naming_the_package(tmp_path):
    import torchaudio

    lock = tmp_path / "requirements.lock"
    lock.write_text("torchaudio==0.0.1\n    # via cavnet\nnumpy==0.0.2 ; python_version < '3'\n")
    r = _check(lock)
    assert r.returncode == 1
    lines = r.stderr.strip().splitlines()
    assert lines == [f"check_install: torchaudio: installed {torchaudio.__version__.split('+')[0]}, the lock pins "
                     "0.0.1 (reinstall with `make clean install`)"]


def test_pyproject_pins_the_native_triple_exactly_as_the_lock_and_the_installed_wheels():
    """torch, torchvision and torchaudio are built against each other: pyproject pins each with ``==``, to the
    version the lock holds and the one installed (read from the installed distributions' metadata)."""
    import tomllib
    from importlib.metadata import version

    deps = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    lock = (REPO / "requirements.lock").read_text().splitlines()
    for name in ("torch", "torchvision", "torchaudio"):
        pins = [d.replace(" ", "") for d in deps if d.replace(" ", "").split("==")[0].split(">")[0] == name]
        assert len(pins) == 1 and pins[0].startswith(f"{name}=="), (name, pins)
        pinned = pins[0].split("==", 1)[1]
        assert any(line.split(" ;")[0] == f"{name}=={pinned}" for line in lock), (name, pinned)
        assert version(name).split("+")[0] == pinned
