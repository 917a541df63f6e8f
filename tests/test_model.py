"""CAV-Net fusion model: config, masking, missing audio, gates, variants, determinism. CPU, tiny sizes."""

from __future__ import annotations

import json
import math

import pytest
import torch

from cavnet.fuse.config import FusionConfig
from cavnet.fuse.loss import ContrastiveLoss
from cavnet.fuse.clock import TimeBias, time_embedding, token_times
from cavnet.fuse.model import CAVNet, count_parameters

from fusion_models import DA, DT, DV, VARIANTS, C, make_batch, make_config, make_model

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
    ({"time_encoding": "sinusoidal"}, "time_encoding"), ({"loss": "simclr"}, "loss"), ({"bias": 0}, "bias"),
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
    the per-modality positions off, content-only attention sees each stream as a bag of tokens."""
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


@pytest.mark.parametrize("modalities", ["v", "a"])
def test_single_modality_ignores_the_other_input(modalities):
    """A one-stream model gives the same output whatever the other stream holds (other values, mask,
    length, or nothing), and a different one when its own stream changes."""
    model = make_model(modalities=modalities)
    visual, vm, audio, am, *_ = make_batch()
    other_audio, other_visual = (torch.randn(3, 2, DA) * 100, None), (torch.randn(3, 9, DV) * 100, None)
    with torch.no_grad():
        out = model(visual, vm, audio, am)
        if modalities == "v":
            same = [model(visual, vm, *other_audio), model(visual, vm), model(visual, vm, audio, ~am)]
            changed = model(visual + torch.randn_like(visual), vm, audio, am)
        else:
            same = [model(*other_visual, audio=audio, audio_mask=am), model(audio=audio, audio_mask=am),
                    model(visual, ~vm, audio, am)]
            changed = model(visual, vm, audio + torch.randn_like(audio), am)
    for again in same:
        torch.testing.assert_close(again, out, atol=0, rtol=0)
    assert out.shape == (3, DT) and not torch.allclose(changed[0], out[0])


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
def test_variant_gives_every_parameter_a_gradient(variant):
    """One backward pass reaches every parameter with a non-zero gradient, read from ``.grad`` itself (an
    optimiser step would not show it: AdamW's weight decay moves a weight whose gradient is zero). No
    modality dropout here: masking the audio of every video of the batch rightly leaves the audio branch
    without gradient, which the optimiser-step version of this test did not notice."""
    torch.manual_seed(0)
    cfg = make_config(**{"input_dropout": 0.1, **VARIANTS[variant]})
    model = CAVNet(cfg).train()
    visual, vm, audio, am, *_ = make_batch()
    labels = torch.tensor([0, 0, 3])
    out = model(visual, vm, audio, am)
    crit = ContrastiveLoss()
    if cfg.head == "text":
        loss = crit(out, torch.randn(C, DT)[labels], labels)
    else:
        loss = torch.nn.functional.cross_entropy(out, labels)
    loss.backward()
    assert torch.isfinite(loss)
    named = list(model.named_parameters()) + ([("logit_scale", crit.logit_scale)] if cfg.head == "text" else [])
    dead = [n for n, p in named if p.grad is None or not bool((p.grad != 0).any())]
    assert not dead, dead


def test_modality_dropout_masks_the_whole_audio_in_training_only():
    model = make_model(modality_dropout=0.999, dropout=0.0, attn_dropout=0.0)
    visual, vm, audio, am, *_ = make_batch()
    torch.manual_seed(0)
    with torch.no_grad():
        dropped = model.train()(visual, vm, audio, am)
        silent, heard = model.eval()(visual, vm, audio, torch.zeros_like(am)), model(visual, vm, audio, am)
    torch.testing.assert_close(dropped, silent)
    assert not torch.allclose(heard, silent)


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
