"""CAV-Net fusion model: config, masking, missing audio, gates, variants, determinism. CPU, tiny sizes."""

from __future__ import annotations

import json
import math

import pytest
import torch

from cavnet.fuse.config import FusionConfig, preset_overrides
from cavnet.fuse.loss import ContrastiveLoss, LinearHeadLoss
from cavnet.fuse.clock import TimeBias, time_embedding, token_times
from cavnet.fuse.model import CAVNet, count_parameters

DV, DA, DT, C = 12, 8, 16, 5

VARIANTS = {
    "av": {},
    "v": {"modalities": "v"},
    "a": {"modalities": "a"},
    "no-self": {"self_attn": False},
    "no-cross": {"cross_attn": False},
    "mean-pool": {"pool": "mean"},
    "gate-normalize": {"gate_normalize": True},
    "late": {"fusion": "late"},
    "late-v": {"fusion": "late", "modalities": "v"},
    "linear": {"head": "linear"},
    "no-ffn-no-pos": {"mlp_ratio": 0.0, "pos_embed": False},
    "content-only": {"time_encoding": "none"},
    "paper-literal": preset_overrides("paper-literal"),
    "set-gate": {"gate": "set"},
    "set-gate-normalize": {"gate": "set", "gate_normalize": True},
}


def make_config(**kw) -> FusionConfig:
    base = dict(visual_dim=DV, audio_dim=DA, text_dim=DT, num_classes=C, d_model=16, heads=4,
                gate_hidden=8, max_len=12, dropout=0.1, attn_dropout=0.1)
    return FusionConfig(**{**base, **kw})


def make_model(seed: int = 0, **kw) -> CAVNet:
    torch.manual_seed(seed)
    return CAVNet(make_config(**kw)).eval()


def make_batch(n: int = 7, m: int = 5, seed: int = 1):
    """Three videos: full, padded in both streams, padded visual + no audio at all."""
    g = torch.Generator().manual_seed(seed)
    visual, audio = torch.randn(3, n, DV, generator=g), torch.randn(3, m, DA, generator=g)
    n_valid, m_valid = torch.tensor([n, 4, 2]), torch.tensor([m, 3, 0])
    vm = torch.arange(n)[None] < n_valid[:, None]
    am = torch.arange(m)[None] < m_valid[:, None]
    return visual, vm, audio, am, n_valid, m_valid


# ---- config ------------------------------------------------------------------------------------------

def test_config_json_round_trip():
    cfg = make_config(modalities="v", pool="mean", head="linear", dropout=0.2)
    again = FusionConfig.from_dict(json.loads(json.dumps(cfg.to_dict())))
    assert again == cfg
    with pytest.raises(ValueError, match="unknown field"):
        FusionConfig.from_dict({**cfg.to_dict(), "bogus": 1})


@pytest.mark.parametrize("bad, field", [
    ({"modalities": "va"}, "modalities"), ({"pool": "max"}, "pool"), ({"fusion": "early"}, "fusion"),
    ({"head": "mlp"}, "head"), ({"d_model": 30}, "divisible"), ({"dropout": 1.0}, "dropout"),
    ({"visual_dim": 0}, "visual_dim"), ({"head": "linear", "num_classes": 0}, "num_classes"),
    ({"self_attn": 1}, "self_attn"), ({"mlp_ratio": -1}, "mlp_ratio"),
    ({"time_encoding": "sinusoidal"}, "time_encoding"),
])
def test_config_rejects_bad_values(bad, field):
    with pytest.raises(ValueError, match=field):
        make_config(**bad)


def test_checkpoint_config_without_time_encoding_reads_as_content_only():
    """A config saved before time_encoding existed was trained without it; a new one round-trips its value."""
    old = make_config().to_dict()
    del old["time_encoding"]
    assert FusionConfig.from_dict(old).time_encoding == "none"
    assert make_config().time_encoding == "shared"
    assert FusionConfig.from_dict(make_config().to_dict()).time_encoding == "shared"


# ---- time encoding -----------------------------------------------------------------------------------

