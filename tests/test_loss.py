"""The contrastive losses: CLIP style over the batch's unique texts (the default), and eq. 9 as written
(``loss='paper'``), each against a derivation by hand with Python loops."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from cavnet.fuse.loss import ContrastiveLoss, PaperLoss, make_loss, unique_texts


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


# ---- eq. 9 as written (loss='paper') -------------------------------------------------------------------

def _unit(x: list[float]) -> list[float]:
    norm = math.sqrt(sum(a * a for a in x))
    return [a / norm for a in x]


def _sim(a: list[float], b: list[float]) -> float:
    return sum(p * q for p, q in zip(_unit(a), _unit(b)))


def eq9_by_hand(video: list[list[float]], text: list[list[float]], tau: float) -> float:
    """Eq. 9 read literally: the 2N embeddings e_1..e_2N are the N videos then the N texts; pair i is
    (z_i, t_i). L_{i,j} = -log(exp(sim(e_i, e_j)/tau) / sum_{k=1..2N} 1[k != i] exp(sim(e_i, e_k)/tau)),
    over both (i, j) and (j, i) of every positive pair; the final loss is their mean."""
    n = len(video)
    e = list(video) + list(text)
    total = 0.0
    for i in range(n):
        for anchor, positive in ((i, n + i), (n + i, i)):  # (i, j) and (j, i)
            den = sum(math.exp(_sim(e[anchor], e[k]) / tau) for k in range(2 * n) if k != anchor)
            total += -math.log(math.exp(_sim(e[anchor], e[positive]) / tau) / den)
    return total / (2 * n)


def eq9_grouped_by_hand(video, text, groups, tau: float) -> float:
    """cavnet's rule for shared texts, in loops over the 2N embeddings: an anchor's denominator holds its
    positive and every embedding of another group, a text shared by several rows counted once; the other
    embeddings of its own group (same class) are left out: never negatives."""
    n = len(video)
    e, g = list(video) + list(text), list(groups) + list(groups)
    total = 0.0
    for i in range(n):
        for anchor, positive in ((i, n + i), (n + i, i)):
            den = math.exp(_sim(e[anchor], e[positive]) / tau)
            seen_texts = set()
            for k in range(2 * n):
                if g[k] == g[anchor]:
                    continue
                if k >= n:  # a text: once per group
                    if g[k] in seen_texts:
                        continue
                    seen_texts.add(g[k])
                den += math.exp(_sim(e[anchor], e[k]) / tau)
            total += -math.log(math.exp(_sim(e[anchor], e[positive]) / tau) / den)
    return total / (2 * n)


def test_paper_loss_is_eq9_by_hand():
    torch.manual_seed(5)
    v, t = torch.randn(5, 4), torch.randn(5, 4)
    loss = PaperLoss()(v, t, torch.arange(5))
    assert loss.item() == pytest.approx(eq9_by_hand(v.tolist(), t.tolist(), 0.07), rel=1e-5)
    assert loss.item() != pytest.approx(ContrastiveLoss()(v, t, torch.arange(5)).item(), rel=1e-3)  # not CLIP's


def test_paper_loss_with_shared_texts_follows_the_rule_by_hand():
    torch.manual_seed(6)
    groups = [3, 1, 3, 0, 1, 3]
    v, t = torch.randn(6, 4), torch.randn(4, 4)[groups]  # rows of a group carry one text
    loss = PaperLoss()(v, t, torch.tensor(groups))
    assert loss.item() == pytest.approx(eq9_grouped_by_hand(v.tolist(), t.tolist(), groups, 0.07), rel=1e-5)


def test_paper_loss_never_makes_a_class_its_own_negative():
    """Two classes, two videos each, every video on its class prompt and the classes orthogonal: a perfect
    embedding. Read literally, eq. 9 counts the class-mate and its copy of the prompt as negatives and
    cannot go below log 3 at any temperature; cavnet's reading goes to 0."""
    video = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.0, 1.0]])
    crit = PaperLoss()
    with torch.no_grad():
        crit.logit_scale.fill_(math.log(100.0))
    loss = crit(video, video.clone(), torch.tensor([0, 0, 1, 1]))
    assert loss.item() < 1e-3
    assert eq9_by_hand(video.tolist(), video.tolist(), 0.01) > math.log(3) - 1e-3


def test_paper_loss_learns_its_temperature_and_is_what_the_config_names():
    crit = make_loss("paper")
    assert isinstance(crit, PaperLoss) and type(make_loss("clip")) is ContrastiveLoss
    assert crit.scale.item() == pytest.approx(1 / 0.07, rel=1e-5)
    v = torch.randn(4, 8, requires_grad=True)
    crit(v, torch.randn(4, 8), torch.tensor([0, 1, 1, 2])).backward()
    assert crit.logit_scale.grad.abs().item() > 0 and v.grad.abs().sum() > 0
    assert crit(v[:1], torch.randn(1, 8), torch.tensor([0])).item() == pytest.approx(0.0, abs=1e-6)  # no negatives
