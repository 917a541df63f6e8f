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
            base = list(path.relative_to(ROOT).parent.parts)[: len(path.relative_to(ROOT).parent.parts) - node.level + 1]
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
