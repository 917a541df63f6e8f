"""CLIP's and CLAP's text towers as cavnet text models (``--text-model clip:DIR`` / ``clap:DIR``), so the
store's label and caption embeddings live in the encoder's own text space.

A text is tokenised by the folder's tokenizer (padded to the longest in the batch, cut at the tower's
position table) and embedded as ``get_text_features`` does it: CLIP's end-of-text token through
``text_projection``, CLAP's pooled first token through its projection; cavnet L2-normalises every row, as it
does the sentence encoder's. No I/O here (loading: :func:`cavnet.extract.backbones.hf.folder.load_text_tower`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

# kind -> (transformers class, accepted model_type values, the key of its sub-config in a two-tower config)
TEXT_TOWERS = {"clip": ("CLIPTextModelWithProjection", ("clip", "clip_text_model")),
               "clap": ("ClapTextModelWithProjection", ("clap", "clap_text_model"))}


def tower_kind(model: str) -> str | None:
    """``"clip"`` / ``"clap"`` for a ``clip:LOCATION`` / ``clap:LOCATION`` text model, else None."""
    kind = model.split(":", 1)[0]
    return kind if ":" in model and kind in TEXT_TOWERS else None


def text_sub_config(kind: str, config: Any) -> Any:
    """The text tower's config from a folder's config (CLIP's projection width is the top level's)."""
    if config.model_type not in ("clip", "clap"):
        return config
    text = config.text_config
    if kind == "clip":
        text.projection_dim = config.projection_dim
    return text


def max_tokens(kind: str, config: Any) -> int:
    """Longest token sequence the tower's position table holds (RoBERTa's positions start after the pad id)."""
    if kind == "clap":
        return int(config.max_position_embeddings - config.pad_token_id - 1)
    return int(config.max_position_embeddings)


class TextTower(nn.Module):
    """``net``: a ``CLIPTextModelWithProjection`` or ``ClapTextModelWithProjection``;
    ``(N, L)`` token ids and mask -> ``(N, D)`` unit rows."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        out = self.net(input_ids=input_ids, attention_mask=attention_mask).text_embeds
        return nn.functional.normalize(out, dim=-1)


@dataclass
class TowerEncoder:
    """Texts -> ``(N, D)`` float32 unit rows with ``tower`` and its ``tokenizer``, in batches."""

    tower: TextTower
    tokenizer: Any
    max_length: int
    device: str = "cpu"
    batch_size: int = 64

    @property
    def dim(self) -> int:
        return int(self.tower.net.config.projection_dim)

    @torch.inference_mode()
    def encode(self, texts: list[str]) -> np.ndarray:
        out = []
        for at in range(0, len(texts), self.batch_size):
            tokens = self.tokenizer(list(texts[at:at + self.batch_size]), padding=True, truncation=True,
                                    max_length=self.max_length, return_tensors="pt").to(self.device)
            out.append(self.tower(tokens["input_ids"], tokens["attention_mask"]).float().cpu().numpy())
        return np.concatenate(out) if out else np.zeros((0, self.dim), np.float32)
