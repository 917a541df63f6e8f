"""Frozen, typed configuration of the CAV-Net fusion model; passed whole to ``CAVNet(config)`` and saved
into every checkpoint as JSON (``to_dict`` / ``from_dict``) so a run can be rebuilt from its outputs.

Every choice the paper leaves open (see ``docs/model.md``) is a field here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from cavnet.configs import Config, check_int, check_number
from cavnet.errors import CavnetError

MODALITIES = ("av", "v", "a")
POOLS = ("gate", "mean")
FUSIONS = ("cavnet", "late")
HEADS = ("text", "linear")
TIME_ENCODINGS = ("shared", "none")
GATES = ("token", "set")
LOSSES = ("clip", "paper")
MAX_WIDTH = 1 << 20  # any one size of the fusion (inputs, width, classes, tokens)
MAX_PARAMETERS = 2_000_000_000  # 8 GB of float32 weights (AdamW keeps two more copies): a typo, not a model

# Named sets of FusionConfig fields. 'paper-literal' is eq. 1-9 as written: single-head B(S, T) with
# N_d = sqrt(d_model), no output projection, residual, LayerNorm, feed-forward, positions or clock, no bias
# in W_q, W_k, W_v, W_1, W_2, no dropout, and eq. 9's loss.
FUSION_PRESETS: dict[str, dict[str, Any]] = {
    "default": {},
    "paper-literal": {"heads": 1, "out_proj": False, "residual": False, "layer_norm": False, "mlp_ratio": 0.0,
                      "pos_embed": False, "time_encoding": "none", "bias": False, "dropout": 0.0,
                      "attn_dropout": 0.0, "input_dropout": 0.0, "modality_dropout": 0.0, "loss": "paper"},
}


@dataclass(frozen=True)
class FusionConfig(Config):
    """CAV-Net bi-modal video encoder (paper section 3.1) and its output head.

    Dimensions
        visual_dim, audio_dim: per-clip / per-segment descriptor sizes Dv, Da of the feature store.
        text_dim: sentence-embedding size Dt; the output size when ``head == 'text'``.
        num_classes: C; the output size when ``head == 'linear'`` (may stay 0 for ``head == 'text'``).
        d_model: width of every token after the input projection; ``heads`` must divide it.
        heads: attention heads of each B(S, T); the scale is N_d = sqrt(d_model / heads).
        mlp_ratio: hidden width of the feed-forward after each attention, as a multiple of d_model;
            0 removes the feed-forward sub-layers.
        gate_hidden: hidden width of the gate r(X) = sigmoid(W2 ReLU(W1 X)) (eq. 7).
        max_len: most tokens per modality (size of the learned position tables).

    Architecture switches (ablations)
        modalities: 'av' both streams, 'v' visual only, 'a' audio only (the other branch is removed).
        self_attn: eq. 2-3; False means V_self = V, A_self = A.
        cross_attn: eq. 4-5; False means V_fuse = V_self, A_fuse = A_self.
        pool: 'gate' (eq. 7-8) or 'mean' (masked mean over the valid tokens).
        gate: how eq. 7 reads X: 'token' gives each token its own scalar r_i = r(X_i); 'set' computes one
            d_model-wide gate r(X) from the masked mean of the whole set, the same for every token, and
            z = sum_i X_i * r(X) element-wise (docs/model.md, "Two readings of eq. 7").
        gate_normalize: False is eq. 8 as written (z = sum_i r_i X_i); True divides by sum_i r_i.
        fusion: 'cavnet' (the paper) or 'late' (two-stream baseline: masked mean of each stream's
            projected tokens, no attention, concatenated, then an MLP).
        head: 'text' projects z to text_dim for the contrastive loss; 'linear' gives C logits.
        loss: head 'text' only: the contrastive loss; 'clip' is CLIP's N x K symmetric cross-entropy over the
            batch's unique texts, 'paper' is eq. 9 as written (a 2N-way denominator over all the batch's
            videos and texts but the anchor, both directions; ``fuse/loss.py``, docs/model.md "The loss").
        text_proj: head 'text' only: a learnable projection of the sentence embeddings, t + W t with W
            initialised to 0 (the identity), applied to training targets and class prompts alike.
        pos_embed: learned temporal position embedding per modality (CAV-Net fusion only).
        residual: each B(S, T) (and feed-forward) adds to its input (S + B(S, T)); False is eq. 2-5 as written.
        layer_norm: LayerNorms after the input projection, inside each attention layer, on X and before
            the head; False removes them all.
        out_proj: an output projection W_o after the attention heads; False is eq. 1 as written.
        bias: bias terms in the linear maps the equations write, W_q, W_k, W_v (and W_o) of eq. 1 and W_1,
            W_2 of eq. 7; False is eq. 1 and 7 as written. The layers the paper is silent on (the input
            projection, the feed-forward, the head) keep theirs.
        time_encoding: 'shared' gives both streams one clock (CAV-Net fusion only; not in the paper): each
            token's time, the centre of its clip or segment as a fraction of the video, is added to its
            embedding as sinusoids (when, and so in which order), and every cross-attention head adds
            -s_h |t_q - t_k| to its scores with a learned slope s_h (what happens at the same time);
            'none' is content-only cross-attention, as eq. 4-5 write it; the model's other deviations stay
            as configured (docs/model.md, "Audio-visual synchrony").

    Regularisation
        dropout: after the input projection, on each residual branch and before the head.
        attn_dropout: on the attention weights.
        input_dropout: on the raw descriptors (training only).
        modality_dropout: probability that a training video has its whole audio stream masked out, so the
            model learns the missing-audio case (K400 has audio-less videos); only used for 'av'.
    """

    visual_dim: int
    audio_dim: int
    text_dim: int = 384
    num_classes: int = 0
    d_model: int = 256
    heads: int = 4
    mlp_ratio: float = 2.0
    gate_hidden: int = 128
    max_len: int = 64
    modalities: str = "av"
    self_attn: bool = True
    cross_attn: bool = True
    pool: str = "gate"
    gate_normalize: bool = False
    fusion: str = "cavnet"
    head: str = "text"
    pos_embed: bool = True
    time_encoding: str = "shared"
    residual: bool = True
    layer_norm: bool = True
    out_proj: bool = True
    bias: bool = True
    gate: str = "token"
    text_proj: bool = False
    loss: str = "clip"
    dropout: float = 0.1
    attn_dropout: float = 0.0
    input_dropout: float = 0.0
    modality_dropout: float = 0.0

    def __post_init__(self) -> None:
        self._check_choices()
        self._check_sizes()
        for name in ("dropout", "attn_dropout", "input_dropout", "modality_dropout"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or isinstance(value, bool) or not 0.0 <= value < 1.0:
                raise CavnetError(f"FusionConfig.{name} must be a number in [0, 1), got {value!r}")
        for name in ("self_attn", "cross_attn", "gate_normalize", "pos_embed", "residual", "layer_norm", "out_proj",
                     "text_proj", "bias"):
            if not isinstance(getattr(self, name), bool):
                raise CavnetError(f"FusionConfig.{name} must be True or False, got {getattr(self, name)!r}")

    def _check_choices(self) -> None:
        for name, allowed in (("modalities", MODALITIES), ("pool", POOLS), ("fusion", FUSIONS), ("head", HEADS),
                              ("time_encoding", TIME_ENCODINGS), ("gate", GATES),
                              ("loss", LOSSES)):
            value = getattr(self, name)
            if value not in allowed:
                raise CavnetError(f"FusionConfig.{name} must be one of {', '.join(allowed)}; got {value!r}")

    def _check_sizes(self) -> None:
        positive = ["visual_dim", "audio_dim", "d_model", "heads", "gate_hidden", "max_len"]
        positive.append("text_dim" if self.head == "text" else "num_classes")
        for name in positive:
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                why = f" (needed by head={self.head!r})" if name in ("text_dim", "num_classes") else ""
                raise CavnetError(f"FusionConfig.{name} must be a positive integer{why}, got {value!r}")
        for name in ("text_dim", "num_classes"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise CavnetError(f"FusionConfig.{name} must be a non-negative integer, got {value!r}")
        if self.d_model % self.heads:
            raise CavnetError(f"FusionConfig.d_model ({self.d_model}) must be divisible by heads ({self.heads})")
        check_number("FusionConfig.mlp_ratio", self.mlp_ratio, 0.0, maximum=64.0)
        for name in ("visual_dim", "audio_dim", "text_dim", "d_model", "gate_hidden", "max_len", "num_classes"):
            check_int(f"FusionConfig.{name}", getattr(self, name), 0, MAX_WIDTH)
        if self.parameter_bound() > MAX_PARAMETERS:
            raise CavnetError(f"FusionConfig: d_model {self.d_model} (inputs {self.visual_dim}/{self.audio_dim}, "
                              f"mlp_ratio {self.mlp_ratio}) makes about {self.parameter_bound() / 1e9:.1f} G "
                              f"parameters, more than the {MAX_PARAMETERS / 1e9:.1f} G a fusion may have")

    def parameter_bound(self) -> int:
        """An upper bound of the fusion's parameter count (every optional layer counted), from the sizes
        alone: a config is refused on it before any tensor is allocated."""
        d, ff = self.d_model, int(self.mlp_ratio * self.d_model)
        embed = (self.visual_dim + self.audio_dim + 2 * self.max_len + 4) * d
        block = 4 * d * d + 2 * d * ff + ff + 9 * d + self.heads  # w_q, w_k, w_v, w_o, the FFN, norms, clock
        gate = 2 * d * self.gate_hidden + self.gate_hidden + d + 1
        head = 2 * d * d + d * max(self.text_dim, self.num_classes) + self.text_dim * (self.text_dim + 1) + 4 * d
        return embed + 4 * block + gate + head

    @property
    def out_dim(self) -> int:
        """Size of the model output: text_dim for head 'text', num_classes for head 'linear'."""
        return self.text_dim if self.head == "text" else self.num_classes

    @property
    def use_visual(self) -> bool:
        return "v" in self.modalities

    @property
    def use_audio(self) -> bool:
        return "a" in self.modalities

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "") -> "FusionConfig":
        """``Config.from_dict``; a checkpoint written before ``time_encoding`` existed was trained
        content-only, so it reads as 'none'."""
        return super().from_dict({"time_encoding": "none", **data} if isinstance(data, dict) else data, source)


def preset_overrides(name: str) -> dict[str, Any]:
    """The FusionConfig fields a named preset sets (``FUSION_PRESETS``); ``CavnetError`` for an unknown one."""
    if name not in FUSION_PRESETS:
        raise CavnetError(f"unknown fusion preset {name!r}; one of {', '.join(FUSION_PRESETS)}")
    return dict(FUSION_PRESETS[name])
