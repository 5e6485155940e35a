"""Paired significance tests between two methods on the same dataset and backbone.

Two questions, two tests (``harness report table2`` shows both):

- **Over targets** (is the difference larger than the test set's sampling noise?): from the per-target
  rank counts a run logs (:meth:`harness.tracking.Logger.log_ranks`), every test target gets its HR@k
  (hit) and MRR@k (reciprocal rank) value with the evaluation's tie convention (``"expected"``: the mean
  over uniformly random tie-breaking, as :func:`harness.evaluation.target_metrics`). Each method's values
  are averaged over its seeds (only the seeds both methods ran, paired by seed number), then the per-target
  differences A - B go through the Wilcoxon signed-rank test (``zero_method="wilcox"``: targets on which
  both methods score the same - most of them for HR@20, where both miss or both hit - are dropped, the
  classic definition and scipy's default; normal approximation with tie correction for large n) and the
  paired t-test; the effect is the mean difference in points (percent) with a 95% t-interval.
- **Over seeds** (is it larger than the training noise?): the paired t-test on the per-seed test metric
  (seeds paired by number, at least 2 shared seeds), with a 95% t-interval of the per-seed differences.

Rank counts only pair when both runs ranked the same target list: each carries a digest of it
(``harness.evaluation.targets_digest``) and a mismatch is refused.

:func:`holm` corrects a family of p-values (the rows of one report table).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

KS_METRICS = ("hr", "mrr")
CONFIDENCE = 0.95
ZERO_METHOD = "wilcox"  # scipy.stats.wilcoxon: zero differences dropped before ranking


@dataclass(frozen=True)
class Ranks:
    """Per-target rank counts of one run's test part (``above``/``tied`` int32 [n]) and the target-list digest."""

    above: np.ndarray
    tied: np.ndarray
    digest: str

    def __post_init__(self):
        if self.above.shape != self.tied.shape or self.above.ndim != 1:
            raise ValueError(f"above and tied must be 1-D and of equal length; got {self.above.shape} and {self.tied.shape}")

    @classmethod
    def from_dict(cls, data: Mapping) -> Ranks:
        return cls(np.asarray(data["above"], dtype=np.int64), np.asarray(data["tied"], dtype=np.int64), str(data["digest"]))

    def __len__(self) -> int:
        return len(self.above)


def parse_metric(name: str) -> tuple[str, int]:
    """``"hr@20"`` -> ``("hr", 20)``; only HR and MRR (what the report tests)."""
    kind, _, k = name.partition("@")
    if kind not in KS_METRICS or not k.isdigit() or int(k) < 1:
        raise ValueError(f"unknown per-target metric {name!r}; valid: hr@K, mrr@K (e.g. hr@20, mrr@20)")
    return kind, int(k)


def target_values(above: np.ndarray, tied: np.ndarray, metric: str = "hr@20") -> np.ndarray:
    """Per-target HR@k / MRR@k (float64) with the ``"expected"`` tie convention.

    A target with ``a`` items above and ``t`` tied sits at each position ``a+1 .. a+t+1`` with probability
    ``1/(t+1)``; the value is the mean gain over those positions (the same arithmetic as
    :func:`harness.evaluation.target_metrics`: cumulative gains of positions 1..k, clamped at k).
    """
    kind, k = parse_metric(metric)
    above, tied = np.asarray(above, dtype=np.int64), np.asarray(tied, dtype=np.int64)
    first, last = above + 1, above + tied + 1
    positions = np.arange(1, k + 1, dtype=np.float64)
    gains = np.ones_like(positions) if kind == "hr" else 1.0 / positions
    cum = np.concatenate([[0.0], np.cumsum(gains)])
    total = cum[np.minimum(last, k)] - cum[np.minimum(first - 1, k)]
    return total / (last - first + 1).astype(np.float64)


def check_aligned(runs: Mapping[str, Ranks]) -> tuple[str, int]:
    """All runs ranked the same targets (equal digest and length); returns (digest, n) or raises ValueError."""
    if not runs:
        raise ValueError("no runs with rank counts to compare")
    items = list(runs.items())
    name0, first = items[0]
    for name, ranks in items[1:]:
        if ranks.digest != first.digest:
            raise ValueError(f"rank counts of {name} and {name0} come from different target lists (digest {ranks.digest} != "
                             f"{first.digest}): they are not paired (different dataset, split, protocol or target sample)")
        if len(ranks) != len(first):
            raise ValueError(f"rank counts of {name} ({len(ranks)} targets) and {name0} ({len(first)}) have the same digest "
                             "but different lengths")
    return first.digest, len(first)


def shared_seeds(a: Mapping, b: Mapping) -> list:
    """Seeds both methods ran, sorted (pairing is by seed number)."""
    return sorted(set(a) & set(b), key=lambda s: (str(type(s)), s))


