"""The package layout holds: imports flow cli -> pipelines/bench -> finetune -> fuse -> extract -> configs/errors,
no folder grows past a dozen modules, and the wiring layer defines no models, datasets or loops."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LAYERS = {"errors": 0, "configs": 0, "cli_options": 0, "extract": 1, "fuse": 2, "finetune": 3, "pipelines": 4,
          "bench": 4, "cli": 5, "cli_groups": 5}
SKIP = {"tests", "tools", "docs", ".venv", "build"}


def _modules() -> list[Path]:
    return [p for p in ROOT.rglob("*.py") if not (set(p.relative_to(ROOT).parts) & SKIP) and p.name != "__init__.py"
            or p.parent == ROOT and p.name == "__init__.py"]


def _layer(parts: list[str]) -> int | None:
    return LAYERS.get(parts[0]) if parts else None


def _imports(path: Path) -> list[list[str]]:
    """Dotted cavnet imports of ``path`` (module-level and inside functions), without the ``cavnet`` prefix."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0 and node.module.startswith("cavnet."):
            found.append(node.module.split(".")[1:])
        elif isinstance(node, ast.ImportFrom) and node.level:
            parts = path.relative_to(ROOT).parent.parts
            base = list(parts)[: len(parts) - node.level + 1]
            found.append(base + (node.module.split(".") if node.module else []))
        elif isinstance(node, ast.Import):
            found += [a.name.split(".")[1:] for a in node.names if a.name.startswith("cavnet.")]
    return found


def test_imports_never_run_up_a_layer():
    upward = []
    for path in _modules():
        own = _layer(list(path.relative_to(ROOT).with_suffix("").parts))
        if own is None:
            continue
        for target in _imports(path):
            theirs = _layer(target)
            if theirs is not None and theirs > own:
                upward.append(f"{path.relative_to(ROOT)} -> cavnet.{'.'.join(target)}")
    assert not upward, upward


def test_no_folder_holds_more_than_a_dozen_modules():
    crowded = {}
    for folder in {p.parent for p in _modules()}:
        n = len([p for p in folder.glob("*.py") if p.name != "__init__.py"])
        if folder != ROOT and n > 12:
            crowded[str(folder.relative_to(ROOT))] = n
    assert not crowded, crowded


def test_the_wiring_layer_defines_no_models_datasets_or_loops():
    found = []
    for path in (ROOT / "pipelines").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ClassDef):
                bases = {ast.unparse(b) for b in node.bases}
                if bases & {"nn.Module", "torch.nn.Module", "Dataset", "torch.utils.data.Dataset", "IterableDataset"}:
                    found.append(f"{path.relative_to(ROOT)}: class {node.name}")
            if isinstance(node, ast.Attribute) and node.attr in ("backward", "zero_grad"):
                found.append(f"{path.relative_to(ROOT)}: .{node.attr}() (a training loop)")
    assert not found, found


STATUS_WORDS = {"ok", "no_audio", "short_decode", "decode_error", "missing_file", "empty_file", "no_video",
                "worker_crash", "encode_error"}  # and "prepared", which is also the name of a bench decode row


def test_status_words_are_spelled_in_one_module():
    """docs/store.md's statuses are string constants of extract/status.py; everywhere else imports them."""
    spelled = []
    for path in _modules():
        if path == ROOT / "extract" / "status.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Constant) and node.value in STATUS_WORDS:
                spelled.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.value!r}")
    assert not spelled, spelled
    from cavnet.extract import status

    assert set(status.KNOWN) | {status.ENCODE_ERROR} == STATUS_WORDS
    assert set(status.USABLE) | set(status.CLEAN) <= set(status.KNOWN)


def test_the_wiring_layer_reads_no_hdf5_and_sets_up_no_optimiser():
    """The store's layout is read and written by extract/store only; optimisers are made by the training
    runs (``fuse.run.optim.make_optimizer``), never in the wiring."""
    assert not _uses(ROOT / "pipelines", "h5py")
    assert not _uses(ROOT / "pipelines", "torch.optim")
    made = [p for p in ROOT.rglob("*.py") if not (set(p.relative_to(ROOT).parts) & SKIP)
            and "AdamW(" in p.read_text()]
    assert made == [ROOT / "fuse" / "run" / "optim.py"], made


def _uses(folder: Path, module: str) -> list[str]:
    """Where the modules under ``folder`` import ``module`` (or a submodule) or reach it as an attribute."""
    found = []
    for path in folder.rglob("*.py"):
        tree = ast.parse(path.read_text())
        for name in _imports_any(path):
            if name == module or name.startswith(module + "."):
                found.append(f"{path.relative_to(ROOT)} imports {name}")
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and ast.unparse(node) == module:
                found.append(f"{path.relative_to(ROOT)}:{node.lineno} {module}")
            elif "." not in module and isinstance(node, ast.Name) and node.id == module:
                found.append(f"{path.relative_to(ROOT)}:{node.lineno} {module}")
    return found


def _imports_any(path: Path) -> list[str]:
    """Every imported module name of ``path`` (``import a.b`` and ``from a.b import c`` give ``a.b``)."""
    names = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.append(node.module)
    return names


def test_pyproject_lists_every_package():
    """setuptools' hand-kept ``packages`` list names every folder of the tree with an __init__.py: a new
    sub-package left out would be missing from the wheel (the editable install finds it all the same)."""
    import tomllib

    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {".".join(("cavnet",) + p.parent.relative_to(ROOT).parts) for p in ROOT.rglob("__init__.py")
             if not (set(p.relative_to(ROOT).parts) & SKIP)}
    assert listed == found, {"not listed": sorted(found - listed), "listed, not a package": sorted(listed - found)}
