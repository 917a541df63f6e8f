"""Backbones: every registered network runs and has the right output; architecture facts of the references;
checkpoint loading in every accepted layout and every kind of mismatch."""

from __future__ import annotations

import argparse
import hashlib
from pathlib import Path

import pytest
import torch

from cavnet.extract.backbones import create_backbone, get_spec, list_backbones
from cavnet.extract.backbones.audio_cnn import VGGish
from cavnet.extract.backbones.resnext3d import RESNEXT3D_101, Bottleneck, ResNeXt3D, ResNeXt3DConfig
from cavnet.extract.backbones.weights import WeightsError, file_sha256, load_weights

# (T, H, W) per visual backbone; the default is the real 16 x 112 x 112. 152 is the slowest on CPU, and its
# pooling is adaptive, so a smaller frame does for a smoke test; so do torchvision's ResNets and Swins (any
# size), S3D (at least 14 x 224 x 224 for its 2x7x7 pool); MViT needs exactly 16 x 224 x 224.
_CLIP_SIZE = {"resnext3d-152": (16, 64, 64), "r3d_18": (8, 64, 64), "mc3_18": (8, 64, 64),
              "r2plus1d_18": (8, 64, 64), "s3d": (14, 224, 224), "swin3d_t": (4, 64, 64), "swin3d_s": (4, 64, 64),
              "swin3d_b": (4, 64, 64), "mvit_v1_b": (16, 224, 224), "mvit_v2_s": (16, 224, 224)}
SLOW = {"mvit_v1_b", "mvit_v2_s", "swin3d_b", "s3d"}  # marked slow in test_backbones_torchvision.py
# torchvision's models are run, their output checked against torchvision's own, in
# test_backbones_torchvision.py; the forward smoke test below covers the backbones cavnet builds itself
TORCHVISION = {"r3d_18", "mc3_18", "r2plus1d_18", "s3d", "mvit_v1_b", "mvit_v2_s", "swin3d_t", "swin3d_s", "swin3d_b"}


def _own_names() -> list[str]:
    """The backbones cavnet builds itself (3D-ResNeXt family, the audio CNNs); the Hugging Face encoders are
    compared with transformers' own forward in test_hf_encoders.py."""
    return [n for n in list_backbones() if n not in TORCHVISION and get_spec(n).hf is None]


def _example_input(name: str) -> torch.Tensor:
    spec = get_spec(name)
    batch = 2 if name.endswith("-tiny") else 1
    g = torch.Generator().manual_seed(0)
    if spec.modality == "visual":
        return torch.randn(batch, 3, *_CLIP_SIZE.get(name, (16, 112, 112)), generator=g)
    assert spec.logmel is not None
    return torch.randn(batch, 1, spec.logmel.example_frames, spec.logmel.n_mels, generator=g)


@pytest.mark.parametrize("name", _own_names())
def test_every_backbone_forward(name: str) -> None:
    spec = get_spec(name)
    model = create_backbone(name)
    assert not model.training and model.out_dim == spec.out_dim
    x = _example_input(name)
    with torch.no_grad():
        y = model(x)
    assert y.shape == (x.shape[0], spec.out_dim)
    assert torch.isfinite(y).all()
    assert y.abs().sum() > 0
    if x.shape[0] > 1:  # different inputs, different features
        assert not torch.allclose(y[0], y[1])


def test_registry_lists_both_modalities() -> None:
    assert {"resnext3d-50", "resnext3d-101", "resnext3d-152", "resnext3d-tiny", "r3d_18", "mc3_18", "r2plus1d_18",
            "s3d", "mvit_v1_b", "mvit_v2_s", "swin3d_t", "swin3d_s", "swin3d_b"} <= set(list_backbones("visual"))
    assert {"vggish", "vggish-pca", "cnn14", "resnet50-audio", "audio-cnn-tiny"} <= set(list_backbones("audio"))
    assert get_spec("resnet50-audio").logmel.n_mels == 128
    assert get_spec("vggish").logmel.n_mels == 64


