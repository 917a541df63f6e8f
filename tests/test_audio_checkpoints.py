"""Released audio checkpoints in their real key layouts (random values): torchvggish's VGGish and PCA files,
PANNs' CNN14 with its numpy sampler; the numpy allow-list; refusals naming the key, through the CLI too."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from cavnet.extract.backbones import create_backbone
from cavnet.extract.backbones.audio_cnn import VGGish
from cavnet.extract.backbones.weights import WeightsError, load_weights
from cavnet.extract.embed import build_backbones
from cavnet.extract.backbones.pretrained import extract_config

PCA_FILE = "vggish_pca_params-970ea276.pth"


def _random_like(model: torch.nn.Module, seed: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {k: (0.05 * torch.rand(v.shape, generator=g) + (1.0 if "running_var" in k or k.endswith("bn0.weight")
                                                          else 0.0)) if v.is_floating_point() else v.clone()
            for k, v in model.state_dict().items()}


def _vggish_release(folder: Path, pca: bool = True) -> Path:
    """vggish-10086976.pth (bare state dict, legacy serialisation) and the PCA file of numpy float64 arrays."""
    path = folder / "vggish-10086976.pth"
    torch.save(_random_like(VGGish(), 1), path, _use_new_zipfile_serialization=False)
    if pca:
        rng = np.random.default_rng(2)
        torch.save({"pca_eigen_vectors": rng.standard_normal((128, 128)) / 8, "pca_means": rng.standard_normal(128)},
                   folder / PCA_FILE, _use_new_zipfile_serialization=False)
    return path


def _cnn14_release(path: Path, edit: str = "") -> Path:
    """Cnn14_mAP=0.431.pth: {'iteration', 'model', 'sampler'}; model with front end and fc_audioset."""
    state = _random_like(create_backbone("cnn14"), 3)
    state["spectrogram_extractor.stft.conv_real.weight"] = torch.randn(513, 1, 1024)
    state["spectrogram_extractor.stft.conv_imag.weight"] = torch.randn(513, 1, 1024)
    state["logmel_extractor.melW"] = torch.rand(513, 64)
    state["fc_audioset.weight"], state["fc_audioset.bias"] = torch.randn(527, 2048), torch.randn(527)
    if edit == "missing":
        del state["conv_block3.bn2.running_mean"]
    elif edit == "extra":
        state["conv_block7.conv1.weight"] = torch.zeros(1)
    elif edit == "16k":
        state["logmel_extractor.melW"] = torch.rand(257, 64)
    rng = np.random.default_rng(0)
    sampler = {"indexes_per_class": [rng.integers(0, 1000, 20, dtype=np.int64) for _ in range(3)],
               "queue": [np.int64(4), np.int64(7)], "pointers_of_classes": [0, 3, 5]}
    torch.save({"iteration": 660000, "model": state, "sampler": sampler}, path)
    return path


def test_vggish_release_loads(tmp_path: Path) -> None:
    path = _vggish_release(tmp_path, pca=False)
    model = create_backbone("vggish")
    load_weights(model, path)
    want = torch.load(path, weights_only=True)
    assert all(torch.equal(model.state_dict()[k], v) for k, v in want.items())


def test_vggish_pca_is_the_release_postprocessing(tmp_path: Path) -> None:
    path = _vggish_release(tmp_path, pca=False)
    plain = create_backbone("vggish")
    load_weights(plain, path)
    x = torch.randn(3, 1, 96, 64)
    with torch.no_grad():
        emb = plain(x).double().numpy()
    rng = np.random.default_rng(2)  # PCA parameters that spread these embeddings over [-2, 2]
    params = {"pca_eigen_vectors": rng.standard_normal((128, 128)) / (emb.std() * np.sqrt(128)),
              "pca_means": emb.mean(axis=0)}
    torch.save(params, tmp_path / PCA_FILE, _use_new_zipfile_serialization=False)
    config = extract_config("resnext3d-tiny", "vggish-pca", None, path, "default", "a {label}", 1, 1)
    assert config.audio_weights_name.startswith("file vggish-10086976.pth + " + PCA_FILE + " (PCA sha256 ")
    _, model = build_backbones(config, torch.device("cpu"))
    pca = (params["pca_eigen_vectors"] @ (emb.T - params["pca_means"][:, None])).T
    want = np.round((np.clip(pca, -2.0, 2.0) + 2.0) * 255.0 / 4.0)
    with torch.no_grad():
        got = model(x).double().numpy()
    assert got.min() >= 0 and got.max() <= 255 and len(np.unique(got)) > 50
    assert np.mean(got == want) > 0.99 and np.abs(got - want).max() <= 1.0  # float32 vs float64 at .5 ties


def test_vggish_pca_without_its_file_names_it(tmp_path: Path) -> None:
    path = _vggish_release(tmp_path, pca=False)
    with pytest.raises(WeightsError, match=f"needs {PCA_FILE} beside it: put that file in {tmp_path}"):
        load_weights(create_backbone("vggish-pca"), path)


def _reference_cnn14(state: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """CNN14 up to fc1 from its published definition, with F.* calls on the checkpoint's tensors."""
    def bn(y: torch.Tensor, p: str) -> torch.Tensor:
        return F.batch_norm(y, state[p + ".running_mean"], state[p + ".running_var"], state[p + ".weight"],
                            state[p + ".bias"], False, 0.0, 1e-5)

    y = bn(x.transpose(1, 3), "bn0").transpose(1, 3)
    for k in range(1, 7):
        p = f"conv_block{k}"
        y = F.relu(bn(F.conv2d(y, state[p + ".conv1.weight"], padding=1), p + ".bn1"))
        y = F.relu(bn(F.conv2d(y, state[p + ".conv2.weight"], padding=1), p + ".bn2"))
        y = F.avg_pool2d(y, 2) if k < 6 else y
    y = y.mean(dim=3)
    y = y.max(dim=2).values + y.mean(dim=2)
    return F.relu(F.linear(y, state["fc1.weight"], state["fc1.bias"]))


