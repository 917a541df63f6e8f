"""Contrastive loss (paper eq. 9, CLIP style, class positives) and the linear-head cross-entropy."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from cavnet.fuse.loss import ContrastiveLoss, LinearHeadLoss


def hand_loss(video: list[list[float]], text: list[list[float]], groups: list[int], scale: float) -> float:
    """The loss written out with loops: cosine logits, uniform targets over same-group columns."""
    def unit(x):
        norm = math.sqrt(sum(a * a for a in x))
        return [a / norm for a in x]

    v, t = [unit(x) for x in video], [unit(x) for x in text]
    b = len(v)
    logits = [[scale * sum(p * q for p, q in zip(v[i], t[j])) for j in range(b)] for i in range(b)]

    def direction(lg):
        total = 0.0
        for i in range(b):
            log_z = math.log(sum(math.exp(lg[i][k]) for k in range(b)))
            pos = [j for j in range(b) if groups[j] == groups[i]]
            total += -sum(lg[i][j] - log_z for j in pos) / len(pos)
        return total / b

    transposed = [[logits[j][i] for j in range(b)] for i in range(b)]
    return (direction(logits) + direction(transposed)) / 2


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


def test_same_class_rows_are_positives():
    """Swapping the texts of two videos of one class changes nothing."""
    torch.manual_seed(1)
    v, t = torch.randn(5, 8), torch.randn(5, 8)
    groups = torch.tensor([2, 0, 2, 1, 3])
    crit = ContrastiveLoss()
    swapped = t[[2, 1, 0, 3, 4]]
    torch.testing.assert_close(crit(v, swapped, groups), crit(v, t, groups))
    other = t[[1, 0, 2, 3, 4]]  # swapping across classes does change it
    assert not torch.allclose(crit(v, other, groups), crit(v, t, groups))


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