def test_resnext101_matches_reference() -> None:
    """47.5 M parameters without fc; the stage shapes of Hara et al. on a 16 x 112 x 112 clip."""
    with torch.device("meta"):  # no memory, no compute: shapes only
        model = ResNeXt3D(RESNEXT3D_101)
        shapes = {}
        for k in range(1, 5):
            getattr(model, f"layer{k}").register_forward_hook(
                lambda m, i, o, k=k: shapes.__setitem__(k, tuple(o.shape)))
        out = model(torch.empty(2, 3, 16, 112, 112))
    n_params = sum(p.numel() for p in model.parameters())
    assert abs(n_params - 47.5e6) / 47.5e6 < 0.005, n_params
    assert shapes == {1: (2, 256, 8, 28, 28), 2: (2, 512, 4, 14, 14), 3: (2, 1024, 2, 7, 7),
                      4: (2, 2048, 1, 4, 4)}
    assert tuple(out.shape) == (2, 2048)
    keys = model.state_dict().keys()
    for key in ("conv1.weight", "bn1.running_var", "layer3.22.conv2.weight", "layer1.0.downsample.0.weight",
                "layer4.0.downsample.1.running_mean", "layer4.2.bn3.bias"):
        assert key in keys
    assert "layer1.1.downsample.0.weight" not in keys and not any(k.startswith("fc.") for k in keys)
    assert model.state_dict()["layer3.0.conv2.weight"].shape == (512, 16, 3, 3, 3)  # 32 groups of 16


def test_vggish_keys_and_strict_input() -> None:
    with torch.device("meta"):
        model = VGGish()
    convs = [0, 3, 6, 8, 11, 13]
    want = {f"features.{i}.{p}" for i in convs for p in ("weight", "bias")}
    want |= {f"embeddings.{i}.{p}" for i in (0, 2, 4) for p in ("weight", "bias")}
    assert set(model.state_dict()) == want
    assert model.state_dict()["embeddings.0.weight"].shape == (4096, 512 * 6 * 4)
    with pytest.raises(ValueError, match="96, 64"):
        model(torch.empty(1, 1, 100, 64, device="meta"))


def _conv_out(size: int, kernel: int, stride: int, pad: int) -> int:
    return (size + 2 * pad - kernel) // stride + 1


def test_resnext3d_layer_shapes_put_the_stride_in_the_grouped_conv() -> None:
    """Every layer's output shape on an odd-sized clip, computed from Hara et al.'s definition (stem 7x7x7
    stride (1, 2, 2) pad 3; max-pool 3 stride 2 pad 1; per stage a 1x1x1 conv1, the 3x3x3 grouped conv2
    pad 1 carrying the stage stride (1, 2, 2, 2), a 1x1x1 conv3, and a strided 1x1x1 projection where the
    shape changes). With the stride on conv1 instead, conv1's outputs would already be halved."""
    cfg = ResNeXt3DConfig(blocks=(1, 1, 1, 1), widths=(8, 16, 32, 64), cardinality=4, stem_channels=8)
    model = ResNeXt3D(cfg).eval()
    shapes = {}
    for name, module in model.named_modules():
        if isinstance(module, (torch.nn.Conv3d, torch.nn.MaxPool3d)):
            module.register_forward_hook(lambda m, i, o, name=name: shapes.__setitem__(name, tuple(o.shape[1:])))
    t, h = 15, 57
    t, h = _conv_out(t, 7, 1, 3), _conv_out(h, 7, 2, 3)
    want = {"conv1": (8, t, h, h)}
    t, h = _conv_out(t, 3, 2, 1), _conv_out(h, 3, 2, 1)
    want["maxpool"] = (8, t, h, h)
    in_ch = 8
    for k, (width, stride) in enumerate(zip(cfg.widths, (1, 2, 2, 2)), start=1):
        want[f"layer{k}.0.conv1"] = (width, t, h, h)  # the input's size: no stride here
        t, h = _conv_out(t, 3, stride, 1), _conv_out(h, 3, stride, 1)
        want[f"layer{k}.0.conv2"] = (width, t, h, h)
        want[f"layer{k}.0.conv3"] = want[f"layer{k}.0.downsample.0"] = (2 * width, t, h, h)
        in_ch = 2 * width
    with torch.no_grad():
        out = model(torch.randn(1, 3, 15, 57, 57))
    assert shapes == want
    assert want["layer4.0.conv3"] == (128, 1, 2, 2) and out.shape == (1, in_ch)


