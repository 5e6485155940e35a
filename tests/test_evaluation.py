"""Full-ranking metrics against hand-computed rankings, tie conventions, averaging, batching."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from harness.batching import SequenceStore
from harness.evaluation import (
    MostPopular,
    RankingAccumulator,
    evaluate,
    metric_names,
    rank_counts,
    sample_targets,
    split_targets,
    target_metrics,
)


def _one(scores: list[float], target: int, ks=(1, 2, 3, 5), ties="expected") -> dict[str, float]:
    above, tied = rank_counts(torch.tensor([scores]), torch.tensor([target]))
    return {k: float(v[0]) for k, v in target_metrics(above, tied, ks, ties).items()}


def test_rank_without_ties_matches_hand_computation():
    m = _one([0.1, 0.5, 0.3, 0.9, 0.2], target=2)  # 0.9 and 0.5 above -> rank 3
    assert (m["hr@1"], m["hr@2"], m["hr@3"], m["hr@5"]) == (0.0, 0.0, 1.0, 1.0)
    assert m["mrr@2"] == 0.0 and m["mrr@3"] == pytest.approx(1 / 3)
    assert m["ndcg@3"] == pytest.approx(0.5) and m["ndcg@5"] == pytest.approx(1 / math.log2(4))


def test_top_ranked_target_scores_one():
    m = _one([3.0, -1.0, 2.0], target=0)
    assert all(v == pytest.approx(1.0) for v in m.values())


def test_ties_expected_pessimistic_optimistic():
    scores = [0.5, 0.5, 0.5, 0.9, 0.1]  # target 0: one item above, two others tied -> positions 2..4
    exp = _one(scores, 0, ties="expected")
    assert exp["hr@1"] == 0.0
    assert exp["hr@2"] == pytest.approx(1 / 3)
    assert exp["hr@3"] == pytest.approx(2 / 3)
    assert exp["hr@5"] == pytest.approx(1.0)
    assert exp["mrr@5"] == pytest.approx((1 / 2 + 1 / 3 + 1 / 4) / 3)
    assert exp["mrr@3"] == pytest.approx((1 / 2 + 1 / 3) / 3)
    assert exp["ndcg@5"] == pytest.approx(sum(1 / math.log2(r + 1) for r in (2, 3, 4)) / 3)
    pes = _one(scores, 0, ties="pessimistic")  # rank 4
    assert (pes["hr@3"], pes["hr@5"], pes["mrr@5"]) == (0.0, 1.0, pytest.approx(1 / 4))
    opt = _one(scores, 0, ties="optimistic")  # rank 2
    assert (opt["hr@1"], opt["hr@2"], opt["mrr@5"]) == (0.0, 1.0, pytest.approx(1 / 2))


def test_constant_scorer_gets_random_ranking_value():
    n = 40
    scores = torch.zeros(n, n)
    above, tied = rank_counts(scores, torch.arange(n))
    vals = target_metrics(above, tied, (5, 10, 20), "expected")
    assert vals["hr@10"].mean().item() == pytest.approx(10 / n)
    assert vals["mrr@5"].mean().item() == pytest.approx(sum(1 / r for r in range(1, 6)) / n)
    assert target_metrics(above, tied, (10,), "pessimistic")["hr@10"].sum().item() == 0.0


def _reference(row: np.ndarray, target: int, k: int, ties: str) -> dict[str, float]:
    """Independent loop: enumerate every position the target may take among its ties."""
    above = int((row > row[target]).sum())
    tied = int((row == row[target]).sum()) - 1
    ranks = {"expected": range(above + 1, above + tied + 2), "pessimistic": [above + tied + 1], "optimistic": [above + 1]}[ties]
    ranks = list(ranks)
    return {
        f"hr@{k}": sum(r <= k for r in ranks) / len(ranks),
        f"mrr@{k}": sum(1 / r for r in ranks if r <= k) / len(ranks),
        f"ndcg@{k}": sum(1 / math.log2(r + 1) for r in ranks if r <= k) / len(ranks),
    }


@pytest.mark.parametrize("ties", ["expected", "pessimistic", "optimistic"])
def test_many_ties_against_reference_loop(ties):
    rng = np.random.default_rng(0)
    scores = rng.integers(0, 6, size=(64, 30)).astype(np.float32)  # heavy ties
    targets = rng.integers(0, 30, size=64)
    above, tied = rank_counts(torch.from_numpy(scores), torch.from_numpy(targets))
    got = target_metrics(above, tied, (1, 3, 7), ties)
    for b in range(64):
        for k in (1, 3, 7):
            for name, want in _reference(scores[b], int(targets[b]), k, ties).items():
                assert got[name][b].item() == pytest.approx(want, abs=1e-12), (b, name)


def test_user_average_weights_users_equally():
    acc = RankingAccumulator(ks=(1,))
    scores = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.0, 1.0]])
    acc.add(scores, torch.tensor([0, 0, 0]), np.array([7, 7, 3]))  # user 7: hit, miss; user 3: miss
    assert acc.result("targets")["hr@1"] == pytest.approx(1 / 3)
    assert acc.result("users")["hr@1"] == pytest.approx((0.5 + 0.0) / 2)


def test_nan_target_score_is_an_error_and_bad_names_list_valid_ones():
    with pytest.raises(ValueError, match="NaN"):
        rank_counts(torch.tensor([[float("nan"), 1.0]]), torch.tensor([0]))
    with pytest.raises(ValueError, match="expected, pessimistic, optimistic"):
        target_metrics(torch.zeros(1), torch.zeros(1), (5,), "random")
    with pytest.raises(ValueError, match="targets, users"):
        RankingAccumulator().result("items")


def _integer_scorer(num_items: int, dim: int = 4, seed: int = 0):
    """Scores = sum of history embeddings @ item embeddings, integer-valued so every batch size is exact."""
    gen = torch.Generator().manual_seed(seed)
    table = torch.randint(-2, 3, (num_items + 1, dim), generator=gen).float()
    table[0] = 0

    def score(item_seq: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        return table[item_seq].sum(1) @ table[1:].T

    return score


def _toy_store(num_users=37, num_items=25, seed=1) -> SequenceStore:
    rng = np.random.default_rng(seed)
    return SequenceStore([rng.integers(0, num_items, size=rng.integers(4, 15)) for _ in range(num_users)])


@pytest.mark.parametrize("mask", [False, True])
def test_results_do_not_depend_on_batch_size(mask):
    store, n = _toy_store(), 25
    users = np.repeat(np.arange(len(store)), store.lengths - 1)
    positions = np.concatenate([np.arange(1, m) for m in store.lengths])
    score = _integer_scorer(n)
    runs = [evaluate(score, store, users, positions, max_len=5, batch_size=bs, mask_history=mask) for bs in (1, 7, 64, 10_000)]
    assert all(r == runs[0] for r in runs[1:])
    assert set(runs[0]) == set(metric_names())


def test_score_budget_caps_the_chunk_without_changing_results(monkeypatch):
    """Large catalogues: a chunk holds at most SCORE_BUDGET scores (here 3 targets of 25 items)."""
    import harness.evaluation as ev

    store, n = _toy_store(), 25
    users = np.repeat(np.arange(len(store)), store.lengths - 1)
    positions = np.concatenate([np.arange(1, m) for m in store.lengths])
    score, rows = _integer_scorer(n), []
    full = evaluate(score, store, users, positions, max_len=5, batch_size=64)
    monkeypatch.setattr(ev, "SCORE_BUDGET", 3 * n + 1)
    capped = evaluate(lambda s, lens: rows.append(len(s)) or score(s, lens), store, users, positions, max_len=5, batch_size=64)
    assert capped == full and max(rows) == 3 and sum(rows) == len(users)


def test_mask_history_removes_seen_items_but_not_the_target():
    store = SequenceStore([np.array([0, 1, 2, 3]), np.array([4, 1, 4])])
    prefer_low = lambda seq, lengths: -torch.arange(6.0).expand(len(seq), -1)
    users, positions = np.array([0, 1]), np.array([3, 2])  # targets: item 3 after [0,1,2]; item 4 after [4,1]
    plain = evaluate(prefer_low, store, users, positions, max_len=2, ks=(1, 5), average="targets")
    masked = evaluate(prefer_low, store, users, positions, max_len=2, ks=(1, 5), mask_history=True)
    assert plain["mrr@5"] == pytest.approx((1 / 4 + 1 / 5) / 2)
    # masked: user 0's target (item 3) rises to rank 1 (0,1,2 seen); user 1's item 4 is its own target
    # (not masked), item 1 is masked, so items 0, 2, 3 stay above it -> rank 4
    assert masked["mrr@5"] == pytest.approx((1 + 1 / 4) / 2)


def test_histories_use_full_history_for_masking_and_last_max_len_for_input():
    store = SequenceStore([np.array([5, 6, 7, 8, 9])])
    seq, lengths = store.histories(np.array([0, 0]), np.array([4, 1]), max_len=3)
    assert seq.tolist() == [[7, 8, 9], [6, 0, 0]] and lengths.tolist() == [3, 1]  # shifted ids, right-padded
    rows, items = store.seen(np.array([0, 0]), np.array([4, 1]))
    assert rows.tolist() == [0, 0, 0, 0, 1] and items.tolist() == [5, 6, 7, 8, 5]


def test_split_targets_and_most_popular():
    store = SequenceStore([np.array([0, 1, 1, 2, 3]), np.array([1, 0, 2])])
    valid_start, test_start = np.array([3, 1]), np.array([4, 2])
    u, p = split_targets(valid_start, test_start, store.lengths, "test")
    assert u.tolist() == [0, 1] and p.tolist() == [4, 2]
    u, p = split_targets(valid_start, test_start, store.lengths, "valid")
    assert u.tolist() == [0, 1] and p.tolist() == [3, 1]
    pop = MostPopular(store, valid_start, num_items=4)  # training parts: [0,1,1] and [1]
    assert pop.counts.tolist() == [1, 3, 0, 0]
    with pytest.raises(ValueError, match="valid, test"):
        split_targets(valid_start, test_start, store.lengths, "train")
    with pytest.raises(ValueError, match="no history"):
        split_targets(np.array([0, 1]), test_start, store.lengths, "valid")


def test_validation_sample_is_fixed_uniform_and_in_order():
    users, positions = np.repeat(np.arange(100), 3), np.tile([1, 2, 3], 100)
    u, p = sample_targets(users, positions, 50)
    assert len(u) == 50 and len(set(zip(u.tolist(), p.tolist()))) == 50  # distinct targets of the part
    assert set(zip(u.tolist(), p.tolist())) <= set(zip(users.tolist(), positions.tolist()))
    assert (np.diff(u * 10 + p) > 0).all()  # original order kept
    again = sample_targets(users, positions, 50)
    assert (again[0] == u).all() and (again[1] == p).all()  # the same sample every epoch
    for limit in (0, 300, 1000):  # 0 = all; a limit at or above the count keeps all
        assert sample_targets(users, positions, limit)[0] is users
    hits = np.bincount(np.concatenate([sample_targets(users, positions, 30, seed)[0] for seed in range(2000)]), minlength=100)
    assert abs(hits.mean() - 600) < 1e-9 and hits.min() > 450 and hits.max() < 750  # ~uniform: 2000 * 30 / 100 each
