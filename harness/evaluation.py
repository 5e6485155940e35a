"""Full-ranking evaluation: HR, MRR and NDCG at k over all items.

Every target is ranked against the whole catalogue (no sampled negatives). A chunk of
targets costs one score matrix ``[B, N]`` (the model's matrix product) and one comparison
with the target's own score, which gives the *exact* rank, so no top-k cut-off or
tie-breaking by index can creep in.

Ties (items scored exactly like the target) are resolved by ``ties``:

- ``"expected"`` (default): the expectation under uniformly random tie-breaking. A target
  tied with ``t`` other items sits at each of the positions ``above+1 .. above+t+1`` with
  probability ``1/(t+1)``; every metric is averaged over those positions. A constant scorer
  therefore gets exactly the random-ranking value (HR@k = k/N), neither 0 nor 1.
- ``"pessimistic"``: the target is placed after all items it ties with.
- ``"optimistic"``: the target is placed before all items it ties with.

With float32 scores ties are rare for trained models; they matter for count-based
baselines (most-popular) and for low-precision scores.

Metrics per target (rank r, 1-based): HR@k = [r <= k]; MRR@k = 1/r if r <= k else 0;
NDCG@k = 1/log2(r + 1) if r <= k else 0 (one relevant item, so the ideal DCG is 1).
They are averaged over targets (``paper`` protocol) or first within each user and then over
users (``leave-one-out``, where it equals the target average since each user has one).

History masking follows RecBole's sequential models by default: nothing is masked, an
item the user already consumed may be recommended again. ``mask_history=True`` removes the
user's earlier items (except the target itself) from the ranking.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import numpy as np
import torch
from tqdm.auto import tqdm

from harness.batching import SequenceStore, range_targets, to_tensor

KS: tuple[int, ...] = (5, 10, 20)
METRICS: tuple[str, ...] = ("hr", "mrr", "ndcg")
TIES: tuple[str, ...] = ("expected", "pessimistic", "optimistic")
AVERAGES: tuple[str, ...] = ("targets", "users")
PROTOCOL_AVERAGE = {"paper": "targets", "leave-one-out": "users", "predefined": "users"}  # predefined: as RecBole
SCORE_BUDGET = 1 << 26  # scores per evaluation chunk (256 MB float32): chunks shrink as the catalogue grows


def metric_names(ks: Iterable[int] = KS) -> list[str]:
    """All metric names produced for ``ks``, e.g. ``["hr@5", "mrr@5", "ndcg@5", ...]``."""
    return [f"{m}@{k}" for k in ks for m in METRICS]


def check_choice(value: str, choices: Iterable[str], what: str) -> str:
    """Return ``value`` if it is one of ``choices``, else raise naming the valid ones."""
    choices = tuple(choices)
    if value not in choices:
        raise ValueError(f"unknown {what} {value!r}; valid: {', '.join(choices)}")
    return value


def _gain(metric: str, positions: torch.Tensor) -> torch.Tensor:
    """Per-position gain of ``metric`` for 1-based ``positions``."""
    if metric == "hr":
        return torch.ones_like(positions)
    if metric == "mrr":
        return 1.0 / positions
    return 1.0 / torch.log2(positions + 1.0)


def _cumulative_gain(metric: str, k: int, device: torch.device) -> torch.Tensor:
    """``C[i] = sum of gains at positions 1..i`` for i in 0..k (C[0] = 0)."""
    positions = torch.arange(1, k + 1, dtype=torch.float64, device=device)
    return torch.cat([torch.zeros(1, dtype=torch.float64, device=device), _gain(metric, positions).cumsum(0)])


def rank_counts(scores: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per row: how many items score strictly above the target, and how many others tie with it."""
    if scores.ndim != 2 or targets.shape != scores.shape[:1]:
        raise ValueError(f"scores must be [B, N] and targets [B]; got {tuple(scores.shape)} and {tuple(targets.shape)}")
    target_scores = scores.gather(1, targets.view(-1, 1))
    if torch.isnan(target_scores).any():
        raise ValueError("a target has a NaN score: the model diverged or produced invalid scores")
    above = (scores > target_scores).sum(1)
    tied = (scores == target_scores).sum(1) - 1
    return above, tied