def test_cnn14_release_loads_with_its_numpy_sampler(tmp_path: Path) -> None:
    path = _cnn14_release(tmp_path / "Cnn14_mAP=0.431.pth")
    config = extract_config("resnext3d-tiny", "cnn14", None, path, "default", "a {label}", 1, 1)
    assert config.logmel.sample_rate == 32000 and config.audio_weights_name == "file Cnn14_mAP=0.431.pth"
    _, model = build_backbones(config, torch.device("cpu"))
    state = torch.load(path, weights_only=False)["model"]
    x = torch.randn(2, 1, 96, 64)
    with torch.no_grad():
        torch.testing.assert_close(model(x), _reference_cnn14(state, x), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("edit, words", [("missing", "1 missing keys (conv_block3.bn2.running_mean)"),
                                         ("extra", "1 unexpected keys (conv_block7.conv1.weight)"),
                                         ("16k", "logmel_extractor.melW (257, 64) vs (513, 64)")])
def test_cnn14_mismatch_refused_through_the_cli(edit: str, words: str, tmp_path: Path) -> None:
    bad = _cnn14_release(tmp_path / "bad.pth", edit)
    csv = tmp_path / "m.csv"
    csv.write_text("path,label\na.mp4,x\nb.mp4,y\n")
    r = subprocess.run([sys.executable, "-m", "cavnet.cli", "extract", "--dataset", "csv", "--manifest", str(csv),
                        "--visual", "resnext3d-tiny", "--audio", "cnn14", "--audio-weights", str(bad),
                        "--out", str(tmp_path / "s.h5")], capture_output=True, text=True, timeout=120)
    assert r.returncode == 2, r.stderr
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and f"audio weights {bad}" in lines[0] and words in lines[0], r.stderr
    assert not (tmp_path / "s.h5.shards").exists()  # refused before any work


def test_numpy_allow_list_is_exact(tmp_path: Path) -> None:
    """float64/int64 arrays load without trust; a float32 array (a dtype no release uses) is refused, named."""
    model = create_backbone("audio-cnn-tiny")
    path = tmp_path / "w.pth"
    torch.save({"model": model.state_dict(), "extra": np.zeros(3, np.float32)}, path)
    with pytest.raises(WeightsError, match="Float32DType.*trust=True") as info:
        load_weights(model, path)
    assert "\n" not in str(info.value)
    load_weights(model, path, trust=True)  # only when asked


def test_numpy_1_module_names_are_allowed(tmp_path: Path) -> None:
    """Files pickled under numpy 1 name numpy.core.multiarray, not numpy._core: both are allow-listed."""
    path = _vggish_release(tmp_path)
    pca = tmp_path / PCA_FILE
    data = pca.read_bytes()
    old = data.replace(b"numpy._core.multiarray", b"numpy.core.multiarray")  # protocol 2: GLOBAL by text
    assert b"numpy.core.multiarray\n_reconstruct" in old and b"numpy._core" not in old
    pca.write_bytes(old)
    model = create_backbone("vggish-pca")
    load_weights(model, path)
    want = torch.load(pca, weights_only=False)["pca_means"]
    np.testing.assert_allclose(model.pca_means.numpy(), want, rtol=1e-6)


def test_vggish_missing_key_refused_through_the_cli(tmp_path: Path) -> None:
    state = _random_like(VGGish(), 1)
    del state["embeddings.4.bias"]
    bad = tmp_path / "vggish-10086976.pth"
    torch.save(state, bad, _use_new_zipfile_serialization=False)
    csv = tmp_path / "m.csv"
    csv.write_text("path,label\na.mp4,x\nb.mp4,y\n")
    r = subprocess.run([sys.executable, "-m", "cavnet.cli", "extract", "--dataset", "csv", "--manifest", str(csv),
                        "--visual", "resnext3d-tiny", "--audio", "vggish", "--audio-weights", str(bad),
                        "--out", str(tmp_path / "s.h5")], capture_output=True, text=True, timeout=120)
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert r.returncode == 2 and len(lines) == 1, r.stderr
    assert "1 missing keys (embeddings.4.bias)" in lines[0] and str(bad) in lines[0]
