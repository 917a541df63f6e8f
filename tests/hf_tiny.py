"""Tiny random Hugging Face model folders, written by ``save_pretrained`` as a Hub snapshot lays them out
(config.json, model.safetensors, the processor's settings, the tokenizer): CLIP (image and text towers),
VideoMAE, AST and CLAP (audio and text towers), hidden size 32 and 2 layers, plus broken copies.

The processors keep the releases' recipes where the tiny models allow it (CLIP's mean and std, AST's 128
fbank bins and normalisation), with small sizes: 32 px frames, AST's 128-frame input (1.28 s, its speech
commands release's length), CLAP's 16 kHz, 16 bins, 1 s.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch


def _byte_vocab(specials: list[str], suffix: str = "") -> dict[str, int]:
    """Specials, then every byte-level character (and with ``suffix``, each again as a word end): merge-free
    BPE that tokenises any text, one token per byte."""
    from tokenizers.pre_tokenizers import ByteLevel

    vocab = {t: i for i, t in enumerate(specials)}
    for c in sorted(ByteLevel.alphabet()):
        vocab[c] = len(vocab)
    if suffix:
        for c in sorted(ByteLevel.alphabet()):
            vocab[c + suffix] = len(vocab)
    return vocab


TINY = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2}


def write_clip(out: Path) -> Path:
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor, CLIPTokenizer

    vocab = _byte_vocab(["<|startoftext|>", "<|endoftext|>"], "</w>")
    config = CLIPConfig(text_config={**TINY, "vocab_size": len(vocab), "max_position_embeddings": 40,
                                     "bos_token_id": 0, "eos_token_id": 1, "pad_token_id": 1},
                        vision_config={**TINY, "image_size": 32, "patch_size": 8}, projection_dim=16)
    torch.manual_seed(1)
    CLIPModel(config).save_pretrained(out)
    processor = CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    CLIPProcessor(image_processor=processor, tokenizer=CLIPTokenizer(vocab=vocab, merges=[])).save_pretrained(out)
    return out


def write_videomae(out: Path) -> Path:
    from transformers import VideoMAEConfig, VideoMAEForVideoClassification, VideoMAEImageProcessor

    config = VideoMAEConfig(**TINY, image_size=32, patch_size=8, num_frames=4, tubelet_size=2,
                            use_mean_pooling=True, num_labels=3)
    torch.manual_seed(2)
    VideoMAEForVideoClassification(config).save_pretrained(out)
    VideoMAEImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32},
                           image_mean=[0.45, 0.45, 0.45], image_std=[0.225, 0.225, 0.225]).save_pretrained(out)
    return out


def write_ast(out: Path) -> Path:
    from transformers import ASTConfig, ASTFeatureExtractor, ASTForAudioClassification

    config = ASTConfig(**TINY, max_length=128, num_mel_bins=128, num_labels=5)
    torch.manual_seed(3)
    ASTForAudioClassification(config).save_pretrained(out)
    ASTFeatureExtractor(max_length=128).save_pretrained(out)
    return out


def write_clap(out: Path) -> Path:
    from transformers import ClapConfig, ClapFeatureExtractor, ClapModel, ClapProcessor, RobertaTokenizer

    vocab = _byte_vocab(["<s>", "<pad>", "</s>", "<unk>", "<mask>"])
    config = ClapConfig(
        text_config={**TINY, "vocab_size": len(vocab), "max_position_embeddings": 42, "pad_token_id": 1,
                     "bos_token_id": 0, "eos_token_id": 2, "projection_hidden_size": 32},
        audio_config={"patch_embeds_hidden_size": 16, "depths": [1, 1], "num_attention_heads": [1, 2],
                      "hidden_size": 32, "spec_size": 64, "num_mel_bins": 16, "projection_hidden_size": 32},
        projection_dim=16)
    torch.manual_seed(4)
    ClapModel(config).save_pretrained(out)
    extractor = ClapFeatureExtractor(feature_size=16, sampling_rate=16000, hop_length=160, max_length_s=1,
                                     fft_window_size=512, frequency_max=8000, truncation="rand_trunc")
    tokenizer = RobertaTokenizer(vocab=vocab, merges=[])
    ClapProcessor(feature_extractor=extractor, tokenizer=tokenizer).save_pretrained(out)
    return out


def broken_copies(clip: Path, videomae: Path, out: Path) -> dict[str, Path]:
    """A CLIP folder without ``visual_projection.weight``, one without its processor file, and a VideoMAE
    folder (another architecture for ``clip-vit-b16``)."""
    from safetensors.torch import load_file, save_file

    missing_key, no_processor = out / "missing-key", out / "no-processor"
    shutil.copytree(clip, missing_key)
    state = load_file(clip / "model.safetensors")
    state.pop("visual_projection.weight")
    save_file(state, missing_key / "model.safetensors", metadata={"format": "pt"})
    shutil.copytree(clip, no_processor)
    for name in ("preprocessor_config.json", "processor_config.json"):
        (no_processor / name).unlink(missing_ok=True)
    return {"missing_key": missing_key, "no_processor": no_processor, "wrong_architecture": videomae}


def model_type(folder: Path) -> str:
    return json.loads((folder / "config.json").read_text())["model_type"]


def write_fused_clap(out: Path) -> Path:
    """A CLAP folder with feature fusion and the fusion extractor (four channels, ``is_longer``)."""
    from transformers import ClapConfig, ClapFeatureExtractor, ClapModel

    config = ClapConfig(audio_config={"patch_embeds_hidden_size": 16, "depths": [1, 1], "num_attention_heads": [1, 2],
                                      "hidden_size": 32, "spec_size": 64, "num_mel_bins": 16,
                                      "projection_hidden_size": 32, "enable_fusion": True, "fusion_type": "aff_2d"},
                        text_config={**TINY, "projection_hidden_size": 32}, projection_dim=16)
    torch.manual_seed(5)
    ClapModel(config).save_pretrained(out)
    ClapFeatureExtractor(feature_size=16, sampling_rate=16000, hop_length=160, max_length_s=1, fft_window_size=512,
                         frequency_max=8000, truncation="fusion").save_pretrained(out)
    return out


def write_corpus(root: Path, classes: int = 4, per_class: int = 3, seconds: float = 2.8) -> Path:
    """``per_class`` textured videos per class (the class's colour over noise, its tone over noise, 64 x 48 at
    25 fps, 16 kHz mono), the last of each class in split val; returns the CSV ``path,label,split``."""
    import numpy as np

    from cavnet.extract.synth.avwrite import write_video

    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    lines = ["path,label,split"]
    frames, samples = int(round(seconds * 25)), int(round(seconds * 16000))
    t = np.arange(samples) / 16000
    for c in range(classes):
        colour = np.array([60 * c, 255 - 50 * c, 40 + 50 * c], np.float32)
        for k in range(per_class):
            noise = rng.integers(0, 80, (frames, 48, 64, 3))
            video = np.clip(colour + noise, 0, 255).astype(np.uint8)
            audio = (0.4 * np.sin(2 * np.pi * 220 * (c + 1) * t) + 0.05 * rng.standard_normal(samples))
            path = root / f"c{c}_{k}.mp4"
            write_video(path, video, 25, audio[None].astype(np.float32), 16000)
            lines.append(f"{path.name},class{c},{'val' if k == per_class - 1 else 'train'}")
    manifest = root / "manifest.csv"
    manifest.write_text("\n".join(lines) + "\n")
    return manifest