def target_metrics(
    above: torch.Tensor, tied: torch.Tensor, ks: Iterable[int] = KS, ties: str = "expected"
) -> dict[str, torch.Tensor]:
    """Metric values per target (float64 ``[B]`` each) from :func:`rank_counts`."""
    check_choice(ties, TIES, "tie convention")
    above, tied = above.long(), tied.long()
    if ties == "pessimistic":
        first, last = above + tied + 1, above + tied + 1
    elif ties == "optimistic":
        first, last = above + 1, above + 1
    else:
        first, last = above + 1, above + tied + 1
    span = (last - first + 1).double()
    out: dict[str, torch.Tensor] = {}
    for k in ks:
        for metric in METRICS:
            cum = _cumulative_gain(metric, k, above.device)
            total = cum[last.clamp(max=k)] - cum[(first - 1).clamp(max=k)]
            out[f"{metric}@{k}"] = total / span
    return out


class RankingAccumulator:
    """Collects per-target metric values chunk by chunk and averages them at the end."""

    def __init__(self, ks: Iterable[int] = KS, ties: str = "expected"):
        self.ks = tuple(ks)
        self.ties = check_choice(ties, TIES, "tie convention")
        self._values: dict[str, list[np.ndarray]] = {name: [] for name in metric_names(self.ks)}
        self._users: list[np.ndarray] = []
        self._counts: list[np.ndarray] = []  # [2, B] (above, tied) per chunk: what paired tests need

    def add(self, scores: torch.Tensor, targets: torch.Tensor, users: np.ndarray | torch.Tensor) -> None:
        """Rank ``targets`` (0-based item indices) within ``scores [B, N]``; ``users`` groups targets."""
        above, tied = rank_counts(scores, targets)
        self._counts.append(torch.stack([above, tied]).to(torch.int32).cpu().numpy())
        metrics = target_metrics(above, tied, self.ks, self.ties)
        stacked = torch.stack(list(metrics.values())).cpu().numpy()  # one device-to-host copy per chunk
        for name, values in zip(metrics, stacked):
            self._values[name].append(values)
        self._users.append(np.asarray(torch.as_tensor(users).cpu(), dtype=np.int64))

    def per_target(self) -> dict[str, np.ndarray]:
        """All collected values, in the order they were added."""
        return {name: np.concatenate(parts) if parts else np.zeros(0) for name, parts in self._values.items()}

    def ranks(self) -> dict[str, np.ndarray]:
        """Per target, in the order added: ``above`` (items scored strictly higher) and ``tied`` (int32)."""
        counts = np.concatenate(self._counts, axis=1) if self._counts else np.zeros((2, 0), dtype=np.int32)
        return {"above": counts[0], "tied": counts[1]}

    def result(self, average: str = "targets") -> dict[str, float]:
        """Mean of every metric over targets, or over users (each user's targets averaged first)."""
        check_choice(average, AVERAGES, "average")
        values = self.per_target()
        if not self._users or len(next(iter(values.values()))) == 0:
            raise ValueError("no targets were evaluated")
        if average == "targets":
            return {name: float(v.mean()) for name, v in values.items()}
        _, group = np.unique(np.concatenate(self._users), return_inverse=True)
        counts = np.bincount(group)
        return {name: float((np.bincount(group, weights=v) / counts).mean()) for name, v in values.items()}


ScoreFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
"""``score_fn(item_seq [B, L] shifted ids (0 = pad, right-padded), lengths [B]) -> scores [B, N]``."""


