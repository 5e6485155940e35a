"""Training inputs: causal windows cover every next-item target exactly once, with the right history."""

from __future__ import annotations

import numpy as np
import pytest

from harness.batching import (
    SequenceStore,
    causal_windows,
    prefix_targets,
    range_targets,
)


@pytest.mark.parametrize("max_len", [1, 3, 50])
def test_causal_windows_cover_each_target_once(max_len):
    lengths = np.array([0, 1, 2, 5, 7, 8, 120])
    users, starts, sizes = causal_windows(lengths, max_len)
    assert (sizes >= 2).all() and (sizes <= max_len + 1).all()
    covered = {(int(u), int(s) + j) for u, s, z in zip(users, starts, sizes) for j in range(1, int(z))}
    want = {(u, p) for u, n in enumerate(lengths) for p in range(1, int(n))}
    assert covered == want
    assert sum(int(z) - 1 for z in sizes) == len(want)  # no target twice
    last = {int(u): (int(s), int(z)) for u, s, z in zip(users, starts, sizes) if int(s) + int(z) == lengths[u]}
    assert last[6] == (120 - min(max_len + 1, 120), min(max_len + 1, 120))  # the most recent window is full


def test_window_inputs_and_targets_are_shifted_by_one():
    store = SequenceStore([np.arange(10, 17)])  # items 10..16
    users, starts, sizes = causal_windows(np.array([7]), max_len=4)
    assert list(zip(starts.tolist(), sizes.tolist())) == [(2, 5), (0, 3)]
    inputs = store.slices(users, starts, sizes - 1, 4)
    targets = store.slices(users, starts + 1, sizes - 1, 4)
    assert inputs.tolist() == [[13, 14, 15, 16], [11, 12, 0, 0]]  # shifted ids (+1), right-padded
    assert targets.tolist() == [[14, 15, 16, 17], [12, 13, 0, 0]]


def test_prefix_and_range_targets():
    u, p = prefix_targets(np.array([3, 1, 2]))
    assert list(zip(u.tolist(), p.tolist())) == [(0, 1), (0, 2), (2, 1)]
    u, p = range_targets(np.array([2, 0]), np.array([4, 1]))
    assert list(zip(u.tolist(), p.tolist())) == [(0, 2), (0, 3), (1, 0)]


def test_slices_out_of_range_is_an_error():
    store = SequenceStore([np.arange(3)])
    with pytest.raises(ValueError, match="out of range"):
        store.slices(np.array([0]), np.array([1]), np.array([3]), 4)