def test_token_times_spread_the_valid_tokens_over_the_video():
    mask = torch.tensor([[True, True, True, True], [True, True, False, False], [False] * 4])
    expected = torch.tensor([[0.125, 0.375, 0.625, 0.875], [0.25, 0.75, 0.0, 0.0], [0.0] * 4])
    torch.testing.assert_close(token_times(mask), expected)


def test_time_embedding_is_sinusoids_of_the_time():
    times = torch.tensor([[0.0, 0.25, 1.0]])
    emb = time_embedding(times, 9, max_len=16)
    assert emb.shape == (1, 3, 9) and (emb[..., 8] == 0).all()  # odd width: last feature left 0
    torch.testing.assert_close(emb[0, 0, :4], torch.zeros(4))  # sin(0)
    torch.testing.assert_close(emb[0, 0, 4:8], torch.ones(4))  # cos(0)
    # the slowest frequency is half a cycle per video, the fastest max_len / 2 cycles
    torch.testing.assert_close(emb[0, 1, 0], torch.tensor(math.sin(2 * math.pi * 0.25 * 0.5)))
    torch.testing.assert_close(emb[0, 1, 3], torch.tensor(math.sin(2 * math.pi * 0.25 * 8.0)), atol=1e-5, rtol=0)


def test_time_bias_is_zero_at_the_same_time_and_falls_with_the_gap():
    bias = TimeBias(make_config(heads=4))(torch.tensor([[0.1, 0.5]]), torch.tensor([[0.1, 0.3, 0.9]]))
    assert bias.shape == (1, 4, 2, 3)
    assert (bias[:, :, 0, 0] == 0).all() and (bias[:, :, 1, 1] < 0).all()
    assert (bias[0, :, 0, 2] < bias[0, :, 0, 1]).all()  # further apart, lower
    slopes = -bias[0, :, 0, 1] / 0.2
    torch.testing.assert_close(slopes, torch.tensor([1.0, 4.0, 16.0, 64.0]), rtol=1e-4, atol=0)


@pytest.mark.parametrize("modalities, stream", [("av", "audio"), ("v", "visual")])
def test_the_shared_clock_makes_the_model_see_when(modalities, stream):
    """Swapping two tokens of one stream changes the output with the shared clock but not without it: with
    the per-modality positions off, the paper's fusion sees each stream as a bag of tokens."""
    visual, audio = torch.randn(1, 6, DV), torch.randn(1, 6, DA)
    swap = [1, 0, 2, 3, 4, 5]
    for encoding, changes in (("shared", True), ("none", False)):
        model = make_model(pos_embed=False, time_encoding=encoding, modalities=modalities)
        with torch.no_grad():
            a = model(visual, None, audio)
            b = model(visual[:, swap], None, audio) if stream == "visual" else model(visual, None, audio[:, swap])
        assert (not torch.allclose(a, b, atol=1e-5)) == changes, encoding


# ---- masking -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("variant", VARIANTS)
def test_padding_changes_nothing(variant):
    """Each video of a padded batch gives what it gives alone, trimmed to its valid tokens, and garbage
    (huge, inf, NaN) in the padded positions changes nothing."""
    model = make_model(**VARIANTS[variant])
    visual, vm, audio, am, n_valid, m_valid = make_batch()
    with torch.no_grad():
        out = model(visual, vm, audio, am)
        for garbage in (1e6, float("inf"), float("nan")):
            dirty_v = visual.masked_fill(~vm[..., None], garbage)
            dirty_a = audio.masked_fill(~am[..., None], -garbage)
            torch.testing.assert_close(model(dirty_v, vm, dirty_a, am), out, atol=1e-5, rtol=0)
        for i in range(3):
            nv, ma = int(n_valid[i]), int(m_valid[i])
            alone = model(visual[i:i + 1, :nv], None, audio[i:i + 1, :ma], None)
            torch.testing.assert_close(alone, out[i:i + 1], atol=1e-5, rtol=0)
    assert torch.isfinite(out).all()


