"""Token-budget batches over length-sorted inputs (not fixed item counts).

A batch is a pure function of one chunk's lengths and the budget, so the same chunk is cut into the
same batches whatever the number of processes: features are then bitwise equal across world sizes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence


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
