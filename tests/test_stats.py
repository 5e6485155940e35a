"""Paired significance (harness.stats): per-target values vs the evaluation, tests vs scipy and vs hand values."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import stats as sps

from harness import stats as S
from harness.evaluation import target_metrics


def ranks(above, tied=None, digest="d0") -> S.Ranks:
    above = np.asarray(above, dtype=np.int64)
    return S.Ranks(above, np.zeros_like(above) if tied is None else np.asarray(tied, dtype=np.int64), digest)


def test_target_values_equal_the_evaluation_on_random_counts_with_ties():
    rng = np.random.default_rng(0)
    above = rng.integers(0, 40, 5000)
    tied = np.where(rng.random(5000) < 0.3, rng.integers(0, 30, 5000), 0)
    above[:3], tied[:3] = [0, 19, 25], [50, 0, 0]  # a wide tie reaching past k, the last hit, a miss
    ref = target_metrics(torch.from_numpy(above), torch.from_numpy(tied), ks=(5, 20), ties="expected")
    for name in ("hr@5", "mrr@5", "hr@20", "mrr@20"):
        np.testing.assert_allclose(S.target_values(above, tied, name), ref[name].numpy(), rtol=0, atol=1e-15)


def test_target_values_by_hand():
    above, tied = np.array([0, 19, 20, 18, 0]), np.array([0, 0, 0, 3, 39])
    assert S.target_values(above, tied, "hr@20").tolist() == [1.0, 1.0, 0.0, 0.5, 0.5]  # 19,20 of 19..22 hit; 20 of 40
    mrr = S.target_values(above, tied, "mrr@20")
    assert mrr[:3].tolist() == pytest.approx([1.0, 1 / 20, 0.0], rel=1e-13)  # differences of cumulative sums
    assert mrr[3] == pytest.approx((1 / 19 + 1 / 20) / 4, rel=1e-15)
    assert mrr[4] == pytest.approx(sum(1 / r for r in range(1, 21)) / 40, rel=1e-15)
    with pytest.raises(ValueError, match="valid: hr@K, mrr@K"):
        S.target_values(above, tied, "ndcg@10")


def test_compare_targets_matches_scipy_on_seed_averaged_differences():
    rng = np.random.default_rng(1)
    n = 3000
    a = {s: ranks(rng.integers(0, 60, n), rng.integers(0, 2, n)) for s in (1, 2, 3)}
    b = {s: ranks(rng.integers(5, 70, n), rng.integers(0, 2, n)) for s in (1, 2, 3)}
    for name in ("hr@20", "mrr@20"):
        va = np.mean([S.target_values(r.above, r.tied, name) for r in a.values()], axis=0)
        vb = np.mean([S.target_values(r.above, r.tied, name) for r in b.values()], axis=0)
        got = S.compare_targets(a, b, name)
        diff = va - vb
        assert got.seeds == [1, 2, 3] and got.n_targets == n
        assert got.effect == pytest.approx(100 * diff.mean(), rel=1e-12)
        assert got.p_wilcoxon == pytest.approx(sps.wilcoxon(va, vb, zero_method="wilcox").pvalue, rel=1e-12)
        assert got.p_t == pytest.approx(sps.ttest_rel(va, vb).pvalue, rel=1e-12)
        lo, hi = sps.t.interval(0.95, n - 1, loc=diff.mean(), scale=sps.sem(diff))
        assert (got.ci_low, got.ci_high) == (pytest.approx(100 * lo, rel=1e-10), pytest.approx(100 * hi, rel=1e-10))
        assert got.p_wilcoxon < 1e-6 and got.effect > 0  # A ranks its targets higher by construction


def test_a_large_constructed_difference_has_a_tiny_p_and_a_symmetric_one_has_p_one():
    n = 400
    hit, miss = np.zeros(n, dtype=int), np.full(n, 100)
    better = S.compare_targets({0: ranks(np.where(np.arange(n) % 10 < 8, 0, 100))}, {0: ranks(miss)}, "hr@20")
    assert better.effect == pytest.approx(80.0) and better.p_wilcoxon < 1e-50 and better.p_t < 1e-50
    swapped = np.where(np.arange(n) % 2 == 0, 0, 100)  # A hits the even targets, B the odd ones: diff +1, -1, ...
    even = S.compare_targets({0: ranks(swapped)}, {0: ranks(np.where(np.arange(n) % 2 == 1, 0, 100))}, "mrr@20")
    assert even.effect == 0.0 and even.p_wilcoxon == pytest.approx(1.0) and even.p_t == pytest.approx(1.0)
    same = S.compare_targets({0: ranks(hit)}, {0: ranks(hit)}, "hr@20")
    assert (same.effect, same.p_wilcoxon, same.p_t) == (0.0, 1.0, 1.0)


def test_ci_by_hand_contains_the_constructed_shift():
    # differences shift +- e alternating: mean = shift exactly, sd = e * sqrt(n / (n - 1))
    n, shift, e = 100, 0.02, 0.05
    diff = shift + e * np.where(np.arange(n) % 2 == 0, 1.0, -1.0)
    half = sps.t.ppf(0.975, n - 1) * e * math.sqrt(n / (n - 1)) / math.sqrt(n)
    lo, hi = S.t_interval(diff)
    assert lo == pytest.approx(shift - half, rel=1e-12) and hi == pytest.approx(shift + half, rel=1e-12)
    assert lo < shift < hi and lo > 0  # 1.984 * 0.005 < 0.02: the shift is detected
    assert S.paired_t(diff) == pytest.approx(2 * sps.t.sf(shift / (e * math.sqrt(n / (n - 1)) / math.sqrt(n)), n - 1), rel=1e-10)


def test_wilcoxon_exact_small_case_by_hand():
    assert S.wilcoxon(np.array([1.0, 2.0, 3.0, 4.0, 5.0])) == pytest.approx(2 / 32)  # only all-positive signs as extreme
    assert S.wilcoxon(np.array([0.0, 1.0, 2.0, 3.0, 4.0, 5.0])) == pytest.approx(2 / 32)  # the zero is dropped
    assert S.wilcoxon(np.zeros(7)) == 1.0


def test_seeds_are_paired_by_number_and_only_shared_ones_count():
    rng = np.random.default_rng(2)
    n = 500
    a = {s: ranks(rng.integers(0, 40, n)) for s in (1, 2, 3)}
    b = {s: ranks(rng.integers(0, 40, n)) for s in (2, 3, 4)}
    got = S.compare_targets(a, b, "mrr@20")
    only = S.compare_targets({s: a[s] for s in (2, 3)}, {s: b[s] for s in (2, 3)}, "mrr@20")
    assert got.seeds == [2, 3] and got.p_wilcoxon == only.p_wilcoxon and got.effect == only.effect
    with pytest.raises(ValueError, match="no shared seeds"):
        S.compare_targets({1: a[1]}, {4: b[4]})


def test_digest_or_length_mismatch_is_refused():
    with pytest.raises(ValueError, match=r"different target lists \(digest other != d0\)"):
        S.compare_targets({0: ranks([1, 2, 3])}, {0: ranks([1, 2, 3], digest="other")})
    with pytest.raises(ValueError, match="same digest but different lengths"):
        S.compare_targets({0: ranks([1, 2, 3])}, {0: ranks([1, 2])})
    with pytest.raises(ValueError, match="different target lists"):  # across the seeds of one method too
        S.compare_targets({0: ranks([1, 2]), 1: ranks([1, 2], digest="x")}, {0: ranks([1, 2]), 1: ranks([1, 2])})


def test_compare_seeds_by_hand():
    got = S.compare_seeds({1: 0.30, 2: 0.32, 3: 0.31}, {1: 0.28, 2: 0.29, 3: 0.30, 9: 0.5})
    # differences .02 .03 .01: mean .02, sd .01, t = 2*sqrt(3), df 2: p = 1 - t / sqrt(2 + t^2) (closed form for df 2)
    t = 2 * math.sqrt(3)
    assert got.seeds == [1, 2, 3] and got.effect == pytest.approx(2.0)
    assert got.p_t == pytest.approx(1 - t / math.sqrt(2 + t * t), rel=1e-9)  # 0.0742
    half = 4.302652729911275 * 1.0 / math.sqrt(3)  # t_{0.975, 2} * sd / sqrt(n), in points
    assert (got.ci_low, got.ci_high) == (pytest.approx(2 - half, rel=1e-9), pytest.approx(2 + half, rel=1e-9))
    with pytest.raises(ValueError, match=">= 2 shared seeds"):
        S.compare_seeds({1: 0.3, 2: 0.3}, {2: 0.2})
    assert math.isnan(S.paired_t(np.array([0.01, 0.01])))  # no spread: undefined, not "p = 0"


def test_holm_by_hand():
    got = S.holm([0.01, 0.04, 0.03, float("nan")])
    np.testing.assert_allclose(got[:3], [0.03, 0.06, 0.06])
    assert math.isnan(got[3])
    assert S.holm([0.5, 0.9]).tolist() == [1.0, 1.0]
