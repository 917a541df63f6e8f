"""Contrastive loss (paper eq. 9, CLIP style, over the batch's unique texts) and the linear-head cross-entropy."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from cavnet.fuse.loss import ContrastiveLoss, LinearHeadLoss, unique_texts


def hand_loss(video: list[list[float]], text: list[list[float]], groups: list[int], scale: float) -> float:
    """The loss written out with loops: the batch's unique texts (first row of each group), cosine logits
    (B x K); video->text CE to its own unique text (mean over B), text->video CE with the target uniform
    over the videos sharing the text (mean over K)."""
    def unit(x):
        norm = math.sqrt(sum(a * a for a in x))
        return [a / norm for a in x]

    b = len(video)
    firsts = [i for i in range(b) if groups[i] not in groups[:i]]
    v, t = [unit(x) for x in video], [unit(text[i]) for i in firsts]
    k = len(t)
    own = [[groups[f] for f in firsts].index(groups[i]) for i in range(b)]
    logits = [[scale * sum(p * q for p, q in zip(v[i], t[u])) for u in range(k)] for i in range(b)]
    v2t = 0.0
    for i in range(b):
        log_z = math.log(sum(math.exp(logits[i][u]) for u in range(k)))
        v2t += -(logits[i][own[i]] - log_z)
    t2v = 0.0
    for u in range(k):
        log_z = math.log(sum(math.exp(logits[i][u]) for i in range(b)))
        sharing = [i for i in range(b) if own[i] == u]
        t2v += -sum(logits[i][u] - log_z for i in sharing) / len(sharing)
    return (v2t / b + t2v / k) / 2


VIDEO = [[1.0, 0.0, 0.5], [0.2, 1.0, 0.0], [0.0, 0.3, 1.0]]
TEXT = [[0.9, 0.1, 0.0], [0.1, 0.8, 0.3], [0.2, 0.0, 1.0]]


@pytest.mark.parametrize("groups", [[0, 0, 1], [0, 1, 2], [4, 4, 4]])
def test_matches_hand_computation(groups):
    crit = ContrastiveLoss()
    loss = crit(torch.tensor(VIDEO), torch.tensor(TEXT), torch.tensor(groups))
    assert loss.item() == pytest.approx(hand_loss(VIDEO, TEXT, groups, 1 / 0.07), rel=1e-5)


def test_initial_temperature():
    crit = ContrastiveLoss()
    assert crit.logit_scale.item() == pytest.approx(math.log(1 / 0.07))
    assert crit.scale.item() == pytest.approx(1 / 0.07, rel=1e-5)


def test_distinct_groups_is_clip_loss():
    torch.manual_seed(0)
    v, t = torch.randn(6, 8), torch.randn(6, 8)
    crit = ContrastiveLoss()
    logits = crit.scale * F.normalize(v, dim=-1) @ F.normalize(t, dim=-1).T
    labels = torch.arange(6)
    expected = (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels)) / 2
    torch.testing.assert_close(crit(v, t, labels), expected)


def test_hand_formula_with_duplicated_texts_and_unsorted_groups():
    torch.manual_seed(4)
    v, t = torch.randn(7, 5), torch.randn(7, 5)
    groups = [9, 2, 9, 5, 2, 9, 1]
    t = t[[0, 1, 0, 3, 1, 0, 6]]  # rows of one group carry the same text
    loss = ContrastiveLoss()(v, t, torch.tensor(groups))
    assert loss.item() == pytest.approx(hand_loss(v.tolist(), t.tolist(), groups, 1 / 0.07), rel=1e-5)


def test_duplicated_texts_change_the_gradient_from_plain_clip():
    """Same-class texts are identical: plain CLIP targets (each video to its own row's copy) and the old
    multi-positive B x B targets give one loss; scoring unique texts gives a different loss and gradient."""
    torch.manual_seed(2)
    v = torch.randn(6, 8, requires_grad=True)
    labels = torch.tensor([0, 1, 0, 2, 1, 0])
    t = torch.randn(3, 8)[labels]
    crit = ContrastiveLoss()
    crit(v, t, labels).backward()
    ours = v.grad.clone()
    v.grad = None
    logits = crit.scale * F.normalize(v, dim=-1) @ F.normalize(t, dim=-1).T
    rows = torch.arange(6)
    clip = (F.cross_entropy(logits, rows) + F.cross_entropy(logits.T, rows)) / 2
    clip.backward()
    assert not torch.allclose(ours, v.grad, atol=1e-4)
    # with distinct texts the two coincide
    clip_grad = v.grad.clone()
    v.grad = None
    crit(v, t, rows).backward()
    torch.testing.assert_close(v.grad, clip_grad)


def test_unique_texts_keeps_first_appearance_order():
    own, first = unique_texts(torch.tensor([7, 3, 7, 1, 3]))
    assert own.tolist() == [0, 1, 0, 2, 1] and first.tolist() == [0, 1, 3]


def test_temperature_is_clamped_at_100():
    crit = ContrastiveLoss()
    with torch.no_grad():
        crit.logit_scale.fill_(10.0)
    assert crit.scale.item() == pytest.approx(100.0, rel=1e-5)
    groups = [0, 0, 1]
    loss = crit(torch.tensor(VIDEO), torch.tensor(TEXT), torch.tensor(groups))
    assert loss.item() == pytest.approx(hand_loss(VIDEO, TEXT, groups, 100.0), rel=1e-5)
    crit.clamp_()
    assert crit.logit_scale.item() == pytest.approx(math.log(100.0))


def test_gradient_reaches_logit_scale_and_inputs():
    crit = ContrastiveLoss()
    v = torch.randn(4, 8, requires_grad=True)
    t = torch.randn(4, 8, requires_grad=True)
    crit(v, t, torch.tensor([0, 1, 1, 2])).backward()
    assert crit.logit_scale.grad is not None and crit.logit_scale.grad.abs().item() > 0
    assert v.grad.abs().sum() > 0 and t.grad.abs().sum() > 0


def test_shape_errors():
    with pytest.raises(ValueError, match="expected video"):
        ContrastiveLoss()(torch.randn(3, 4), torch.randn(3, 5), torch.arange(3))
    with pytest.raises(ValueError):
        ContrastiveLoss(init_temperature=0.0)


def test_linear_head_loss_is_cross_entropy():
    logits, labels = torch.randn(4, 6), torch.tensor([0, 5, 2, 2])
    torch.testing.assert_close(LinearHeadLoss()(logits, labels), F.cross_entropy(logits, labels))
