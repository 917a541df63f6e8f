"""torchvision's video models as backbones: a state dict in torchvision's own format, loaded through the
``--visual-weights`` path (extract_config -> build_backbones), gives torchvision's features and logits;
the preprocessing comes from the weights enums; the hub-cache lookup and its error; named stages."""

from __future__ import annotations

import dataclasses
import hashlib
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torchvision.models import video as tv

from cavnet.errors import CavnetError
from cavnet.extract.backbones import get_spec
from cavnet.extract.backbones.pretrained import hub_checkpoint_dir, resolve_weights, weights_name
from cavnet.extract.backbones.stages import STAGES, named_stage_modules
from cavnet.extract.backbones.video_tv import MODELS, build
from cavnet.extract.embed import build_backbones
from cavnet.finetune.model import stem_and_stages
from cavnet.extract.backbones.pretrained import extract_config
from test_backbones import _CLIP_SIZE, SLOW, TORCHVISION

NAMES = [pytest.param(m.arch, marks=pytest.mark.slow) if m.arch in SLOW else m.arch for m in MODELS]


def _torchvision_model(arch: str) -> torch.nn.Module:
    """torchvision's model with every tensor moved off its initial value (BN statistics included)."""
    torch.manual_seed(1)
    net = getattr(tv, arch)(weights=None).eval()
    g = torch.Generator().manual_seed(2)
    with torch.no_grad():
        for t in net.state_dict().values():
            if t.is_floating_point():
                t.add_(0.02 * torch.rand(t.shape, generator=g))  # positive: running_var stays valid
    return net


def _classifier(net: torch.nn.Module, arch: str) -> torch.nn.Module:
    return {"fc": lambda: net.fc, "classifier": lambda: net.classifier[1],
            "head": lambda: net.head if arch.startswith("swin") else net.head[1]}[
        next(m.classifier for m in MODELS if m.arch == arch)]()


@pytest.mark.parametrize("arch", NAMES)
def test_torchvision_state_dict_loads_and_matches_torchvision(arch: str, tmp_path: Path) -> None:
    ref = _torchvision_model(arch)
    path = tmp_path / f"{arch}.pth"
    torch.save(ref.state_dict(), path)  # torchvision's releases are bare state dicts, classifier included
    config = extract_config(arch, "audio-cnn-tiny", path, None, "default", "a {label}", 2, 2)
    assert config.visual_weights == str(path) and config.visual_weights_name == f"file {arch}.pth"
    assert config.visual_weights_sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert config.sampling == dataclasses.replace(get_spec(arch).sampling, clips=2)
    ours, _ = build_backbones(config, torch.device("cpu"))
    x = torch.randn(1, 3, *_CLIP_SIZE[arch], generator=torch.Generator().manual_seed(3))
    seen: dict[str, torch.Tensor] = {}
    head = _classifier(ref, arch)
    head.register_forward_pre_hook(lambda m, i: seen.update(input=i[0]))  # returns None: input unchanged
    with torch.no_grad():
        logits, feats = ref(x), ours(x)
        fresh = build(next(m for m in MODELS if m.arch == arch)).eval()(x)
    expected = seen["input"] if seen["input"].dim() == 2 else seen["input"].mean(dim=(2, 3, 4))  # S3D: a map
    assert feats.shape == (1, get_spec(arch).out_dim)
    torch.testing.assert_close(feats, expected, rtol=1e-4, atol=1e-5)
    weight = head.weight.reshape(head.weight.shape[0], -1)  # S3D's classifier is a 1x1x1 conv
    torch.testing.assert_close(feats @ weight.T + head.bias, logits, rtol=1e-4, atol=1e-4)
    assert not torch.allclose(fresh, feats, atol=1e-3)  # the file's weights, not the random ones