def test_resnext3d_bottleneck_forward_by_hand() -> None:
    """One strided bottleneck in eval mode against its definition written with plain ops: conv1 -> BN ->
    ReLU, grouped 3x3x3 conv2 (stride 2, each group of channels convolved on its own) -> BN -> ReLU, conv3
    -> BN, plus the BN'd strided projection of the input, then ReLU."""
    import torch.nn.functional as F

    torch.manual_seed(0)
    block = Bottleneck(8, 8, cardinality=4, expansion=2, stride=2).eval()
    with torch.no_grad():
        for m in block.modules():
            if isinstance(m, torch.nn.BatchNorm3d):
                m.weight.uniform_(0.5, 1.5), m.bias.normal_(), m.running_mean.normal_(), m.running_var.uniform_(0.5, 2)
    x = torch.randn(2, 8, 5, 7, 7)

    def bn(y, m):
        shape = (1, -1, 1, 1, 1)
        return (y - m.running_mean.view(shape)) / torch.sqrt(m.running_var.view(shape) + m.eps) * \
            m.weight.view(shape) + m.bias.view(shape)

    def grouped(y, weight, groups):
        per_in, per_out = y.shape[1] // groups, weight.shape[0] // groups
        return torch.cat([F.conv3d(y[:, g * per_in:(g + 1) * per_in], weight[g * per_out:(g + 1) * per_out],
                                   stride=2, padding=1) for g in range(groups)], dim=1)

    with torch.no_grad():
        y = torch.relu(bn(F.conv3d(x, block.conv1.weight), block.bn1))
        y = torch.relu(bn(grouped(y, block.conv2.weight, 4), block.bn2))
        y = bn(F.conv3d(y, block.conv3.weight), block.bn3)
        shortcut = bn(F.conv3d(x, block.downsample[0].weight, stride=2), block.downsample[1])
        torch.testing.assert_close(block(x), torch.relu(y + shortcut), atol=1e-5, rtol=1e-5)


