"""CAV-Net bi-modal video encoder (Hsiao et al., section 3.1), read top to bottom.

    V, A          clip / segment descriptors                    (B, n, Dv), (B, m, Da)
    -> TokenEmbed  Linear -> LayerNorm -> + position -> dropout  (B, n, d), (B, m, d)
                   [+ time embedding of the shared clock]       (time_encoding='shared', not in the paper)
    -> V_self = B(V, V), A_self = B(A, A)                        eq. 2-3   (self_attn)
    -> V_fuse = B(V_self, A_self), A_fuse = B(A_self, V_self)    eq. 4-5   (cross_attn)
       [+ time bias -s_h |t_q - t_k| in their scores]          (time_encoding='shared', not in the paper)
    -> X = [V_fuse, A_fuse], final LayerNorm                     eq. 6     (B, n+m, d)
    -> r(X) = sigmoid(W2 ReLU(W1 X)), z = sum_i r_i X_i          eq. 7-8   (pool='gate')
    -> LayerNorm -> dropout -> Linear                            (B, text_dim) or (B, C)

Each B(S, T) (eq. 1) is multi-head scaled dot-product attention with N_d = sqrt(d_model / heads), wrapped
pre-norm: S + Attn(LN(S), LN(T)) followed by S + FFN(LN(S)) (fuse/attention.py). The preset
'paper-literal' (``FUSION_PRESETS``) removes heads, W_o, residuals, LayerNorms, FFN, positions, clock, the
biases of W_q, W_k, W_v, W_1, W_2 and dropout, leaving eq. 1-8 as written between the input projection
and the head.

Masking: padded tokens are zeroed at the input, masked as keys in every attention and given pooling
weight 0, so neither their values nor their number changes the output. A video with no valid audio has
no audio keys: the cross-attention of its visual tokens adds nothing (V_fuse = V_self + FFN), its audio
tokens are excluded from X, and z pools only the visual tokens. Rows of attention with no valid key are
set to zero, never NaN. See docs/model.md for every choice the paper leaves open.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from cavnet.fuse.attention import AttentionBlock
from cavnet.fuse.clock import time_embedding, token_times
from cavnet.fuse.config import FusionConfig


def masked_mean_weights(mask: torch.Tensor) -> torch.Tensor:
    """Pooling weights of a masked mean: 1 / count at valid tokens, 0 elsewhere (all 0 if none valid).

    mask (B, L) bool -> (B, L) float
    """
    m = mask.float()
    return m / m.sum(dim=1, keepdim=True).clamp_min(1.0)


class TokenEmbed(nn.Module):
    """Input projection of one modality: zero the padding, Linear(D_in, d) -> LayerNorm -> + position
    [-> + time embedding of the shared clock, when ``times``].

    (B, L, D_in), (B, L) bool -> (B, L, d); padded rows are 0 on the way in, so garbage there is inert.
    """

    def __init__(self, in_dim: int, config: FusionConfig, positions: bool, times: bool = False) -> None:
        super().__init__()
        self.in_dim = in_dim
        self.max_len = config.max_len
        self.times = times
        self.in_drop = nn.Dropout(config.input_dropout)
        self.proj = nn.Linear(in_dim, config.d_model)
        self.ln = nn.LayerNorm(config.d_model) if config.layer_norm else nn.Identity()
        self.pos = nn.Parameter(torch.zeros(config.max_len, config.d_model)) if positions else None
        self.drop = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        x = torch.where(mask[..., None], x, torch.zeros((), dtype=x.dtype, device=x.device))
        x = x.to(self.proj.weight.dtype)  # the store holds float16
        x = self.ln(self.proj(self.in_drop(x)))
        if self.pos is not None:
            x = x + self.pos[: x.shape[1]]
        if self.times:
            x = x + time_embedding(token_times(mask), x.shape[-1], self.max_len) * mask[..., None]
        return self.drop(x)


class GatePool(nn.Module):
    """Eq. 7-8: r(X) = sigmoid(W2 ReLU(W1 X)); z = sum over valid tokens of X_i * r_i.

    X (B, L, d), mask (B, L) bool -> z (B, d), pooling weights (B, L) (0 at padded tokens).
    gate 'token': one scalar r_i = r(X_i) per token, weights r_i (with ``gate_normalize``
    r_i / sum_j r_j, a gated mean). gate 'set': one d-wide gate r(X) from the masked mean of the set,
    the same for every token, z = sum_i X_i * r(X) element-wise; the weights are then the mask (1 at
    valid tokens; ``gate_normalize``: 1 / count) and the gate is per channel. ``bias=False``: W1, W2 without
    bias, as eq. 7 writes them.
    """

    def __init__(self, config: FusionConfig) -> None:
        super().__init__()
        self.set = config.gate == "set"
        self.w1 = nn.Linear(config.d_model, config.gate_hidden, bias=config.bias)
        self.w2 = nn.Linear(config.gate_hidden, config.d_model if self.set else 1, bias=config.bias)
        self.normalize = config.gate_normalize

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.set:
            summary = (masked_mean_weights(mask)[..., None] * x).sum(dim=1)  # (B, d)
            r = torch.sigmoid(self.w2(F.relu(self.w1(summary))))  # (B, d), broadcast to every token
            w = masked_mean_weights(mask) if self.normalize else mask.to(x.dtype)
            return (w[..., None] * x).sum(dim=1) * r, w
        r = torch.sigmoid(self.w2(F.relu(self.w1(x)))).squeeze(-1) * mask
        if self.normalize:
            r = r / r.sum(dim=1, keepdim=True).clamp_min(1e-6)
        return (r[..., None] * x).sum(dim=1), r


class TextProjection(nn.Module):
    """The trainable text side: t -> t + W t + b, W and b initialised to 0, so it starts as the identity
    (and weight decay pulls it back towards the identity).  (..., Dt) -> (..., Dt)"""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.delta = nn.Linear(dim, dim)

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        t = t.to(self.delta.weight.dtype)
        return t + self.delta(t)


class SentenceEncoder(nn.Module):
    """The sentence encoder itself as a trainable text side (``text_encoder_lr`` > 0): N strings -> (N, Dt)
    L2-normalised float32 embeddings, with gradients into every weight of the wrapped model.

    ``model`` is a loaded sentence-transformers ``SentenceTransformer`` (an ``nn.Sequential`` of its
    transformer, pooling and normalisation modules; loading it is ``cavnet.extract.text``'s job). Its own
    ``preprocess`` (``tokenize`` before sentence-transformers 6) and forward are used, so the pooling is the
    model's: with the weights untouched, the output equals ``SentenceTransformer.encode(...,
    normalize_embeddings=True)``. In train mode the transformer's dropout is active; the training loops keep it
    in eval mode (gradients still flow): the targets are then deterministic, the same texts give the same
    targets in every batch, and before the first step they are the store's embeddings (up to its float16).
    On AV-Synth, dropout on cost about 6 points of val top-1 (docs/results.md)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, texts: list[str]) -> torch.Tensor:
        """``len(texts)`` strings -> (N, Dt) unit-norm rows on the model's device; (0, Dt) for none."""
        device = next(self.model.parameters()).device
        if len(texts) == 0:
            return torch.zeros(0, self.dim, device=device)
        prepare = getattr(self.model, "preprocess", None) or self.model.tokenize  # renamed in sentence-transformers 6
        features = prepare(list(texts))
        features = {k: v.to(device) if torch.is_tensor(v) else v for k, v in features.items()}
        return F.normalize(self.model(features)["sentence_embedding"].float(), dim=-1)

    @property
    def dim(self) -> int:
        get_dim = getattr(self.model, "get_embedding_dimension", None) or \
            self.model.get_sentence_embedding_dimension  # renamed in sentence-transformers 5
        return int(get_dim())

    @torch.no_grad()
    def embed(self, texts: list[str]) -> torch.Tensor:
        """Embeddings without gradients and with dropout off (scoring, checkpoints); the training mode the
        encoder was in is kept.  N strings -> (N, Dt)."""
        mode = self.training
        self.eval()
        try:
            return self(texts)
        finally:
            self.train(mode)