def test_missing_audio_is_finite_and_ignores_audio_values():
    model = make_model()
    visual, vm, audio, am, *_ = make_batch()
    none = torch.zeros_like(am)
    with torch.no_grad():
        out = model(visual, vm, audio, none)
        out_other = model(visual, vm, torch.randn_like(audio) * 1e3, none)
        out_empty = model(visual, vm, audio[:, :0], am[:, :0])
        out_full = model(visual, vm, audio, am)
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out_other, out, atol=1e-5, rtol=0)
    torch.testing.assert_close(out_empty, out, atol=1e-5, rtol=0)
    assert not torch.allclose(out_full[0], out[0])  # audio matters when it is there


def test_no_valid_token_at_all_is_finite():
    model = make_model()
    visual, vm, audio, am, *_ = make_batch()
    out = model(visual, torch.zeros_like(vm), audio, torch.zeros_like(am))
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("variant", ["av", "v", "a", "mean-pool", "gate-normalize", "late"])
def test_pooling_weights_cover_exactly_the_valid_tokens(variant):
    model = make_model(**VARIANTS[variant])
    visual, vm, audio, am, n_valid, m_valid = make_batch(n=6, m=9)
    _, gates = model(visual, vm, audio, am, return_gates=True)
    streams = {"av": (vm, am), "v": (vm,), "a": (am,)}[model.config.modalities]
    mask = torch.cat(streams, dim=1)
    assert gates.shape == mask.shape
    assert (gates[~mask] == 0).all()
    assert ((gates != 0).sum(dim=1) == mask.sum(dim=1)).all()
    assert (gates[mask] > 0).all() and (gates <= 1).all()
    if variant == "av":  # eq. 7: a sigmoid per token, not normalised
        assert ((gates != 0).sum(dim=1) == n_valid + m_valid).all()


def test_gate_sum_reproduces_pooled_embedding():
    """z = sum_i r_i X_i: rebuilding the output from the returned gates matches forward."""
    model = make_model()
    visual, vm, audio, am, *_ = make_batch()
    with torch.no_grad():
        out, gates = model(visual, vm, audio, am, return_gates=True)
        streams = model._inputs(visual, vm, audio, am)
        x, mask = model._fuse(streams)
        z = (gates[..., None] * x).sum(dim=1)
        again = model.head(model.ln_head(z))
    torch.testing.assert_close(again, out, atol=1e-5, rtol=0)


# ---- shapes, variants, training --------------------------------------------------------------------

@pytest.mark.parametrize("n, m", [(7, 3), (2, 11), (1, 1)])
def test_mixed_lengths(n, m):
    model = make_model()
    out = model(torch.randn(2, n, DV), None, torch.randn(2, m, DA), None)
    assert out.shape == (2, DT)


def test_half_precision_store_features_are_accepted():
    model = make_model()
    visual, vm, audio, am, *_ = make_batch()
    with torch.no_grad():
        out = model(visual.half(), vm, audio.half(), am)
        ref = model(visual.half().float(), vm, audio.half().float(), am)
    torch.testing.assert_close(out, ref, atol=1e-6, rtol=0)


def test_single_modality_ignores_the_other_input():
    out_v = make_model(modalities="v")(torch.randn(2, 4, DV))
    out_a = make_model(modalities="a")(audio=torch.randn(2, 4, DA))
    assert out_v.shape == out_a.shape == (2, DT)


def test_bad_inputs_raise():
    model = make_model()
    with pytest.raises(ValueError, match="audio"):
        model(torch.randn(2, 4, DV))
    with pytest.raises(ValueError, match="visual must be"):
        model(torch.randn(2, 4, DV + 1), None, torch.randn(2, 4, DA))
    with pytest.raises(ValueError, match="max_len"):
        model(torch.randn(2, 13, DV), None, torch.randn(2, 4, DA))
    with pytest.raises(TypeError):
        CAVNet({"visual_dim": DV})