def _vggish_by_the_release(x: torch.Tensor, tf: dict[str, torch.Tensor]) -> torch.Tensor:
    """VGGish as the TensorFlow release defines it (vggish_slim.py), channels-last throughout, with weights
    in TensorFlow's layout (conv kernels HWIO, fc (in, out)): 3x3 SAME convs + ReLU, 2x2 stride-2 max-pools,
    flatten the (6, 4, 512) map, fc1 4096 ReLU twice, fc2 128 with no activation.  (B, 96, 64) -> (B, 128)."""
    import torch.nn.functional as F

    net = x[..., None]  # (B, 96, 64, 1): NHWC
    for block in (["conv1"], ["conv2"], ["conv3_1", "conv3_2"], ["conv4_1", "conv4_2"]):
        for name in block:  # SAME padding of a 3x3 stride-1 conv is 1 on each side
            net = F.conv2d(net.permute(0, 3, 1, 2), tf[name].permute(3, 2, 0, 1), tf[name + "/b"], padding=1)
            net = torch.relu(net.permute(0, 2, 3, 1))
        b, h, w, c = net.shape  # 2x2 stride-2 max-pool (SAME adds nothing to even sizes)
        net = net.reshape(b, h // 2, 2, w // 2, 2, c).amax(dim=(2, 4))
    net = net.reshape(net.shape[0], -1)  # (B, 6 * 4 * 512) in (h, w, c) order
    for name in ("fc1_1", "fc1_2"):
        net = torch.relu(net @ tf[name] + tf[name + "/b"])
    return net @ tf["fc2"] + tf["fc2/b"]


def test_vggish_forward_is_the_release_definition() -> None:
    """Random weights in the release's layout, converted as torchvggish converted the release (kernels
    HWIO -> OIHW, fc transposed, the fc1 rows kept in channels-last order), give the same embedding in
    cavnet's VGGish as in the release's channels-last forward written above."""
    g = torch.Generator().manual_seed(0)
    convs = [("conv1", 1, 64), ("conv2", 64, 128), ("conv3_1", 128, 256), ("conv3_2", 256, 256),
             ("conv4_1", 256, 512), ("conv4_2", 512, 512)]
    fcs = [("fc1_1", 512 * 6 * 4, 4096), ("fc1_2", 4096, 4096), ("fc2", 4096, 128)]
    tf = {}
    for name, cin, cout in convs:
        tf[name] = torch.randn(3, 3, cin, cout, generator=g) * (2.0 / (9 * cin)) ** 0.5
        tf[name + "/b"] = torch.randn(cout, generator=g) * 0.1
    for name, cin, cout in fcs:
        tf[name] = torch.randn(cin, cout, generator=g) * (2.0 / cin) ** 0.5
        tf[name + "/b"] = torch.randn(cout, generator=g) * 0.1
    state = {}
    for (name, _, _), index in zip(convs, (0, 3, 6, 8, 11, 13)):
        state[f"features.{index}.weight"] = tf[name].permute(3, 2, 0, 1)
        state[f"features.{index}.bias"] = tf[name + "/b"]
    for (name, _, _), index in zip(fcs, (0, 2, 4)):
        state[f"embeddings.{index}.weight"], state[f"embeddings.{index}.bias"] = tf[name].T, tf[name + "/b"]
    with torch.device("meta"):
        model = VGGish()
    model.load_state_dict(state, assign=True)
    x = torch.randn(2, 96, 64, generator=g)
    with torch.no_grad():
        want = _vggish_by_the_release(x, tf)
        got = model.eval()(x[:, None])
    assert (want < 0).any()  # the embedding is pre-activation: a final ReLU would show
    torch.testing.assert_close(got, want, atol=1e-4, rtol=1e-4)


# --- checkpoints -----------------------------------------------------------------------------------------

def _trained_tiny() -> torch.nn.Module:
    """A resnext3d-tiny whose every tensor (BN statistics included) differs from a fresh one."""
    model = create_backbone("resnext3d-tiny")
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for t in model.state_dict().values():
            if t.is_floating_point():
                t.add_(0.1 * torch.rand(t.shape, generator=g))  # positive: running_var stays valid
            else:
                t.fill_(7)
    return model


def _save(obj: object, path: Path) -> Path:
    torch.save(obj, path)
    return path


def _released(state: dict[str, torch.Tensor]) -> dict[str, object]:
    sd = {f"module.{k}": v for k, v in state.items()}
    sd["module.fc.weight"] = torch.randn(400, 256)
    sd["module.fc.bias"] = torch.randn(400)
    return {"epoch": 200, "arch": "resnext-101", "state_dict": sd,
            "optimizer": {"state": {}, "param_groups": [{"lr": 0.1, "momentum": 0.9, "params": [0, 1]}]}}


@pytest.mark.parametrize("layout", ["released", "bare", "bare-module", "model"])
def test_load_weights_layouts(layout: str, tmp_path: Path) -> None:
    src = _trained_tiny()
    state = src.state_dict()
    obj = {"released": lambda: _released(state),
           "bare": lambda: dict(state),
           "bare-module": lambda: {f"module.{k}": v for k, v in state.items()},
           "model": lambda: {"model": dict(state)}}[layout]()
    path = _save(obj, tmp_path / "w.pth")
    dst = create_backbone("resnext3d-tiny")
    x = torch.randn(2, 3, 8, 48, 48)
    with torch.no_grad():
        assert not torch.allclose(src(x), dst(x))
        digest = load_weights(dst, path, modality_hint="visual")
        assert torch.equal(src(x), dst(x))
    assert digest == hashlib.sha256(path.read_bytes()).hexdigest() == file_sha256(path)
    for k, v in src.state_dict().items():
        assert torch.equal(v, dst.state_dict()[k]), k


def test_load_weights_old_checkpoint(tmp_path: Path) -> None:
    """Checkpoints saved before PyTorch 0.4.1 (like the 2017 releases): legacy (non-zip) serialisation and
    no batch-norm num_batches_tracked counters."""
    src = _trained_tiny()
    state = {k: v for k, v in src.state_dict().items() if not k.endswith("num_batches_tracked")}
    path = tmp_path / "old.pth"
    torch.save(_released(state), path, _use_new_zipfile_serialization=False)
    dst = create_backbone("resnext3d-tiny")
    load_weights(dst, path)
    assert torch.equal(dst.state_dict()["layer2.0.conv2.weight"], state["layer2.0.conv2.weight"])
    assert torch.equal(dst.state_dict()["bn1.running_var"], state["bn1.running_var"])


def _edited(edit: str) -> dict[str, torch.Tensor]:
    state = dict(_trained_tiny().state_dict())
    if edit == "missing":
        del state["layer2.0.conv2.weight"]
    elif edit == "unexpected":
        state["layer5.0.conv1.weight"] = torch.zeros(1)
    else:
        state["conv1.weight"] = torch.zeros(16, 3, 5, 7, 7)
    return state


@pytest.mark.parametrize("edit, words", [
    ("missing", ["1 missing keys", "layer2.0.conv2.weight"]),
    ("unexpected", ["1 unexpected keys", "layer5.0.conv1.weight"]),
    ("shape", ["1 shape mismatches", "conv1.weight (16, 3, 5, 7, 7) vs model (16, 3, 3, 7, 7)"]),
])
def test_load_weights_mismatch(edit: str, words: list[str], tmp_path: Path) -> None:
    path = _save(_released(_edited(edit)), tmp_path / "bad.pth")
    dst = create_backbone("resnext3d-tiny")
    before = {k: v.clone() for k, v in dst.state_dict().items()}
    with pytest.raises(WeightsError) as info:
        load_weights(dst, path, modality_hint="visual")
    msg = str(info.value)
    assert isinstance(info.value, ValueError) and "\n" not in msg
    assert "visual weights" in msg and str(path) in msg and "resnext-101" in msg
    for w in words:
        assert w in msg
    assert all(torch.equal(v, dst.state_dict()[k]) for k, v in before.items())  # untouched on failure


def test_load_weights_wrong_network(tmp_path: Path) -> None:
    path = _save(create_backbone("audio-cnn-tiny").state_dict(), tmp_path / "audio.pth")
    with pytest.raises(WeightsError, match=r"\d+ missing keys .*\d+ unexpected keys"):
        load_weights(create_backbone("resnext3d-tiny"), path)


def test_load_weights_untrusted_pickle(tmp_path: Path) -> None:
    src = _trained_tiny()
    path = _save({"state_dict": src.state_dict(), "opt": argparse.Namespace(lr=0.1)}, tmp_path / "p.pth")
    dst = create_backbone("resnext3d-tiny")
    with pytest.raises(WeightsError, match="argparse.Namespace.*trust=True"):
        load_weights(dst, path)
    load_weights(dst, path, trust=True)
    assert torch.equal(dst.state_dict()["conv1.weight"], src.state_dict()["conv1.weight"])


@pytest.mark.parametrize("content", [b"", b"not a checkpoint at all", None])
def test_load_weights_unreadable(content: bytes | None, tmp_path: Path) -> None:
    path = tmp_path / "w.pth"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(WeightsError, match="w.pth") as info:
        load_weights(create_backbone("resnext3d-tiny"), path, trust=True)
    assert "\n" not in str(info.value)


def test_a_single_candidate_mode_is_taken_without_timing(monkeypatch):
    """With the layout pinned and fp32 there is nothing to choose: no forward pass is timed."""
    from cavnet.extract import runtime

    monkeypatch.setenv("CAVNET_LAYOUT", "contiguous")
    monkeypatch.setattr(runtime, "time_mode", lambda *a, **k: pytest.fail("timed a single candidate"))
    model = torch.nn.Conv3d(3, 4, 3)
    mode, rates = runtime.pick_mode(model, torch.randn(2, 3, 4, 8, 8), key="single-candidate-test", precision="fp32")
    assert mode == runtime.RunMode("fp32", "contiguous") and rates == {}