def mask_seen(scores: torch.Tensor, targets: torch.Tensor, rows: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
    """Set ``scores[rows, items]`` to -inf (history items), keeping each target's own score."""
    target_scores = scores.gather(1, targets.view(-1, 1))
    scores = scores.index_put((rows, items), torch.tensor(float("-inf"), device=scores.device, dtype=scores.dtype))
    return scores.scatter(1, targets.view(-1, 1), target_scores)


PARTS: tuple[str, ...] = ("valid", "test")


def split_targets(valid_start: np.ndarray, test_start: np.ndarray, lengths: np.ndarray, part: str) -> tuple[np.ndarray, np.ndarray]:
    """(user, position) of every target of ``part``: valid = [valid_start, test_start), test = [test_start, len)."""
    check_choice(part, PARTS, "evaluation part")
    starts, ends = (valid_start, test_start) if part == "valid" else (test_start, lengths)
    users, positions = range_targets(starts, ends)
    if (positions < 1).any():
        raise ValueError(f"{part} targets at position 0 have no history; the split must leave >= 1 training item")
    return users, positions


def sample_targets(users: np.ndarray, positions: np.ndarray, limit: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """At most ``limit`` of the (user, position) targets, drawn uniformly without replacement by a fixed
    ``seed`` and kept in their original order (all of them when ``limit <= 0`` or there are fewer)."""
    if limit <= 0 or len(users) <= limit:
        return users, positions
    keep = np.sort(np.random.default_rng(seed).choice(len(users), size=limit, replace=False))
    return users[keep], positions[keep]


@torch.no_grad()
def evaluate(
    score_fn: ScoreFn,
    store: SequenceStore,
    users: np.ndarray,
    positions: np.ndarray,
    max_len: int,
    batch_size: int = 1024,
    ks: Iterable[int] = KS,
    ties: str = "expected",
    average: str = "targets",
    mask_history: bool = False,
    device: torch.device | str = "cpu",
    progress: bool = False,
    return_ranks: bool = False,
) -> dict[str, float] | tuple[dict[str, float], dict[str, np.ndarray]]:
    """Rank the item at ``seq[u][p]`` for every (u, p) given the history before it; metrics by name
    (and, with ``return_ranks``, the per-target rank counts of :meth:`RankingAccumulator.ranks`)."""
    acc = RankingAccumulator(ks, ties)
    # disable=None: no progress bar when not on a terminal (cell and Slurm logs stay readable)
    bar = tqdm(total=len(users), desc="eval", unit="target", leave=False, mininterval=5,
               disable=None if progress and len(users) >= 8 * batch_size else True)
    lo, step = 0, 1  # the first chunk (one target) tells the catalogue size N; then chunks of <= SCORE_BUDGET scores
    while lo < len(users):
        u, p = users[lo : lo + step], positions[lo : lo + step]
        seq, lengths = store.histories(u, p, max_len)
        scores = score_fn(to_tensor(seq, device), to_tensor(lengths, device)).float()
        targets = to_tensor(store.items_at(u, p), scores.device)
        if mask_history:
            rows, items = store.seen(u, p)
            scores = mask_seen(scores, targets, to_tensor(rows, scores.device), to_tensor(items, scores.device))
        acc.add(scores, targets, u)
        bar.update(len(u))
        lo, step = lo + len(u), max(1, min(batch_size, SCORE_BUDGET // max(scores.shape[1], 1)))
    bar.close()
    return (acc.result(average), acc.ranks()) if return_ranks else acc.result(average)


def targets_digest(users: np.ndarray, positions: np.ndarray) -> str:
    """A short hash of the (user, position) target list: two runs' per-target ranks pair only when it matches."""
    import hashlib

    data = np.stack([np.asarray(users, dtype=np.int64), np.asarray(positions, dtype=np.int64)])
    return hashlib.sha256(data.tobytes()).hexdigest()[:16]


class MostPopular:
    """Baseline scorer: every item scored by its number of occurrences in the training parts."""

    def __init__(self, store: SequenceStore, train_lengths: np.ndarray, num_items: int):
        users, positions = range_targets(np.zeros_like(train_lengths), train_lengths)
        counts = np.bincount(store.items_at(users, positions), minlength=num_items)
        self.counts = torch.from_numpy(counts.astype(np.float32))

    def __call__(self, item_seq: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        return self.counts.to(item_seq.device).expand(len(item_seq), -1)