def test_preprocessing_comes_from_the_weights_enums() -> None:
    r21, mvit, swin, s3d = (get_spec(n).sampling for n in ("r2plus1d_18", "mvit_v1_b", "swin3d_t", "s3d"))
    assert (r21.frames, r21.size, r21.resize, r21.short_side) == (16, 112, (128, 171), 128)
    assert r21.mean == pytest.approx(tuple(255 * v for v in (0.43216, 0.394666, 0.37645)))
    assert r21.std == pytest.approx(tuple(255 * v for v in (0.22803, 0.22145, 0.216989)))
    assert (mvit.frames, mvit.size, mvit.resize, mvit.short_side) == (16, 224, None, 256)
    assert (swin.frames, s3d.frames, s3d.resize) == (32, 128, (256, 256))
    t = tv.Swin3D_T_Weights.KINETICS400_V1.transforms()
    assert swin.mean == pytest.approx(tuple(255 * v for v in t.mean))
    release = get_spec("r2plus1d_18").release
    assert (release.file, release.sha256_prefix, release.hub_cache) == ("r2plus1d_18-91a641e6.pth", "91a641e6", True)
    assert dict(release.metrics)["Kinetics-400 top-1"] == pytest.approx(67.463)


def test_hub_cache_lookup_and_the_error_that_names_the_file(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    spec = get_spec("r2plus1d_18")
    folder = tmp_path / "torch" / "hub" / "checkpoints"
    assert hub_checkpoint_dir() == folder
    with pytest.raises(CavnetError) as info:
        resolve_weights(spec, None, "--visual-weights")
    msg = str(info.value)
    assert "\n" not in msg and f"put r2plus1d_18-91a641e6.pth (from {spec.release.url}) into {folder}/" in msg
    assert "--visual-weights FILE" in msg
    assert resolve_weights(spec, None, "--visual-weights", random_ok=True) is None
    assert resolve_weights(get_spec("resnext3d-101"), None, "--visual-weights") is None  # random, warned later
    folder.mkdir(parents=True)
    torch.save(_torchvision_model("r2plus1d_18").state_dict(), folder / spec.release.file)
    config = extract_config("r2plus1d_18", "audio-cnn-tiny", None, None, "default", "a {label}", 1, 1)
    assert config.visual_weights == str(folder / spec.release.file)
    sha = config.visual_weights_sha256
    # a file whose sha256 starts with the release's prefix is recorded as the release itself
    real = dataclasses.replace(spec, release=dataclasses.replace(spec.release, sha256_prefix=sha[:8]))
    assert weights_name(real, Path(config.visual_weights), sha) == "torchvision R2Plus1D_18_Weights.KINETICS400_V1"
    assert config.visual_weights_name == "file r2plus1d_18-91a641e6.pth"


def test_missing_hub_weights_through_the_cli(tmp_path: Path) -> None:
    csv = tmp_path / "m.csv"
    csv.write_text("path,label\na.mp4,x\nb.mp4,y\n")
    env = {**__import__("os").environ, "TORCH_HOME": str(tmp_path / "th")}
    r = subprocess.run([sys.executable, "-m", "cavnet.cli", "extract", "--dataset", "csv", "--manifest", str(csv),
                        "--visual", "s3d", "--out", str(tmp_path / "s.h5")], capture_output=True, text=True,
                       timeout=120, env=env)
    assert r.returncode == 2, r.stderr
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    folder = str(tmp_path / "th" / "hub" / "checkpoints")
    assert len(lines) == 1 and "s3d-d76dad2f.pth" in lines[0] and folder in lines[0]


@pytest.mark.parametrize("arch", [m.arch for m in MODELS])
def test_stages_cover_every_parameter_once(arch: str) -> None:
    with torch.device("meta"):
        net = build(next(m for m in MODELS if m.arch == arch))
    assert tuple(net.stages) == STAGES
    owned = [id(p) for name in STAGES for path in net.stages[name] for p in net.get_submodule(path).parameters()]
    assert len(owned) == len(set(owned)) == len(list(net.parameters()))
    frozen = named_stage_modules(net, "layer2")
    assert frozen == [net.get_submodule(p) for s in STAGES[:3] for p in net.stages[s]]
    assert stem_and_stages(net, "layer2") == frozen and stem_and_stages(net, "none") == []
    if arch.startswith("mvit"):  # its four scales: 1, 2, 11 and 2 blocks
        assert [len([p for p in net.stages[s] if p.startswith("blocks.")]) for s in STAGES[1:]] == [1, 2, 11, 2]
    with pytest.raises(CavnetError, match="no stage layer9"):
        named_stage_modules(net, "layer9")


def test_every_torchvision_backbone_is_compared_here() -> None:
    """test_backbones.py leaves these models' forward pass to the comparison above: none may be missed."""
    assert {m.arch for m in MODELS} == TORCHVISION