def t_interval(diff: np.ndarray, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """t-interval of the mean of paired differences (NaN for fewer than 2 values; a point when they are all equal)."""
    from scipy import stats

    diff = np.asarray(diff, dtype=np.float64)
    n = len(diff)
    if n < 2:
        return float("nan"), float("nan")
    mean, se = float(diff.mean()), float(diff.std(ddof=1)) / np.sqrt(n)
    half = float(stats.t.ppf(0.5 + confidence / 2, n - 1)) * se
    return mean - half, mean + half


def paired_t(diff: np.ndarray) -> float:
    """Two-sided paired t-test p-value of ``diff`` (= one-sample t-test against 0).

    Degenerate cases: all differences zero -> 1.0 (nothing to detect); a constant non-zero difference
    (no spread: the t statistic is infinite, the test undefined) and fewer than 2 values -> NaN.
    """
    from scipy import stats

    diff = np.asarray(diff, dtype=np.float64)
    if len(diff) < 2:
        return float("nan")
    if not diff.any():
        return 1.0
    if np.all(diff == diff[0]):
        return float("nan")
    return float(stats.ttest_1samp(diff, 0.0).pvalue)


def wilcoxon(diff: np.ndarray) -> float:
    """Two-sided Wilcoxon signed-rank p-value of ``diff`` (zero differences dropped); 1.0 when all are zero."""
    from scipy import stats

    diff = np.asarray(diff, dtype=np.float64)
    if not diff.any():
        return 1.0
    return float(stats.wilcoxon(diff, zero_method=ZERO_METHOD, alternative="two-sided").pvalue)


@dataclass
class TargetTest:
    """Over-targets comparison of A vs B on one metric (differences A - B, effect and CI in points)."""

    metric: str
    seeds: list
    n_targets: int
    effect: float  # mean per-target difference, points (percent)
    ci_low: float
    ci_high: float
    p_wilcoxon: float
    p_t: float
    digest: str


@dataclass
class SeedTest:
    """Over-seeds comparison: paired t-test on the per-seed test metric (differences A - B, in points)."""

    seeds: list
    effect: float
    ci_low: float
    ci_high: float
    p_t: float


def seed_mean_values(ranks: Mapping, seeds: list, metric: str) -> np.ndarray:
    """A method's per-target values averaged over ``seeds``."""
    return np.mean([target_values(ranks[s].above, ranks[s].tied, metric) for s in seeds], axis=0)


def compare_targets(a: Mapping, b: Mapping, metric: str = "hr@20") -> TargetTest:
    """A vs B over test targets. ``a``/``b``: seed -> :class:`Ranks` (or its dict form).

    Uses only the seeds both have; every run of both must carry the same target digest.
    """
    a = {s: r if isinstance(r, Ranks) else Ranks.from_dict(r) for s, r in a.items()}
    b = {s: r if isinstance(r, Ranks) else Ranks.from_dict(r) for s, r in b.items()}
    seeds = shared_seeds(a, b)
    if not seeds:
        raise ValueError(f"no shared seeds to pair: A has {sorted(map(str, a))}, B has {sorted(map(str, b))}")
    digest, n = check_aligned({**{f"A (seed {s})": a[s] for s in seeds}, **{f"B (seed {s})": b[s] for s in seeds}})
    diff = seed_mean_values(a, seeds, metric) - seed_mean_values(b, seeds, metric)
    lo, hi = t_interval(diff)
    return TargetTest(metric, seeds, n, 100 * float(diff.mean()), 100 * lo, 100 * hi, wilcoxon(diff), paired_t(diff), digest)


def compare_seeds(a: Mapping, b: Mapping) -> SeedTest:
    """A vs B over seeds: ``a``/``b`` map seed -> that seed's test metric (a fraction); needs >= 2 shared seeds."""
    seeds = shared_seeds(a, b)
    if len(seeds) < 2:
        raise ValueError(f"a paired test over seeds needs >= 2 shared seeds; shared: {seeds or 'none'}")
    diff = np.array([float(a[s]) - float(b[s]) for s in seeds])
    lo, hi = t_interval(diff)
    return SeedTest(seeds, 100 * float(diff.mean()), 100 * lo, 100 * hi, paired_t(diff))


def holm(pvalues) -> np.ndarray:
    """Holm-Bonferroni adjusted p-values (NaN entries are left out of the family and stay NaN)."""
    p = np.asarray(pvalues, dtype=np.float64)
    out = np.full_like(p, np.nan)
    idx = np.flatnonzero(~np.isnan(p))
    m = len(idx)
    if m == 0:
        return out
    order = idx[np.argsort(p[idx], kind="stable")]
    running = 0.0
    for i, j in enumerate(order):
        running = max(running, min(1.0, (m - i) * p[j]))
        out[j] = running
    return out
