"""KDSR scoring functions, student losses, pair selection and the asynchronous LR schedule,
checked against values computed by hand on small tensors."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from harness.config import KDSRConfig
from harness.kdsr import embedding_lr_factor
from harness.kdsr.pairs import cooccurring_pairs, sample_positions, subset_size
from harness.kdsr.scoring import (
    cross_correlation_vectors,
    cross_scores,
    paired_correlation_vectors,
    paired_scores,
    pairwise_correlation_vectors,
    pairwise_scores,
)
from harness.kdsr.student import (
    StudentHeads,
    dissected_loss,
    hard_match_loss,
    holistic_loss,
    pair_mask,
    soft_match_loss,
    standardise,
)

A = [1.0, 2.0, 2.0, 0.0]
B = [2.0, 0.0, 1.0, 3.0]


def sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


# ---------------------------------------------------------------- scoring functions

@pytest.mark.parametrize(
    "name, expected",
    [
        ("cosine", 4.0 / (3.0 * math.sqrt(14.0))),  # a.b = 4, |a| = 3, |b| = sqrt(14)
        ("dot", 4.0),
        ("euclidean", -math.sqrt(1 + 4 + 1 + 9)),  # a - b = [-1, 2, 1, -3]
        ("manhattan", -7.0),
    ],
)
def test_paired_scores_by_hand(name, expected):
    got = paired_scores(torch.tensor(A), torch.tensor(B), name)
    assert got.item() == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize(
    "name, expected",
    [
        # sub-vectors a = ([1, 2], [2, 0]), b = ([2, 0], [1, 3])
        ("cosine", [2.0 / (math.sqrt(5) * 2.0), 2.0 / (2.0 * math.sqrt(10))]),
        ("dot", [2.0, 2.0]),
        ("euclidean", [-math.sqrt(5.0), -math.sqrt(10.0)]),
        ("manhattan", [-3.0, -4.0]),
    ],
)
def test_correlation_vectors_by_hand(name, expected):
    got = paired_correlation_vectors(torch.tensor(A), torch.tensor(B), 2, name)
    assert got.tolist() == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize("name", ["cosine", "dot", "euclidean", "manhattan"])
def test_pairwise_matches_paired(name):
    x = torch.randn(3, 5, 8, generator=torch.Generator().manual_seed(0))
    grid = pairwise_scores(x, name)
    explicit = paired_scores(x.unsqueeze(2), x.unsqueeze(1), name)
    off_diagonal = ~torch.eye(5, dtype=torch.bool)
    torch.testing.assert_close(grid[:, off_diagonal], explicit[:, off_diagonal], rtol=1e-5, atol=1e-5)
    vectors = pairwise_correlation_vectors(x, 4, name)
    explicit_v = paired_correlation_vectors(x.unsqueeze(2), x.unsqueeze(1), 4, name)
    torch.testing.assert_close(vectors[:, off_diagonal], explicit_v[:, off_diagonal], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(cross_scores(x[:, :2], x, name), grid[:, :2], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(cross_correlation_vectors(x[:, 3:], x, 4, name), vectors[:, 3:], rtol=1e-5, atol=1e-5)


def test_scoring_errors_name_valid_options():
    with pytest.raises(ValueError, match="did you mean 'cosine'.*valid: cosine, dot, euclidean, manhattan"):
        paired_scores(torch.ones(2), torch.ones(2), "cosin")
    with pytest.raises(ValueError, match="must be >= 1 and divide"):
        paired_correlation_vectors(torch.ones(6), torch.ones(6), 4, "dot")


@pytest.mark.parametrize("name", ["cosine", "dot", "euclidean", "manhattan"])
def test_pairwise_gradients_finite_with_duplicates(name):
    x = torch.randn(2, 4, 6)
    x = torch.cat([x, x[:, :1]], dim=1).requires_grad_(True)  # a duplicated row: zero distance off the diagonal
    mask = ~torch.eye(5, dtype=torch.bool)
    (pairwise_scores(x, name) * mask).sum().backward()
    assert torch.isfinite(x.grad).all()


# ---------------------------------------------------------------- holistic loss

S3 = torch.tensor([[0.0, 1.0, 0.0], [1.0, 0.0, 2.0], [0.0, 2.0, 0.0]])
T3 = torch.tensor([[0.0, 0.5, 0.5], [0.5, 0.0, 1.0], [0.5, 1.0, 0.0]])


def off_diagonal(m: torch.Tensor) -> list[float]:
    return [m[i][j].item() for i in range(3) for j in range(3) if i != j]


def z_by_hand(m: torch.Tensor) -> list[list[float]]:
    """z-scores of a 3 x 3 score matrix over its 6 off-diagonal (valid) entries, population std."""
    values = off_diagonal(m)
    mean = sum(values) / 6
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / 6)
    return [[(m[i][j].item() - mean) / std for j in range(3)] for i in range(3)]


def soft_by_hand(s: list[list[float]], t: list[list[float]], tau: float) -> float:
    """Three items, two partners (j, k) per anchor: p(j) = sigmoid((x_j - x_k) / tau), and
    n * sum over partners (p_t - p_s)^2 = 2 * 2 * (p_t(j) - p_s(j))^2; mean over the 3 anchors."""
    total = 0.0
    for i, (j, k) in enumerate([(1, 2), (0, 2), (0, 1)]):
        ps = sigmoid((s[i][j] - s[i][k]) / tau)
        pt = sigmoid((t[i][j] - t[i][k]) / tau)
        total += 4.0 * (ps - pt) ** 2
    return total / 3


MASK3 = pair_mask(torch.tensor([[1, 2, 3]]))


@pytest.mark.parametrize("tau", [1.5, 0.5, 4.0])
def test_soft_match_by_hand(tau):
    got = soft_match_loss(S3[None], T3[None], MASK3, tau)
    assert got.item() == pytest.approx(soft_by_hand(S3.tolist(), T3.tolist(), tau), rel=1e-5)


def test_standardise_by_hand():
    # off-diagonal entries of S3: 1, 0, 1, 2, 0, 2 -> mean 1, population std sqrt(4 / 6)
    z = standardise(S3[None], MASK3)[0]
    assert z[0, 1].item() == pytest.approx(0.0, abs=1e-6)
    assert z[1, 2].item() == pytest.approx(1.0 / math.sqrt(4 / 6), rel=1e-6)
    assert z[0, 2].item() == pytest.approx(-1.0 / math.sqrt(4 / 6), rel=1e-6)


def test_temperature_smooths():
    losses = [soft_match_loss(S3[None], T3[None], MASK3, tau).item() for tau in (0.5, 1.5, 4.0, 50.0)]
    assert losses == sorted(losses, reverse=True)
    assert losses[-1] < 1e-3 * losses[0]
    with pytest.raises(ValueError, match="tau"):
        soft_match_loss(S3[None], T3[None], MASK3, 0.0)


def test_hard_match_by_hand():
    # off-diagonal squared errors: (1-.5)^2 twice, (0-.5)^2 twice, (2-1)^2 twice -> 3 / 6
    assert hard_match_loss(S3[None], T3[None], MASK3).item() == pytest.approx(3.0 / 6, rel=1e-6)


@pytest.mark.parametrize("tau", [1.5, 0.5])
def test_holistic_soft_match_uses_z_scores(tau):
    got = holistic_loss(S3[None], T3[None], MASK3, tau, soft_match=True)
    assert got.item() == pytest.approx(soft_by_hand(z_by_hand(S3), z_by_hand(T3), tau), rel=1e-5)
    # invariant to an affine change of either side's scores (scale > 0): only the structure counts
    moved = holistic_loss(3.0 * S3[None] - 7.0, 0.1 * T3[None] + 2.0, MASK3, tau, soft_match=True)
    assert moved.item() == pytest.approx(got.item(), rel=1e-4)


def test_holistic_hard_match_is_two_one_minus_pearson():
    r = float(np.corrcoef(off_diagonal(S3), off_diagonal(T3))[0, 1])
    got = holistic_loss(S3[None], T3[None], MASK3, 1.5, soft_match=False)
    assert got.item() == pytest.approx(2.0 * (1.0 - r), rel=1e-5)


def test_pair_mask_padding_duplicates_invalid():
    seq = torch.tensor([[4, 2, 0, 2, 7]])
    valid = torch.tensor([[True, True, False, True, False]])  # item 7 has no feature
    mask = pair_mask(seq, valid)[0].int().tolist()
    assert mask == [
        [0, 1, 0, 1, 0],
        [1, 0, 0, 0, 0],  # 2 vs 2 (same item) masked
        [0, 0, 0, 0, 0],  # padding
        [1, 0, 0, 0, 0],
        [0, 0, 0, 0, 0],  # invalid feature
    ]


def test_masked_entries_do_not_change_losses():
    """Padding, duplicate and invalid positions with arbitrary scores give the 3-item result."""
    seq = torch.tensor([[1, 0, 2, 3, 3, 9]])
    valid = torch.tensor([[True, False, True, True, True, False]])
    keep = [0, 2, 3]
    s = torch.randn(1, 6, 6) * 10
    t = torch.randn(1, 6, 6) * 10
    s[0][np.ix_(keep, keep)] = S3
    t[0][np.ix_(keep, keep)] = T3
    # position 4 duplicates item 3: its own pairs with 1 and 2 are real, so give them the same values as position 3
    s[0, 4], s[0, :, 4], t[0, 4], t[0, :, 4] = s[0, 3], s[0, :, 3], t[0, 3], t[0, :, 3]
    mask = pair_mask(seq, valid)
    ref_mask = pair_mask(torch.tensor([[1, 2, 3, 3]]))
    idx = [0, 2, 3, 4]
    ref_s, ref_t = s[:, idx][:, :, idx], t[:, idx][:, :, idx]
    for soft in (True, False):
        got = holistic_loss(s, t, mask, 1.5, soft)
        ref = holistic_loss(ref_s, ref_t, ref_mask, 1.5, soft)
        assert got.item() == pytest.approx(ref.item(), rel=1e-6)


def test_all_masked_batch_is_zero_not_nan():
    mask = pair_mask(torch.tensor([[5, 0, 0]]))
    assert soft_match_loss(torch.zeros(1, 3, 3), torch.ones(1, 3, 3), mask, 1.5).item() == 0.0
    assert hard_match_loss(torch.zeros(1, 3, 3), torch.ones(1, 3, 3), mask).item() == 0.0


# ---------------------------------------------------------------- dissected loss

def test_dissected_cross_entropy_by_hand():
    logits = torch.zeros(1, 2, 2, 3)
    logits[0, 0, 1] = torch.tensor([0.0, math.log(2.0), 0.0])  # p(code 1) = 2 / 4
    logits[0, 1, 0] = torch.tensor([0.0, 0.0, 0.0])  # p(code 2) = 1 / 3
    logits[0, 0, 0] = torch.tensor([50.0, -50.0, 3.0])  # masked (diagonal)
    codes = torch.tensor([[[0, 1], [2, 0]]])
    mask = pair_mask(torch.tensor([[1, 2]]))
    got = dissected_loss(logits, codes, mask)
    assert got.item() == pytest.approx((math.log(2.0) + math.log(3.0)) / 2, rel=1e-6)


def test_student_heads_match_explicit_formulas():
    torch.manual_seed(0)
    heads = StudentHeads(dim=6, latent_dim=4, codes=5, hidden=3, score="euclidean")
    emb = torch.randn(2, 4, 6)
    logits = heads.dissected_logits(emb)
    scores = heads.holistic_scores(emb)
    w1, b1, w2, b2 = heads.w1.weight, heads.w1.bias, heads.w2.weight, heads.w2.bias
    for b in range(2):
        for i in range(4):
            for j in range(4):
                h = torch.relu(w1 @ (emb[b, i] - emb[b, j]) + b1)
                torch.testing.assert_close(logits[b, i, j], w2 @ h + b2, rtol=1e-5, atol=1e-5)
                if i != j:
                    expected = -torch.linalg.norm(heads.w.weight @ emb[b, i] - heads.w.weight @ emb[b, j])
                    torch.testing.assert_close(scores[b, i, j], expected, rtol=1e-5, atol=1e-5)


def test_lazy_heads_work_with_optimizer_built_first():
    heads = StudentHeads(dim=None, latent_dim=4, codes=5, hidden=3, score="cosine")
    opt = torch.optim.Adam(heads.parameters(), lr=0.1)
    emb = torch.randn(2, 4, 6)
    (heads.holistic_scores(emb).sum() + heads.dissected_logits(emb).sum()).backward()
    before = heads.w.weight.detach().clone()
    opt.step()
    assert heads.w.weight.shape == (4, 6) and not torch.equal(before, heads.w.weight)


# ---------------------------------------------------------------- asynchronous training

def test_async_lr_curve_by_hand():
    cfg = KDSRConfig(enabled=True, async_start=0.1, async_epochs=5)
    assert [embedding_lr_factor(e, cfg) for e in range(7)] == pytest.approx([0.1, 0.28, 0.46, 0.64, 0.82, 1.0, 1.0])
    cfg = KDSRConfig(enabled=True, async_start=0.5, async_epochs=2)
    assert [embedding_lr_factor(e, cfg) for e in range(4)] == pytest.approx([0.5, 0.75, 1.0, 1.0])


def test_async_lr_off():
    assert embedding_lr_factor(0, KDSRConfig(enabled=True, async_train=False)) == 1.0
    assert embedding_lr_factor(0, KDSRConfig(enabled=False)) == 1.0
    assert embedding_lr_factor(0, KDSRConfig(enabled=True, async_epochs=0)) == 1.0
    with pytest.raises(ValueError, match="async_start"):
        embedding_lr_factor(0, KDSRConfig(enabled=True, async_start=1.5))


# ---------------------------------------------------------------- pair selection

def test_subset_size():
    assert [subset_size(p) for p in (1, 2, 3, 6, 64, 190)] == [2, 2, 3, 4, 11, 20]
    with pytest.raises(ValueError, match="max_pairs"):
        subset_size(0)


def test_sample_positions():
    torch.manual_seed(0)
    seq = torch.zeros(3, 50, dtype=torch.long)
    seq[0, 20:] = torch.arange(1, 31)  # 30 items, left padded
    seq[1, 45:] = torch.arange(100, 105)  # 5 items
    seq[2] = torch.arange(200, 250)
    sub = sample_positions(seq, "sample", max_pairs=64)
    assert sub.shape == (3, 11)
    for row, full in zip(sub, seq):
        real = row[row > 0]
        assert len(set(real.tolist())) == len(real) and set(real.tolist()) <= set(full.tolist())
    assert (sub[0] > 0).all() and (sub[2] > 0).all()
    assert sorted(sub[1][sub[1] > 0].tolist()) == list(range(100, 105))
    assert torch.equal(sample_positions(seq, "all", 64), seq)
    with pytest.raises(ValueError, match="all, sample"):
        sample_positions(seq, "chunk", 64)


def test_cooccurring_pairs_uniform_over_position_pairs():
    seqs = [np.array([0, 1]), np.array([2, 3, 4]), np.array([5])]
    pairs = cooccurring_pairs(seqs, 40_000, seed=0)
    assert len(pairs) == 40_000 and (pairs[:, 0] != pairs[:, 1]).all()
    first_seq = np.isin(pairs[:, 0], [0, 1])
    assert (np.isin(pairs[:, 1], [0, 1]) == first_seq).all()  # both items from the same sequence
    assert first_seq.mean() == pytest.approx(2 / 8, abs=0.01)  # 2 of the 8 ordered position pairs
    valid = np.ones(6, dtype=bool)
    valid[3] = False
    kept = cooccurring_pairs(seqs, 1000, seed=0, valid=valid)
    assert not np.isin(kept, [3]).any()
