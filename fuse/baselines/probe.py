"""Frozen-encoder baselines on a store, without the fusion model: the encoder's own zero-shot and a linear
probe on the pooled features (the ablation's "Frozen encoder" rows).

- **Zero-shot**: each video's pooled descriptor (the masked mean of its clip descriptors, or of its audio
  segments) against the class prompts' embeddings by cosine similarity. It means something only when the
  store's text side is the same encoder's text tower: a CLIP image tower (projected embeddings) with
  ``--text-model clip:`` of the same checkpoint, or a CLAP audio tower with ``clap:`` of the same checkpoint
  (same safetensors sha256); :func:`zero_shot_modality` says which, if any.
- **Linear probe**: multinomial logistic regression on the pooled visual and audio descriptors, concatenated
  and standardised with the training split's statistics, fitted by L-BFGS (L2 penalty ``l2``) on the
  training split and scored on the validation split. Deterministic: the same store gives the same numbers.
"""

from __future__ import annotations

import json

import numpy as np
import torch

from cavnet.errors import CavnetError
from cavnet.extract.backbones import get_spec
from cavnet.extract.store.reader import Features, FeatureStore
from cavnet.fuse.metrics import accuracy_metrics


def pooled(feats: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """``(N, L, D)`` descriptors and ``(N, L)`` mask -> ``(N, D)`` masked mean (zeros where none is valid)."""
    m = mask.astype(np.float32)[..., None]
    return (feats * m).sum(axis=1) / np.maximum(m.sum(axis=1), 1.0)


def zero_shot_modality(store: FeatureStore) -> str | None:
    """``"visual"`` / ``"audio"`` when that backbone and the store's text model are one CLIP / CLAP
    checkpoint (same sha256), the visual one giving projected embeddings; else None."""
    try:
        text = json.loads(store.text_model)
    except ValueError:
        return None
    kind, sha = str(text.get("model", "")).split(":", 1)[0], text.get("sha256")
    c = store.config
    for modality, name, weights_sha, dim in (("visual", c.visual, c.visual_weights_sha256, store.dims.visual_dim),
                                             ("audio", c.audio, c.audio_weights_sha256, store.dims.audio_dim)):
        hf = get_spec(name).hf if name else None
        if hf is None or hf.family.text_kind != kind or not sha or sha != weights_sha or dim != store.text_dim:
            continue
        if modality == "visual" and c.encoder.clip_embedding != "projected":
            continue
        return modality
    return None


def _split(store: FeatureStore, split: str) -> Features:
    feats = store.split(split, labelled=True)
    if len(feats.labels) == 0:
        raise CavnetError(f"{store.path}: split {split!r} has no usable labelled videos")
    return feats


def zero_shot(store: FeatureStore, split: str, modality: str) -> dict[str, float]:
    """top-1 / top-5 / mean-class accuracy (%) of the encoder's zero-shot on ``split``."""
    f = _split(store, split)
    x = pooled(f.visual, f.vmask) if modality == "visual" else pooled(f.audio, f.amask)
    x /= np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    t = store.class_embedding / np.maximum(np.linalg.norm(store.class_embedding, axis=1, keepdims=True), 1e-12)
    return accuracy_metrics(x @ t.T, f.labels, len(store.class_names))


def probe_inputs(f: Features) -> np.ndarray:
    """``(N, Dv + Da)``: pooled visual and audio descriptors side by side."""
    return np.concatenate([pooled(f.visual, f.vmask), pooled(f.audio, f.amask)], axis=1)


def linear_probe(store: FeatureStore, train_split: str, val_split: str, l2: float = 1e-3, iters: int = 200
                 ) -> dict[str, float]:
    """Validation accuracy (%) of a logistic regression fitted on the training split's pooled features."""
    tr, va = _split(store, train_split), _split(store, val_split)
    x_tr, x_va = probe_inputs(tr), probe_inputs(va)
    mean, std = x_tr.mean(axis=0), x_tr.std(axis=0) + 1e-6
    x = torch.from_numpy((x_tr - mean) / std).double()
    y = torch.from_numpy(tr.labels)
    classes = len(store.class_names)
    w = torch.zeros(x.shape[1], classes, dtype=torch.float64, requires_grad=True)
    b = torch.zeros(classes, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([w, b], max_iter=iters, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(x @ w + b, y) + l2 * (w * w).sum()
        loss.backward()
        return loss

    opt.step(closure)
    with torch.no_grad():
        scores = torch.from_numpy((x_va - mean) / std).double() @ w + b
    return accuracy_metrics(scores.numpy(), va.labels, classes)
