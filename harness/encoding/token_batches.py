"""Token-budget batches over length-sorted inputs (not fixed item counts).

A batch is a pure function of one chunk's lengths and the budget, so the same chunk is cut into the
same batches whatever the number of processes: features are then bitwise equal across world sizes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Batch:
    """Items (dense indices) encoded together; ``dummy`` batches only keep ZeRO-3 ranks in step."""

    chunk: int
    items: tuple[int, ...]
    tokens: int  # real (unpadded) tokens in the batch
    padded: int  # len(items) * longest: what a padded forward computes
    dummy: bool = False


def token_budget_groups(lengths: Sequence[int], budget: int) -> list[list[int]]:
    """Positions sorted by length (longest first, ties by position), cut greedily so that
    ``len(group) * longest <= budget``; an input longer than the budget gets a group of its own."""
    if budget < 1:
        raise ValueError(f"token budget must be >= 1, got {budget}")
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
    groups: list[list[int]] = []
    for pos in order:
        if groups and (len(groups[-1]) + 1) * lengths[groups[-1][0]] <= budget:
            groups[-1].append(pos)
        else:
            groups.append([pos])
    return groups


def chunk_batches(chunk: int, items: Sequence[int], lengths: Sequence[int], budget: int) -> list[Batch]:
    """The batches of one chunk: ``items[k]`` has ``lengths[k]`` tokens."""
    out = []
    for group in token_budget_groups(lengths, budget):
        lens = [lengths[p] for p in group]
        out.append(Batch(chunk, tuple(items[p] for p in group), sum(lens), len(lens) * max(lens)))
    return out


def length_sorted_chunks(lengths: Sequence[int], chunk_size: int) -> list[list[int]]:
    """All items sorted by length (longest first, ties by index) and cut into chunks of ``chunk_size``.

    Every chunk holds inputs of nearly one length, so its token-budget batches carry little padding,
    and the cut depends only on the inputs (never on the number of processes), so a finished chunk
    means the same thing to any later run.
    """
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
    return [order[s : s + chunk_size] for s in range(0, len(order), chunk_size)]