class CAVNet(nn.Module):
    """CAV-Net bi-modal video encoder plus its output head.

    forward(visual (B, n, Dv), visual_mask (B, n) bool, audio (B, m, Da), audio_mask (B, m) bool)
        -> (B, text_dim) video embedding (head 'text') or (B, C) logits (head 'linear');
        with ``return_gates=True`` also the pooling weights (B, n_used + m_used), 0 at padded tokens, such
        that z = sum_i w_i X_i (visual tokens first, then audio; only the streams of ``modalities``).
    """

    def __init__(self, config: FusionConfig) -> None:
        super().__init__()
        if not isinstance(config, FusionConfig):
            raise TypeError(f"CAVNet expects a FusionConfig, got {type(config).__name__}")
        self.config = c = config
        d = c.d_model
        attend = c.fusion == "cavnet"
        positions = attend and c.pos_embed
        timed = attend and c.time_encoding == "shared"
        self.embed_v = TokenEmbed(c.visual_dim, c, positions, timed) if c.use_visual else None
        self.embed_a = TokenEmbed(c.audio_dim, c, positions, timed) if c.use_audio else None
        both = c.use_visual and c.use_audio
        self.self_v = AttentionBlock(c, cross=False) if attend and c.use_visual and c.self_attn else None
        self.self_a = AttentionBlock(c, cross=False) if attend and c.use_audio and c.self_attn else None
        self.cross_v = AttentionBlock(c, cross=True, timed=timed) if attend and both and c.cross_attn else None
        self.cross_a = AttentionBlock(c, cross=True, timed=timed) if attend and both and c.cross_attn else None
        norm = (lambda: nn.LayerNorm(d)) if c.layer_norm else nn.Identity
        self.ln_f = norm() if attend else None
        self.gate = GatePool(c) if attend and c.pool == "gate" else None
        streams = int(c.use_visual) + int(c.use_audio)
        self.late_mlp = None
        if not attend:
            self.late_mlp = nn.Sequential(nn.Linear(streams * d, d), nn.GELU(), nn.Dropout(c.dropout))
        self.ln_head = norm()
        self.head_drop = nn.Dropout(c.dropout)
        self.head = nn.Linear(d, c.out_dim)
        self.text_proj = TextProjection(c.text_dim) if c.text_proj and c.head == "text" else None
        self.apply(self._init_weights)
        if self.text_proj is not None:
            nn.init.zeros_(self.text_proj.delta.weight)

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, TokenEmbed) and module.pos is not None:
            nn.init.normal_(module.pos, std=0.02)

    # ---- inputs -------------------------------------------------------------------------------------

    def _stream(
        self, name: str, x: torch.Tensor | None, mask: torch.Tensor | None, embed: TokenEmbed
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Check one stream's shapes, default its mask to all-valid, embed it -> (B, L, d), (B, L) bool."""
        if x is None:
            raise ValueError(f"CAVNet(modalities={self.config.modalities!r}) needs the {name} input")
        if x.dim() != 3 or x.shape[-1] != embed.in_dim:
            raise ValueError(f"{name} must be (B, L, {embed.in_dim}), got {tuple(x.shape)}")
        if x.shape[1] > embed.max_len:
            raise ValueError(f"{name} has {x.shape[1]} tokens, more than max_len={embed.max_len}")
        if mask is None:
            mask = torch.ones(x.shape[:2], dtype=torch.bool, device=x.device)
        if mask.shape != x.shape[:2]:
            raise ValueError(f"{name}_mask must be {tuple(x.shape[:2])}, got {tuple(mask.shape)}")
        return embed(x, mask.bool()), mask.bool()

    def _inputs(
        self,
        visual: torch.Tensor | None,
        visual_mask: torch.Tensor | None,
        audio: torch.Tensor | None,
        audio_mask: torch.Tensor | None,
    ) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Embedded streams in order [visual, audio] (those of ``modalities``), each ((B, L, d), (B, L))."""
        streams = []
        if self.embed_v is not None:
            streams.append(self._stream("visual", visual, visual_mask, self.embed_v))
        if self.embed_a is not None:
            a, am = self._stream("audio", audio, audio_mask, self.embed_a)
            p = self.config.modality_dropout
            if self.training and p > 0 and self.embed_v is not None:
                am = am & (torch.rand(am.shape[0], 1, device=am.device) >= p)
            streams.append((a, am))
        if len(streams) == 2 and streams[0][0].shape[0] != streams[1][0].shape[0]:
            raise ValueError("visual and audio must have the same batch size")
        return streams

    # ---- fusion -------------------------------------------------------------------------------------

    def _fuse(self, streams: list[tuple[torch.Tensor, torch.Tensor]]) -> tuple[torch.Tensor, torch.Tensor]:
        """Eq. 2-6: self-attention per stream, cross-attention between them, concatenation.

        -> X (B, n+m, d) after the final LayerNorm and zeroed at padded tokens, mask (B, n+m) bool.
        """
        pairs = ((self.self_v, self.embed_v), (self.self_a, self.embed_a))
        blocks = [blk for blk, embed in pairs if embed is not None]  # aligned with streams
        tokens = [x if blk is None else blk(x, x, mask) for (x, mask), blk in zip(streams, blocks)]  # eq. 2-3
        masks = [mask for _, mask in streams]
        if self.cross_v is not None:
            (v, a), (vm, am) = tokens, masks
            tv, ta = token_times(vm), token_times(am)
            # eq. 4-5, both from the self vectors
            tokens = [self.cross_v(v, a, am, (tv, ta)), self.cross_a(a, v, vm, (ta, tv))]
        x = torch.cat(tokens, dim=1)  # eq. 6
        mask = torch.cat(masks, dim=1)
        x = self.ln_f(x).masked_fill(~mask[..., None], 0.0)
        return x, mask

    def _pool(self, x: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Eq. 7-8 (gate) or masked mean.  X (B, L, d), mask (B, L) -> z (B, d), weights (B, L)."""
        if self.gate is not None:
            return self.gate(x, mask)
        w = masked_mean_weights(mask)
        return (w[..., None] * x).sum(dim=1), w

    def _late(self, streams: list[tuple[torch.Tensor, torch.Tensor]]) -> tuple[torch.Tensor, torch.Tensor]:
        """Late-fusion baseline: masked mean of each stream, no attention, concatenated, MLP -> (B, d)."""
        pooled, weights = [], []
        for x, mask in streams:
            w = masked_mean_weights(mask)
            pooled.append((w[..., None] * x).sum(dim=1))
            weights.append(w)
        return self.late_mlp(torch.cat(pooled, dim=-1)), torch.cat(weights, dim=1)

    def forward(
        self,
        visual: torch.Tensor | None = None,
        visual_mask: torch.Tensor | None = None,
        audio: torch.Tensor | None = None,
        audio_mask: torch.Tensor | None = None,
        return_gates: bool = False,
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """(B, n, Dv), (B, n), (B, m, Da), (B, m) -> (B, out_dim) [, pooling weights (B, L)].

        Masks default to all-valid; the input of a modality not in ``modalities`` is ignored.
        """
        streams = self._inputs(visual, visual_mask, audio, audio_mask)
        if self.late_mlp is not None:
            z, weights = self._late(streams)
        else:
            z, weights = self._pool(*self._fuse(streams))
        out = self.head(self.head_drop(self.ln_head(z)))
        return (out, weights) if return_gates else out

    # ---- testing stage ------------------------------------------------------------------------------

    def encode_text(self, text: torch.Tensor) -> torch.Tensor:
        """The text side: sentence embeddings (..., Dt) through ``text_proj`` when there is one, else as they
        are. Training targets and class prompts both go through it."""
        return text if self.text_proj is None else self.text_proj(text)

    def score_classes(self, video_emb: torch.Tensor, class_emb: torch.Tensor) -> torch.Tensor:
        """Testing stage through the text side: (B, D), (C, Dt) -> (B, C) cosine scores."""
        return self.predict(video_emb, self.encode_text(class_emb))

    @staticmethod
    def predict(video_emb: torch.Tensor, class_emb: torch.Tensor) -> torch.Tensor:
        """Cosine similarity of each video to each class text: (B, D), (C, D) -> (B, C) scores.
        ``class_emb`` must already be through ``encode_text`` (``score_classes`` does both)."""
        return F.normalize(video_emb.float(), dim=-1) @ F.normalize(class_emb.float(), dim=-1).T


def count_parameters(model: nn.Module, trainable_only: bool = True) -> int:
    """Number of (trainable) parameters of ``model``."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)
