"""Token-budget batches over length-sorted inputs (not fixed item counts).

A batch is a pure function of one chunk's lengths and the budget, so the same chunk is cut into the
same batches whatever the number of processes: features are then bitwise equal across world sizes.
Planning is numpy over integer arrays (no per-item Python objects): a million-item catalogue is
sorted and cut in well under a second.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Batch:
    """Items (dense indices) encoded together; ``dummy`` batches only keep ZeRO-3 ranks in step."""

    chunk: int
    items: tuple[int, ...]
    tokens: int  # real (unpadded) tokens in the batch
    padded: int  # len(items) * longest: what a padded forward computes
    dummy: bool = False


def length_order(lengths: Sequence[int] | np.ndarray) -> np.ndarray:
    """Positions sorted longest first, ties by position (a stable sort of the negated lengths)."""
    return np.argsort(-np.asarray(lengths, dtype=np.int64), kind="stable")


def token_budget_groups(lengths: Sequence[int] | np.ndarray, budget: int) -> list[np.ndarray]:
    """Positions sorted by length (longest first, ties by position), cut greedily so that
    ``len(group) * longest <= budget``; an input longer than the budget gets a group of its own."""
    if budget < 1:
        raise ValueError(f"token budget must be >= 1, got {budget}")
    order = length_order(lengths)
    longest = np.asarray(lengths, dtype=np.int64)[order]
    groups, start, n = [], 0, len(order)
    while start < n:  # one step per group: its first item is its longest, so its size is budget // that
        first = int(longest[start])
        size = max(1, budget // first) if first > 0 else n - start
        groups.append(order[start : start + size])
        start += size
    return groups


def chunk_batches(chunk: int, items: Sequence[int] | np.ndarray, lengths: Sequence[int] | np.ndarray,
                  budget: int) -> list[Batch]:
    """The batches of one chunk: ``items[k]`` has ``lengths[k]`` tokens."""
    items, lengths = np.asarray(items, dtype=np.int64), np.asarray(lengths, dtype=np.int64)
    out = []
    for group in token_budget_groups(lengths, budget):
        lens = lengths[group]
        out.append(Batch(chunk, tuple(items[group].tolist()), int(lens.sum()), len(group) * int(lens.max())))
    return out


def length_sorted_chunks(lengths: Sequence[int] | np.ndarray, chunk_size: int) -> list[np.ndarray]:
    """All items sorted by length (longest first, ties by index) and cut into chunks of ``chunk_size``
    (int64 slices of one order array).

    Every chunk holds inputs of nearly one length, so its token-budget batches carry little padding,
    and the cut depends only on the inputs (never on the number of processes), so a finished chunk
    means the same thing to any later run.
    """
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    order = length_order(lengths)
    return [order[s : s + chunk_size] for s in range(0, len(order), chunk_size)]
