"""Splits: hand-computed positions, no leakage, coverage, determinism and the on-disk cache."""

from __future__ import annotations

import numpy as np
import pytest

from harness.data import eval_targets, history_matrix, load_dataset, make_split, train_sequences
from harness.data.split import compute_split, split_path

LENGTHS = np.array([5, 10, 2, 20, 23, 1])


def test_paper_split_by_hand():
    split = compute_split(LENGTHS, "paper", valid_fraction=0.1)
    # train part = floor(0.8 n) (>= 1 test item); valid = ceil(0.1 * train part), keeping >= 1 train item
    assert split.test_start.tolist() == [4, 8, 1, 16, 18, 0]
    assert split.valid_start.tolist() == [3, 7, 1, 14, 16, 0]
    assert split.num_targets("test") == 1 + 2 + 1 + 4 + 5 + 1
    assert split.num_targets("valid") == 1 + 1 + 0 + 2 + 2 + 0


def test_paper_split_without_validation():
    split = compute_split(LENGTHS, "paper", valid_fraction=0.0)
    assert np.array_equal(split.valid_start, split.test_start)


def test_leave_one_out_by_hand():
    split = compute_split(LENGTHS, "leave-one-out")
    assert split.test_start.tolist() == [4, 9, 1, 19, 22, 0]
    assert split.valid_start.tolist() == [3, 8, 1, 18, 21, 0]


def test_eval_targets_exact_coverage():
    split = compute_split(LENGTHS, "paper")
    users, positions = eval_targets(split, "test")
    expected = [(u, p) for u, n in enumerate(LENGTHS) for p in range(split.test_start[u], n)]
    assert list(zip(users.tolist(), positions.tolist())) == expected
    users, positions = eval_targets(split, "valid")
    expected = [(u, p) for u in range(len(LENGTHS)) for p in range(split.valid_start[u], split.test_start[u])]
    assert list(zip(users.tolist(), positions.tolist())) == expected


def test_bad_protocol_and_part_name_valid_choices():
    with pytest.raises(ValueError, match="paper, leave-one-out"):
        compute_split(LENGTHS, "random")
    with pytest.raises(ValueError, match="valid, test"):
        eval_targets(compute_split(LENGTHS), "train")
    with pytest.raises(ValueError, match="valid_fraction"):
        compute_split(LENGTHS, valid_fraction=1.5)


@pytest.mark.parametrize("name", ["ml-100k", "amazon-beauty"])
@pytest.mark.parametrize("protocol", ["paper", "leave-one-out"])
def test_real_split_properties(name, protocol):
    ds = load_dataset(name)
    split = make_split(ds, protocol)
    lengths = ds.lengths()
    # every user has >= 1 test target and keeps >= 1 training item
    assert ((lengths - split.test_start) >= 1).all()
    assert (split.valid_start >= 1).all()
    # validation never overlaps test: [valid_start, test_start) and [test_start, len) are disjoint
    assert (split.valid_start <= split.test_start).all()
    vu, vp = eval_targets(split, "valid")
    tu, tp = eval_targets(split, "test")
    assert not set(zip(vu.tolist(), vp.tolist())) & set(zip(tu.tolist(), tp.tolist()))
    assert len(tu) == int((lengths - split.test_start).sum())
    if protocol == "paper":  # test part is the last 20% (>= 1), validation is about 10% of the train part
        assert ((lengths - split.test_start) == np.maximum(lengths - np.floor(0.8 * lengths + 1e-9), 1)).all()
        assert len(vu) > 0.05 * len(tu)
    else:
        assert ((lengths - split.test_start) == 1).all() and ((split.test_start - split.valid_start) == 1).all()
    # training sequences end before the first validation target
    train = train_sequences(ds, split)
    assert [len(t) for t in train] == split.valid_start.tolist()


def test_histories_hold_only_earlier_positions():
    ds = load_dataset("ml-100k")
    split = make_split(ds, "paper")
    users, positions = eval_targets(split, "test")
    hist = history_matrix(ds, users, positions, max_len=50)
    assert hist.shape == (len(users), 50)
    for row in range(0, len(users), 97):  # a spread of targets, checked exactly
        u, p = users[row], positions[row]
        expected = ds.sequences[u][max(0, p - 50) : p]
        assert np.array_equal(hist[row][50 - len(expected) :], expected)
        assert (hist[row][: 50 - len(expected)] == -1).all()
    # the target itself is never its own history: with max_len = p the row is exactly seq[:p]
    short = history_matrix(ds, users[:1], positions[:1], max_len=int(positions[0]) + 5)
    assert short[0][-1] == ds.sequences[users[0]][positions[0] - 1]
    assert (short[0][:5] == -1).all()


def test_same_seed_same_split_and_cached(session_cache):
    ds = load_dataset("ml-100k")
    first = make_split(ds, "paper", 0.1, seed=3)
    files = sorted((session_cache / "splits").glob("ml-100k-paper-*.npz"))
    assert files
    again = make_split(ds, "paper", 0.1, seed=3)  # from the cache
    fresh = make_split(ds, "paper", 0.1, seed=3, use_cache=False)
    for other in (again, fresh):
        assert np.array_equal(first.valid_start, other.valid_start)
        assert np.array_equal(first.test_start, other.test_start)
    make_split(ds, "paper", 0.2, seed=3)
    assert len(sorted((session_cache / "splits").glob("ml-100k-paper-*.npz"))) == len(files) + 1
    assert not list((session_cache / "splits").glob("*.part"))


def test_corrupt_split_cache_is_rebuilt(session_cache):
    ds = load_dataset("ml-100k")
    split = make_split(ds, "leave-one-out", seed=11)
    path = split_path(ds, "leave-one-out", 0.1, 11)
    assert path.is_file() and path.parent == session_cache / "splits"
    path.write_bytes(b"truncated")
    again = make_split(ds, "leave-one-out", seed=11)
    assert np.array_equal(split.test_start, again.test_start)
    assert path.stat().st_size > 100  # rewritten whole
