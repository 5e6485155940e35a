"""Turning user sequences into model inputs: histories, training windows, evaluation targets.

All sequences live in one flat int64 array with per-user offsets, so a batch of histories
is a single vectorised gather, never a Python loop over the batch. Model inputs use
shifted ids (item i -> i + 1, 0 = padding) and are right-padded: row b holds its items in
columns ``0 .. lengths[b]-1``, so a causal backbone's last real position is ``lengths-1``.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import torch


class SequenceStore:
    """User sequences (0-based item indices) packed into one flat array."""

    def __init__(self, sequences: Sequence[np.ndarray]):
        lengths = np.array([len(s) for s in sequences], dtype=np.int64)
        self.offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        self.flat = np.concatenate([np.asarray(s, dtype=np.int64) for s in sequences]) if len(sequences) else np.zeros(0, np.int64)
        self.lengths = lengths

    def __len__(self) -> int:
        return len(self.lengths)

    def slices(self, users: np.ndarray, starts: np.ndarray, lengths: np.ndarray, width: int) -> np.ndarray:
        """``[B, width]`` shifted ids of ``seq[u][start : start+length]``, right-padded with 0."""
        users, starts, lengths = (np.asarray(a, dtype=np.int64) for a in (users, starts, lengths))
        if (lengths > width).any() or (starts < 0).any() or (starts + lengths > self.lengths[users]).any():
            raise ValueError("slice out of range of its user's sequence (or longer than the width)")
        cols = np.arange(width, dtype=np.int64)
        idx = self.offsets[users][:, None] + starts[:, None] + cols
        keep = cols < lengths[:, None]
        return np.where(keep, self.flat[np.minimum(idx, max(len(self.flat) - 1, 0))] + 1, 0)

    def histories(self, users: np.ndarray, positions: np.ndarray, max_len: int) -> tuple[np.ndarray, np.ndarray]:
        """Inputs for targets at ``positions``: the last ``max_len`` items before each, and their count."""
        positions = np.asarray(positions, dtype=np.int64)
        lengths = np.minimum(positions, max_len)
        return self.slices(users, positions - lengths, lengths, max_len), lengths

    def items_at(self, users: np.ndarray, positions: np.ndarray) -> np.ndarray:
        """0-based item index at ``seq[u][p]`` for each pair."""
        return self.flat[self.offsets[np.asarray(users)] + np.asarray(positions)]

    def seen(self, users: np.ndarray, positions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(row, item) pairs of every item in ``seq[u][:p]`` (the full history, not truncated)."""
        positions = np.asarray(positions, dtype=np.int64)
        rows = np.repeat(np.arange(len(positions)), positions)
        first = np.repeat(self.offsets[np.asarray(users)] - np.concatenate([[0], np.cumsum(positions)[:-1]]), positions)
        return rows, self.flat[first + np.arange(len(rows))]


def causal_windows(train_lengths: np.ndarray, max_len: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Windows covering each user's training part for all-position training of a causal model.

    A window ``(user, start, size)`` is the slice ``seq[start : start+size]``; its input is the
    first ``size-1`` items and its targets the last ``size-1`` (next item at every position),
    with ``size <= max_len + 1``. Windows are cut from the end, so the most recent one is full
    and every training target ``seq[1 .. n-1]`` is predicted exactly once.
    """
    n = np.asarray(train_lengths, dtype=np.int64)
    count = np.where(n >= 2, -(-(n - 1) // max_len), 0)  # windows per user (each covers max_len targets)
    users = np.repeat(np.arange(len(n), dtype=np.int64), count)
    k = np.arange(int(count.sum()), dtype=np.int64) - np.repeat(np.cumsum(count) - count, count)  # 0 = most recent
    ends = n[users] - k * max_len
    starts = np.maximum(0, ends - max_len - 1)
    return users, starts, ends - starts


def prefix_targets(train_lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Every (user, position) with position in ``1 .. n-1``: one sample per training target."""
    train_lengths = np.maximum(np.asarray(train_lengths, dtype=np.int64) - 1, 0)
    users = np.repeat(np.arange(len(train_lengths)), train_lengths)
    first = np.repeat(np.cumsum(train_lengths) - train_lengths, train_lengths)
    return users, np.arange(len(users)) - first + 1


def range_targets(starts: np.ndarray, ends: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Every (user, position) with ``starts[u] <= position < ends[u]`` (evaluation targets)."""
    counts = np.maximum(np.asarray(ends, dtype=np.int64) - np.asarray(starts, dtype=np.int64), 0)
    users = np.repeat(np.arange(len(counts)), counts)
    first = np.repeat(np.cumsum(counts) - counts, counts)
    return users, np.arange(len(users)) - first + np.asarray(starts, dtype=np.int64)[users]


def to_tensor(array: np.ndarray, device: torch.device | str) -> torch.Tensor:
    """int64 numpy -> torch on ``device`` (non-blocking when pinned memory applies)."""
    return torch.from_numpy(np.ascontiguousarray(array)).to(device, non_blocking=True)


def training_samples(split: Any, max_len: int, windows: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(user, start, size) slices to train on: ``windows`` (causal backbones) or one prefix per target.

    A slice ``seq[start : start+size]`` feeds its first ``size-1`` items; in a window every
    position predicts the next item, in a prefix only the last one does (RecBole's samples).
    """
    train_lengths = np.asarray(split.valid_start, dtype=np.int64)
    if windows:
        return causal_windows(train_lengths, max_len)
    users, positions = prefix_targets(train_lengths)
    sizes = np.minimum(positions, max_len) + 1
    return users, positions + 1 - sizes, sizes


def batches(
    store: SequenceStore, samples: tuple[np.ndarray, ...], windows: bool, batch_size: int, max_len: int, rng: np.random.Generator
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Shuffled ``(inputs, targets)`` pairs ``[B, W]`` of shifted ids (0 = pad / no target), W <= max_len."""
    users, starts, sizes = samples
    order = rng.permutation(len(users))
    for lo in range(0, len(order), batch_size):
        idx = order[lo : lo + batch_size]
        u, s, z = users[idx], starts[idx], sizes[idx]
        width = int(z.max()) - 1
        inputs = store.slices(u, s, z - 1, width)
        if windows:
            targets = store.slices(u, s + 1, z - 1, width)
        else:
            targets = np.zeros_like(inputs)
            targets[np.arange(len(idx)), z - 2] = store.items_at(u, s + z - 1) + 1
        yield inputs, targets


MIN_GROUP_WIDTH = 8  # narrower groups save little and cost one more forward call each


def width_groups(lengths: torch.Tensor, width: int) -> list[tuple[torch.Tensor, int]]:
    """Rows of a right-padded batch grouped by power-of-two width: ``[(rows, group_width), ...]``.

    A causal backbone's output at a row's real positions does not depend on padding after them,
    so running each group at its own width gives the same hidden states while skipping the
    padding columns: most sequences are far shorter than ``max_len`` (on Amazon Beauty a batch
    padded to its longest row is ~10x padding), and the backbone's cost follows the columns.
    """
    lengths = lengths.clamp(min=1)
    caps = (MIN_GROUP_WIDTH * 2 ** torch.ceil(torch.log2(lengths.float() / MIN_GROUP_WIDTH)).clamp(min=0)).long()
    caps = caps.clamp(max=width)
    return [(torch.nonzero(caps == cap).squeeze(1), int(cap)) for cap in torch.unique(caps).tolist()]
