"""The Hugging Face encoders against transformers' own forward.

For every registered family and both text towers, a tiny random model written by ``save_pretrained`` is
loaded through cavnet's loader and cavnet's per-clip / per-segment / per-prompt features are compared with
transformers' model run on the output of the folder's own processor, for the same decoded frames, the same
audio windows, the same prompts (float32, atol 1e-5). Folders that do not fit are refused in one line.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from cavnet.errors import CavnetError
from cavnet.extract.backbones import create_backbone, feature_dim, get_spec
from cavnet.extract.backbones.checkpoint_file import file_sha256
from cavnet.extract.config import EncoderConfig
from cavnet.extract.embed import backbone_for, decode_item, embed_files
from cavnet.extract.manifest import ManifestRow
from cavnet.extract.text import TextEncoder
from cavnet.extract.backbones.pretrained import extract_config

ATOL = 1e-5
PROMPT = "a video of a person {label}"


@pytest.fixture(scope="module")
def video(hf_tiny):
    """A 2.8 s corpus video: 2 clips of 8 frames and two 1.28 s AST windows (1 s for CLAP) at its two ends."""
    return hf_tiny["corpus"].parent / "c1_0.mp4"


def _config(visual, audio, vw=None, aw=None, text="default", **kw):
    return extract_config(visual, audio, vw, aw, text, PROMPT, 2, 2, **kw)


def _row(path: Path) -> ManifestRow:
    return ManifestRow(path.stem, str(path), -1, "", "", exists=True)


def _windows(path: Path, config, seconds: float) -> list[np.ndarray]:
    """The audio at the start and at the end of the video, ``seconds`` long: where cavnet's two segments
    must lie (each centred on its clip, then moved inside the audio)."""
    from cavnet.extract.media.decode import decode_video

    wave = decode_video(str(path), config.sampling, config.logmel, 2).audio
    n = int(round(seconds * config.logmel.sample_rate))
    return [wave[:n], wave[-n:]]


@torch.no_grad()
def test_clip_and_ast_equal_transformers(hf_tiny, video, one_torch_thread):
    from transformers import ASTFeatureExtractor, ASTForAudioClassification, CLIPImageProcessor, CLIPModel

    config = _config("clip-vit-b16", "ast", hf_tiny["clip"], hf_tiny["ast"])
    assert (config.visual, config.audio) == ("clip-vit-any", "ast-any")  # tiny: no registered size
    assert config.sampling.size == 32 and abs(config.sampling.mean[0] - 0.48145466 * 255) < 1e-6
    got = embed_files([str(video)], config, batch_clips=4)[0]
    clips = decode_item(_row(video), config).clips
    clip, proc = CLIPModel.from_pretrained(hf_tiny["clip"]).eval(), CLIPImageProcessor.from_pretrained(hf_tiny["clip"])
    assert got.visual.shape == (2, 16)
    for j, frames in enumerate(clips):
        want = clip.get_image_features(pixel_values=proc(images=list(frames), return_tensors="pt")["pixel_values"])
        np.testing.assert_allclose(got.visual[j], want.pooler_output.mean(0).numpy(), atol=ATOL)
    ast = ASTForAudioClassification.from_pretrained(hf_tiny["ast"]).eval()
    fe = ASTFeatureExtractor.from_pretrained(hf_tiny["ast"])
    assert got.audio.shape == (2, 32)
    for j, piece in enumerate(_windows(video, config, 1.28)):
        x = fe(piece, sampling_rate=16000, return_tensors="pt")["input_values"]
        pooled = ast.audio_spectrogram_transformer(x).pooler_output
        np.testing.assert_allclose(got.audio[j], pooled[0].numpy(), atol=ATOL)
        torch.testing.assert_close(ast.classifier(pooled), ast(x).logits)  # what the classifier reads


@torch.no_grad()
def test_videomae_and_clap_equal_transformers(hf_tiny, video, one_torch_thread):
    from transformers import ClapFeatureExtractor, ClapModel, VideoMAEForVideoClassification, VideoMAEImageProcessor

    config = _config("videomae-base", "clap-htsat", hf_tiny["videomae"], hf_tiny["clap"])
    assert config.sampling.frames == 4 and abs(config.sampling.std[0] - 0.225 * 255) < 1e-6  # the folder's std
    got = embed_files([str(video)], config, batch_clips=4)[0]
    net = VideoMAEForVideoClassification.from_pretrained(hf_tiny["videomae"]).eval()
    proc = VideoMAEImageProcessor.from_pretrained(hf_tiny["videomae"])
    for j, frames in enumerate(decode_item(_row(video), config).clips):
        x = proc.preprocess(list(frames), return_tensors="pt")["pixel_values"]
        feature = net.fc_norm(net.videomae(x).last_hidden_state.mean(1))
        np.testing.assert_allclose(got.visual[j], feature[0].numpy(), atol=ATOL)
        torch.testing.assert_close(net.classifier(feature), net(x).logits)
    clap, fe = ClapModel.from_pretrained(hf_tiny["clap"]).eval(), ClapFeatureExtractor.from_pretrained(hf_tiny["clap"])
    for j, piece in enumerate(_windows(video, config, 1.0)):
        inputs = fe(piece, sampling_rate=16000, return_tensors="pt")
        want = clap.get_audio_features(input_features=inputs["input_features"].float(), is_longer=inputs["is_longer"])
        np.testing.assert_allclose(got.audio[j], want.pooler_output[0].numpy(), atol=ATOL)


@torch.no_grad()
def test_fused_clap_gets_the_extractors_four_channels_and_is_longer(hf_tiny, video, one_torch_thread):
    from transformers import ClapFeatureExtractor, ClapModel

    config = _config("resnext3d-tiny", "clap-htsat-fused", aw=hf_tiny["fused_clap"])
    got = embed_files([str(video)], config, batch_clips=4)[0]
    clap = ClapModel.from_pretrained(hf_tiny["fused_clap"]).eval()
    fe = ClapFeatureExtractor.from_pretrained(hf_tiny["fused_clap"])
    for j, piece in enumerate(_windows(video, config, 1.0)):
        inputs = fe(piece, sampling_rate=16000, return_tensors="pt")
        assert inputs["input_features"].shape[1] == 4 and bool(inputs["is_longer"].all())
        want = clap.get_audio_features(input_features=inputs["input_features"].float(), is_longer=inputs["is_longer"])
        np.testing.assert_allclose(got.audio[j], want.pooler_output[0].numpy(), atol=ATOL)


def test_audio_shorter_than_one_frame_or_none_does_not_stop_the_ast_front_end(hf_tiny):
    from cavnet.extract.media.frontends import audio_examples

    config = _config("resnext3d-tiny", "ast", aw=hf_tiny["ast"])
    short = audio_examples(np.full(10, 0.1, np.float32), config, None, 0.0)  # 10 samples: padded to one frame
    assert short.shape == (1, 1, 128, 128) and np.isfinite(short).all()
    assert audio_examples(None, config, None, 2.0).shape == (0, 1, 128, 128)


@torch.no_grad()
def test_text_towers_equal_transformers(hf_tiny, one_torch_thread):
    from transformers import AutoTokenizer, ClapModel, CLIPModel

    prompts = ["a video of a person dancing", "a video of a person playing drums", "x"]
    for kind, cls in (("clip", CLIPModel), ("clap", ClapModel)):
        encoder = TextEncoder(f"{kind}:{hf_tiny[kind]}")
        got = encoder.encode(prompts)
        model, tok = cls.from_pretrained(hf_tiny[kind]).eval(), AutoTokenizer.from_pretrained(hf_tiny[kind])
        want = model.get_text_features(**tok(prompts, padding=True, return_tensors="pt")).pooler_output
        want = torch.nn.functional.normalize(want, dim=-1)  # CLAP's is already; cavnet's rows all are
        np.testing.assert_allclose(got, want.numpy(), atol=ATOL)
        fingerprint = json.loads(encoder.fingerprint())
        assert fingerprint["dim"] == 16 and fingerprint["sha256"] == file_sha256(hf_tiny[kind] / "model.safetensors")


def test_frame_subset_and_pooled_embedding(hf_tiny, one_torch_thread):
    """CLIP on 2 of 8 frames (indices 0 and 7), class tokens before the projection: hidden-size wide."""
    from transformers import CLIPModel

    config = _config("clip-vit-b16", "audio-cnn-tiny", hf_tiny["clip"],
                     encoder=EncoderConfig(frame_subset=2, clip_embedding="pooled"))
    assert feature_dim(config, "visual") == 32
    model = backbone_for(config, "visual")
    clips = torch.randn(3, 3, 8, 32, 32, generator=torch.Generator().manual_seed(0))
    ref = CLIPModel.from_pretrained(hf_tiny["clip"]).eval()
    with torch.no_grad():
        got = model(clips)
        want = ref.vision_model(pixel_values=clips[:, :, [0, 7]].transpose(1, 2).reshape(6, 3, 32, 32)).pooler_output
    torch.testing.assert_close(got, want.view(3, 2, 32).mean(1), atol=ATOL, rtol=0)


@pytest.mark.parametrize("case, words", [
    ("missing_key", "missing keys (visual_projection.weight)"),
    ("no_processor", "no preprocessor_config.json"),
    ("wrong_architecture", "is a 'videomae' checkpoint (VideoMAEForVideoClassification); clip-vit-b16 needs a CLIP"),
])
def test_folders_that_do_not_fit_are_refused_in_one_line(hf_tiny, case, words):
    with pytest.raises(CavnetError) as err:
        _config("clip-vit-b16", "audio-cnn-tiny", hf_tiny[case])
    assert words in str(err.value) and "\n" not in str(err.value)


def test_a_wrong_architecture_through_the_cli_exits_2(hf_tiny, tmp_path):
    from click.testing import CliRunner

    from cavnet.cli import main

    r = CliRunner().invoke(main, ["extract", "--dataset", "csv", "--manifest", str(hf_tiny["corpus"]), "--visual",
                                  "clip-vit-b16", "--visual-weights", str(hf_tiny["videomae"]), "--audio",
                                  "audio-cnn-tiny", "--out", str(tmp_path / "s.h5")])
    assert r.exit_code == 2 and r.output.count("\n") == 1, r.output
    assert r.output.startswith("cavnet: error: visual weights") and "needs a CLIP image tower one" in r.output


def test_weights_from_the_hugging_face_cache_or_one_line_naming_the_model(hf_tiny, tmp_path, monkeypatch):
    import shutil

    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))
    with pytest.raises(CavnetError, match=r"clip-vit-b16: no weights on this machine: openai/clip-vit-base-patch16 is "
                                          r"not in the Hugging Face cache .*--visual-weights DIR"):
        _config("clip-vit-b16", "audio-cnn-tiny")
    random = _config("clip-vit-b16", "audio-cnn-tiny", random_ok=True)  # asked for: the registered size at random
    assert random.visual == "clip-vit-b16" and random.visual_weights_sha256 is None
    assert feature_dim(random, "visual") == 512
    repo = tmp_path / "models--openai--clip-vit-base-patch16"
    shutil.copytree(hf_tiny["clip"], repo / "snapshots" / "0123456789abcdef")
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("0123456789abcdef")
    cached = _config("clip-vit-b16", "audio-cnn-tiny")
    assert cached.visual_weights_name == "hf openai/clip-vit-base-patch16@0123456789ab"
    assert cached.visual_weights_sha256 == file_sha256(hf_tiny["clip"] / "model.safetensors")


def test_a_folder_is_recorded_under_the_name_of_its_size():
    from transformers import CLIPVisionConfig

    from cavnet.extract.backbones.hf.clip import CLIP

    assert CLIP.name_for(CLIPVisionConfig(patch_size=32, projection_dim=512)) == "clip-vit-b32"
    large = {"hidden_size": 1024, "num_hidden_layers": 24, "num_attention_heads": 16, "patch_size": 14,
             "projection_dim": 768}
    assert CLIP.name_for(CLIPVisionConfig(**large)) == "clip-vit-l14"
    assert CLIP.name_for(CLIPVisionConfig(**large, image_size=336)) == "clip-vit-any"  # L/14 at 336 px: not registered
    with pytest.raises(CavnetError, match="clip-vit-any takes its size from a folder"):
        create_backbone("clip-vit-any")


# Parameters of the registered sizes (the tower cavnet runs, without heads), as docs/backbones.md lists them
# (VideoMAE's, 86.23 M and 303.86 M, are left out here: building its position table takes seconds)
PARAMS_M = {"clip-vit-b16": 86.19, "clip-vit-b32": 87.85, "clip-vit-l14": 303.97, "ast": 86.19, "clap-htsat": 28.19,
            "clap-htsat-fused": 28.21}


@pytest.mark.parametrize("name", sorted(PARAMS_M))
def test_registered_sizes_have_the_documented_parameters(name):
    with torch.device("meta"):
        model = create_backbone(name)
    params = sum(p.numel() for p in model.parameters()) / 1e6
    assert abs(params - PARAMS_M[name]) < 0.01, params
    assert get_spec(name).out_dim == model.out_dim


def _cavnet(*args: str) -> str:
    from click.testing import CliRunner

    from cavnet.cli import main

    r = CliRunner().invoke(main, [str(a) for a in args])
    assert r.exit_code == 0, r.output[-3000:]
    return r.output


def test_extract_clip_ast_then_every_command_uses_the_store(hf_tiny, tmp_path, one_torch_thread):
    """``cavnet extract --visual clip-vit-b16 --audio ast`` (tiny folders, CLIP's own text tower) -> check,
    fuse-train, evaluate, predict (zero-shot labels through the tower too) and ablate's frozen-encoder rows."""
    import dask
    import h5py
    from distributed import LocalCluster

    from cavnet.pipelines.extract.cluster import CLUSTER_CONFIG

    store, clip = tmp_path / "s.h5", hf_tiny["clip"]
    # one in-process worker thread: it shares this process's imports (transformers) instead of starting afresh
    with dask.config.set(CLUSTER_CONFIG), LocalCluster(n_workers=1, threads_per_worker=1, processes=False,
                                                       dashboard_address=":0") as cluster:
        out = _cavnet("extract", "--dataset", "csv", "--manifest", hf_tiny["corpus"], "--visual", "clip-vit-b16",
                      "--audio", "ast", "--visual-weights", clip, "--audio-weights", hf_tiny["ast"], "--text-model",
                      f"clip:{clip}", "--clips", "2", "--segments", "2", "--batch-clips", "8", "--device", "cpu",
                      "--scheduler", cluster.scheduler.address, "--out", store, "--no-progress")
    assert "recorded as clip-vit-any" in out and "recorded as ast-any" in out
    with h5py.File(store, "r") as f:
        config, dims = json.loads(f.attrs["config"]), json.loads(f.attrs["dims"])
    got = (config["visual"], config["audio"], dims["visual_dim"], dims["audio_dim"])
    assert got == ("clip-vit-any", "ast-any", 16, 32)
    assert config["visual_weights_sha256"] == file_sha256(clip / "model.safetensors")
    assert config["visual_weights_name"] == "folder clip" and config["text_model"] == f"clip:{clip.resolve()}"
    assert "random weights" not in _cavnet("check", store)
    run = tmp_path / "run"
    _cavnet("fuse-train", "--store", store, "--out", run, "--epochs", "2", "--batch-size", "4", "--d-model", "16",
            "--device", "cpu", "--no-progress")
    _cavnet("evaluate", "--store", store, "--checkpoint", run / "best.pt", "--device", "cpu", "--out",
            tmp_path / "eval", "--no-progress")
    assert json.loads((tmp_path / "eval" / "metrics.json").read_text())["count"] == 4  # the 4 val videos
    (tmp_path / "labels.txt").write_text("class0\nclass3\n")
    videos = sorted(hf_tiny["corpus"].parent.glob("c*_2.mp4"))
    predicted = _cavnet("predict", "--checkpoint", run / "best.pt", "--labels", tmp_path / "labels.txt", "--top-k",
                        "1", "--device", "cpu", *videos)
    assert all(v.name in predicted for v in videos)
    abl = tmp_path / "ablate"
    _cavnet("ablate", "--store", store, "--out", abl, "--preset", "encoders", "--seeds", "1", "--epochs", "2",
            "--batch-size", "4", "--d-model", "16", "--workers", "1")
    with open(abl / "results.csv") as fh:
        rows = {r["variant"]: r for r in csv.DictReader(fh)}
    assert list(rows) == ["zero-shot", "linear-probe", "cavnet"]
    assert float(rows["zero-shot"]["top1_mean"]) == pytest.approx(_zero_shot_top1(store))


def _zero_shot_top1(store: Path) -> float:
    """Val top-1 (%) of the mean clip embedding against the class prompts' text embeddings, by cosine,
    read from the HDF5 file directly."""
    import h5py

    with h5py.File(store, "r") as f:
        keep = (f["videos/split"].asstr()[()] == "val") & (f["videos/label"][()] >= 0)
        clips, mask = f["visual/clips"][()][keep].astype(np.float64), f["visual/mask"][()][keep]
        labels, text = f["videos/label"][()][keep], f["classes/embedding"][()].astype(np.float64)
    video = (clips * mask[..., None]).sum(1) / mask.sum(1, keepdims=True)
    video /= np.linalg.norm(video, axis=1, keepdims=True)
    text /= np.linalg.norm(text, axis=1, keepdims=True)
    return 100.0 * float(((video @ text.T).argmax(1) == labels).mean())


def test_ablate_leaves_the_zero_shot_row_out_of_a_store_without_a_text_tower(tmp_path):
    """A store of 3D-ResNeXt features and sentence embeddings: one line says why the zero-shot row is left
    out; the probe row runs once whatever the seeds."""
    from store_factory import make_store

    from cavnet.fuse.train_config import TrainConfig
    from cavnet.pipelines.ablate import run_ablate

    make_store(tmp_path / "s.h5", videos=48)
    msgs: list[str] = []
    rows = run_ablate(tmp_path / "s.h5", tmp_path / "a", "encoders", 2, TrainConfig(device="cpu"), 1, msgs.append,
                      only=("zero-shot", "linear-probe"))
    assert any("'Frozen encoder, zero-shot' is left out" in m for m in msgs)
    assert [r["variant"] for r in rows] == ["linear-probe"] and rows[0]["seeds"] == 1
    assert rows[0]["top1_mean"] > 50.0  # 4 separable classes