@pytest.mark.parametrize("variant", VARIANTS)
def test_variant_trains_one_step(variant):
    torch.manual_seed(0)
    cfg = make_config(modality_dropout=0.3, input_dropout=0.1, **VARIANTS[variant])
    model = CAVNet(cfg).train()
    visual, vm, audio, am, *_ = make_batch()
    labels = torch.tensor([0, 0, 3])
    if cfg.head == "text":
        crit, target = ContrastiveLoss(), torch.randn(C, DT)[labels]
        loss = crit(model(visual, vm, audio, am), target, labels)
    else:
        crit = LinearHeadLoss()
        loss = crit(model(visual, vm, audio, am), labels)
    params = list(model.parameters()) + list(crit.parameters())
    before = [p.detach().clone() for p in params]
    opt = torch.optim.AdamW(params, lr=1e-2)
    opt.zero_grad()
    loss.backward()
    opt.step()
    assert torch.isfinite(loss)
    changed = sum(not torch.equal(a, p) for a, p in zip(before, params))
    assert changed == len(params)  # every parameter got a gradient (AdamW moves each one)


def test_same_seed_same_output():
    visual, vm, audio, am, *_ = make_batch()
    outs = []
    for _ in range(2):
        model = make_model(seed=3).train()
        torch.manual_seed(7)
        outs.append(model(visual, vm, audio, am))
    torch.testing.assert_close(outs[0], outs[1], atol=0, rtol=0)
    assert count_parameters(model) == sum(p.numel() for p in model.parameters())


def test_predict_is_cosine_similarity():
    video, classes = torch.randn(4, DT), torch.randn(3, DT)
    scores = CAVNet.predict(video, classes)
    expected = torch.nn.functional.cosine_similarity(video[:, None], classes[None], dim=-1)
    torch.testing.assert_close(scores, expected, atol=1e-6, rtol=0)
    torch.testing.assert_close(CAVNet.predict(3 * video, classes), scores, atol=1e-6, rtol=0)


# ---- the paper's equations, literally -----------------------------------------------------------------

def test_paper_literal_forward_is_equations_1_to_8_by_hand():
    """preset 'paper-literal': eq. 1-8 written with plain torch ops and the model's own weights."""
    model = make_model(seed=3, **preset_overrides("paper-literal"))
    g = torch.Generator().manual_seed(5)
    vin, ain = torch.randn(1, 4, DV, generator=g), torch.randn(1, 3, DA, generator=g)

    def lin(layer, x):
        return x @ layer.weight.T + layer.bias

    def attend(blk, s, t):  # eq. 1: softmax((Wq S)(Wk T)^T / N_d)(Wv T), N_d = sqrt(d)
        a = blk.attn
        scores = lin(a.w_q, s) @ lin(a.w_k, t).T / math.sqrt(s.shape[-1])
        return torch.softmax(scores, dim=-1) @ lin(a.w_v, t)

    with torch.no_grad():
        v, a = lin(model.embed_v.proj, vin[0]), lin(model.embed_a.proj, ain[0])  # common width d
        v_self, a_self = attend(model.self_v, v, v), attend(model.self_a, a, a)  # eq. 2-3
        v_fuse, a_fuse = attend(model.cross_v, v_self, a_self), attend(model.cross_a, a_self, v_self)  # eq. 4-5
        x = torch.cat([v_fuse, a_fuse])  # eq. 6
        r = torch.sigmoid(lin(model.gate.w2, torch.relu(lin(model.gate.w1, x))))  # eq. 7, (n+m, 1)
        z = (x * r).sum(dim=0)  # eq. 8
        expected = lin(model.head, z)
        torch.testing.assert_close(model(vin, None, ain, None)[0], expected, atol=1e-5, rtol=1e-5)


def test_paper_literal_has_no_extra_layers():
    model = make_model(**preset_overrides("paper-literal"))
    names = [n for n, _ in model.named_parameters()]
    assert not [n for n in names if "ln" in n or "pos" in n or "w_o" in n or ".ff." in n or "slope" in n], names
    assert model.config.heads == 1 and model.config.time_encoding == "none"


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
    for k in ("residual", "layer_norm", "out_proj", "gate"):
        d.pop(k)
    cfg = FusionConfig.from_dict(d)
    assert (cfg.residual, cfg.layer_norm, cfg.out_proj, cfg.gate) == (True, True, True, "token")


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
