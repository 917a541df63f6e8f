"""CAV-Net against the paper: eq. 1-8 written by hand, the literal preset's parts, the set-level gate, old configs,
the trainable text projection."""

from __future__ import annotations

import math

import torch

from cavnet.fuse.config import FusionConfig, preset_overrides
from cavnet.fuse.loss import ContrastiveLoss
from cavnet.fuse.model import CAVNet

from fusion_models import DA, DT, DV, C, make_batch, make_config, make_model


# ---- the paper's equations, literally -----------------------------------------------------------------

def test_paper_literal_forward_is_equations_1_to_8_by_hand():
    """preset 'paper-literal': eq. 1-8 written with plain torch ops and the model's own weights, video by
    video, for a padded batch holding a video without audio. Every parameter is random (a bias the
    equations do not write would show) and the model is in training mode (a dropout would show)."""
    model = make_model(seed=3, **preset_overrides("paper-literal")).train()
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0.0, 0.3)
    visual, vm, audio, am, n_valid, m_valid = make_batch(n=5, m=4)  # full, padded, padded without audio

    def outer(layer, x):  # the input projection and the head: not in the paper, they keep their bias
        return x @ layer.weight.T + layer.bias

    def attend(blk, s, t):  # eq. 1: softmax((Wq S)(Wk T)^T / N_d)(Wv T), N_d = sqrt(d), no bias
        if len(t) == 0:
            return s  # cavnet's rule where eq. 1 has no key at all (no audio): S is kept
        a = blk.attn
        scores = (s @ a.w_q.weight.T) @ (t @ a.w_k.weight.T).T / math.sqrt(s.shape[-1])
        return torch.softmax(scores, dim=-1) @ (t @ a.w_v.weight.T)

    with torch.no_grad():
        out = model(visual, vm, audio, am)
        for i in range(3):
            v = outer(model.embed_v.proj, visual[i, :n_valid[i]])  # common width d
            a = outer(model.embed_a.proj, audio[i, :m_valid[i]])
            v_self, a_self = attend(model.self_v, v, v), attend(model.self_a, a, a)  # eq. 2-3
            v_fuse = attend(model.cross_v, v_self, a_self)  # eq. 4
            a_fuse = attend(model.cross_a, a_self, v_self)  # eq. 5
            x = torch.cat([v_fuse, a_fuse])  # eq. 6, (n_i + m_i, d)
            r = torch.sigmoid(torch.relu(x @ model.gate.w1.weight.T) @ model.gate.w2.weight.T)  # eq. 7, (n+m, 1)
            z = (x * r).sum(dim=0)  # eq. 8
            torch.testing.assert_close(out[i], outer(model.head, z), atol=1e-4, rtol=1e-4)


def test_paper_literal_has_no_extra_layers_biases_or_dropout():
    model = make_model(**preset_overrides("paper-literal"))
    names = [n for n, _ in model.named_parameters()]
    assert not [n for n in names if "ln" in n or "pos" in n or "w_o" in n or ".ff." in n or "slope" in n], names
    assert not [n for n in names if n.endswith(".bias") and (".attn." in n or n.startswith("gate."))], names
    assert model.config.heads == 1 and model.config.time_encoding == "none" and model.config.loss == "paper"
    assert not [m for m in model.modules() if isinstance(m, torch.nn.Dropout) and m.p > 0]
    assert "self_v.attn.w_q.bias" in dict(make_model().named_parameters())  # the default keeps them


def test_paper_literal_sees_each_stream_as_a_set():
    """No position table and no clock: the literal model has no time signal at all, so reordering the
    clips (or the segments) of a video changes nothing. The content-only default keeps its position tables."""
    visual, audio = torch.randn(1, 6, DV), torch.randn(1, 5, DA)
    order_v, order_a = torch.randperm(6), torch.randperm(5)
    literal, content_only = make_model(**preset_overrides("paper-literal")), make_model(time_encoding="none")
    with torch.no_grad():
        for model, invariant in ((literal, True), (content_only, False)):
            a = model(visual, None, audio)
            b = model(visual[:, order_v], None, audio[:, order_a])
            assert torch.allclose(a, b, atol=1e-5) == invariant


def test_set_gate_is_one_gate_from_the_masked_mean():
    model = make_model(gate="set")
    visual, vm, audio, am, *_ = make_batch()
    with torch.no_grad():
        out = model(visual, vm, audio, am)
        x, mask = model._fuse(model._inputs(visual, vm, audio, am))
        mean = (x * mask[..., None]).sum(1) / mask.sum(1, keepdim=True)
        r = torch.sigmoid(model.gate.w2(torch.relu(model.gate.w1(mean))))
        z = (x * mask[..., None]).sum(1) * r
        torch.testing.assert_close(model.head(model.ln_head(z)), out, atol=1e-5, rtol=0)


def test_old_configs_read_with_todays_behaviour():
    d = make_config().to_dict()
    for k in ("residual", "layer_norm", "out_proj", "gate", "bias", "loss"):
        d.pop(k)
    cfg = FusionConfig.from_dict(d)
    assert (cfg.residual, cfg.layer_norm, cfg.out_proj, cfg.gate, cfg.bias, cfg.loss) == (True, True, True, "token",
                                                                                        True, "clip")


# ---- the trainable text side -------------------------------------------------------------------------

def test_text_projection_starts_as_identity_and_is_used_for_targets_and_scores():
    from cavnet.fuse.data import Batch
    from cavnet.fuse.engine import batch_loss, score

    model = make_model(text_proj=True)
    assert make_model().text_proj is None and make_model(text_proj=True, head="linear").text_proj is None
    t = torch.randn(5, DT)
    torch.testing.assert_close(model.encode_text(t), t)
    visual, vm, audio, am, *_ = make_batch()
    labels = torch.tensor([0, 1, 0])
    batch = Batch(visual, vm, audio, am, torch.randn(3, DT), labels, labels)
    class_emb = torch.randn(C, DT)
    model.train()
    batch_loss(model, ContrastiveLoss(), batch, class_emb, "label").backward()
    assert model.text_proj.delta.weight.grad.abs().sum() > 0  # the targets went through it
    with torch.no_grad():
        model.text_proj.delta.weight.normal_()
    sc = score(model, [batch], class_emb, "text", torch.device("cpu")).scores
    with torch.no_grad():
        emb = model(visual, vm, audio, am)
    torch.testing.assert_close(torch.from_numpy(sc), CAVNet.predict(emb, model.encode_text(class_emb)))
    assert not torch.allclose(torch.from_numpy(sc), CAVNet.predict(emb, class_emb))
    assert "text_proj.delta.weight" in model.state_dict()
