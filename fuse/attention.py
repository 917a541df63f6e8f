"""The attention layers of CAV-Net (eq. 1) and their feed-forward; an attention may take a time bias
(``fuse/clock.py``)."""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from cavnet.fuse.clock import TimeBias
from cavnet.fuse.config import FusionConfig


class MultiHeadAttention(nn.Module):
    """Eq. 1: B(S, T) = softmax((Wq S)(Wk T)^T / N_d)(Wv T), over ``heads`` heads, then an output projection
    (``out_proj``; none is eq. 1 as written). ``bias=False``: no bias in W_q, W_k, W_v, W_o (eq. 1 has none).

    N_d = sqrt(head_dim). Keys where ``key_mask`` is False get weight exactly 0; a query with no valid key
    returns 0.
    """

    def __init__(self, config: FusionConfig) -> None:
        super().__init__()
        d = config.d_model
        self.heads = config.heads
        self.head_dim = d // config.heads
        self.w_q = nn.Linear(d, d, bias=config.bias)
        self.w_k = nn.Linear(d, d, bias=config.bias)
        self.w_v = nn.Linear(d, d, bias=config.bias)
        self.w_o = nn.Linear(d, d, bias=config.bias) if config.out_proj else nn.Identity()
        self.attn_drop = nn.Dropout(config.attn_dropout)

    def forward(self, s: torch.Tensor, t: torch.Tensor, key_mask: torch.Tensor,
                bias: torch.Tensor | None = None) -> torch.Tensor:
        """s (B, Ls, d) queries, t (B, Lt, d) keys/values, key_mask (B, Lt) bool, optional score bias
        (B, h, Ls, Lt) -> (B, Ls, d)."""
        b, ls, d = s.shape
        lt = t.shape[1]
        q = self.w_q(s).view(b, ls, self.heads, self.head_dim).transpose(1, 2)  # (B, h, Ls, hd)
        k = self.w_k(t).view(b, lt, self.heads, self.head_dim).transpose(1, 2)  # (B, h, Lt, hd)
        v = self.w_v(t).view(b, lt, self.heads, self.head_dim).transpose(1, 2)
        scores = (q @ k.transpose(-2, -1)) / math.sqrt(self.head_dim)  # (B, h, Ls, Lt)
        if bias is not None:
            scores = scores + bias
        keep = key_mask[:, None, None, :]
        # a finite fill (not -inf) keeps all-masked rows NaN-free; multiplying by keep then zeroes them
        scores = scores.masked_fill(~keep, torch.finfo(scores.dtype).min)
        attn = scores.softmax(dim=-1) * keep
        attn = self.attn_drop(attn)
        out = (attn @ v).transpose(1, 2).reshape(b, ls, d)
        return self.w_o(out)


class FeedForward(nn.Module):
    """Position-wise MLP: Linear -> GELU -> dropout -> Linear.  (B, L, d) -> (B, L, d)"""

    def __init__(self, config: FusionConfig) -> None:
        super().__init__()
        hidden = max(1, int(round(config.d_model * config.mlp_ratio)))
        self.fc1 = nn.Linear(config.d_model, hidden)
        self.fc2 = nn.Linear(hidden, config.d_model)
        self.drop = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.drop(F.gelu(self.fc1(x))))


class AttentionBlock(nn.Module):
    """One pre-norm B(S, T) layer: S + drop(Attn(LN(S), LN(T))), then S + drop(FFN(LN(S))).

    ``cross=False`` (eq. 2-3) normalises S and T with the same LayerNorm, since T is S. With ``timed`` the
    scores get a ``TimeBias`` from the token times passed to forward. ``residual=False`` drops the "S +"
    and ``layer_norm=False`` the LNs: with neither (and mlp_ratio 0) the layer is B(S, T) of eq. 1 itself,
    except that a video whose T has no valid token keeps S (eq. 1 would give 0).
    """

    def __init__(self, config: FusionConfig, cross: bool, timed: bool = False) -> None:
        super().__init__()
        d = config.d_model
        norm = (lambda: nn.LayerNorm(d)) if config.layer_norm else nn.Identity
        self.residual = config.residual
        self.ln_q = norm()
        self.ln_kv = norm() if cross else None
        self.attn = MultiHeadAttention(config)
        self.time_bias = TimeBias(config) if timed else None
        self.drop = nn.Dropout(config.dropout)
        self.ln_ff = norm() if config.mlp_ratio > 0 else None
        self.ff = FeedForward(config) if config.mlp_ratio > 0 else None

    def forward(self, s: torch.Tensor, t: torch.Tensor, t_mask: torch.Tensor,
                times: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
        """s (B, Ls, d), t (B, Lt, d), t_mask (B, Lt) bool, times ((B, Ls), (B, Lt)) -> (B, Ls, d)."""
        q = self.ln_q(s)
        kv = q if self.ln_kv is None else self.ln_kv(t)
        bias = self.time_bias(*times) if self.time_bias is not None and times is not None else None
        out = self.drop(self.attn(q, kv, t_mask, bias))
        # without the residual, a video with nothing to attend to (no audio) keeps S rather than 0
        s = s + out if self.residual else torch.where(t_mask.any(dim=1)[:, None, None], out, s)
        if self.ff is not None:
            out = self.drop(self.ff(self.ln_ff(s)))
            s = s + out if self.residual else out
        return s
