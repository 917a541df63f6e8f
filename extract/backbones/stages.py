"""Named stages of a visual backbone, for ``--freeze-until``: stem, layer1 .. layer4.

A backbone that names its stages carries ``stages``: ``{stage: (module path, ...)}`` in order (torchvision's
video models, :mod:`cavnet.extract.backbones.video_tv`). 3D-ResNeXt needs none: its children are ``conv1,
bn1, ..., layer1 .. layer4`` and are read directly by the fine-tune model.
"""

from __future__ import annotations

from torch import nn

from cavnet.errors import CavnetError

STAGES = ("stem", "layer1", "layer2", "layer3", "layer4")


def named_stage_modules(backbone: nn.Module, until: str) -> list[nn.Module]:
    """The modules of every stage from ``stem`` to ``until`` of a backbone with ``backbone.stages``;
    ``until="none"`` gives none."""
    if until == "none":
        return []
    stages: dict[str, tuple[str, ...]] = backbone.stages
    if until not in stages:
        raise CavnetError(f"--freeze-until {until}: the visual backbone has no stage {until} "
                          f"(its stages: {', '.join(stages)})")
    names = list(stages)[:list(stages).index(until) + 1]
    return [backbone.get_submodule(path) for name in names for path in stages[name]]
