"""Which item pairs KDSR looks at.

- ``cooccurring_pairs``: pairs of distinct items that share a training sequence,
  sampled uniformly over all such (sequence, position, position) triples. The teacher's
  score scale and codebook are fitted on these, never on all N^2 pairs.
- ``sample_positions``: for a training batch, the positions whose pairwise grid the
  student is supervised on: every non-padding position (``pairs=all``) or a random
  subset of ``subset_size(max_pairs)`` of them per sequence (``pairs=sample``), so the
  cost is O(B S^2) with a fixed S instead of O(B L^2).
"""

from __future__ import annotations

import math

import numpy as np
import torch

PAIRS = ("all", "sample")  # kdsr.pairs

def cooccurring_pairs(sequences: list[np.ndarray], n_pairs: int, seed: int = 0, valid: np.ndarray | None = None) -> np.ndarray:
    """[P, 2] int64 item pairs (0-based) co-occurring in ``sequences``; same-item and invalid pairs dropped."""
    lengths = np.array([len(s) for s in sequences], dtype=np.int64)
    weights = (lengths * (lengths - 1)).astype(np.float64)
    if weights.sum() == 0:
        raise ValueError("no sequence has two items: cannot sample co-occurring pairs")
    rng = np.random.default_rng(seed)
    user = rng.choice(len(sequences), size=n_pairs, p=weights / weights.sum())
    first = rng.integers(0, lengths[user])
    second = rng.integers(0, lengths[user] - 1)
    second += second >= first  # a distinct position, uniform over the others
    flat = np.concatenate(sequences)
    offsets = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    pairs = np.stack([flat[offsets[user] + first], flat[offsets[user] + second]], axis=1)
    keep = pairs[:, 0] != pairs[:, 1]
    if valid is not None:
        keep &= valid[pairs[:, 0]] & valid[pairs[:, 1]]
    return pairs[keep]


def subset_size(max_pairs: int) -> int:
    """Largest S with S (S - 1) / 2 <= max_pairs: the positions sampled per sequence."""
    if max_pairs < 1:
        raise ValueError(f"max_pairs={max_pairs} must be >= 1")
    return int((1 + math.isqrt(1 + 8 * max_pairs)) // 2)


def sample_positions(item_seq: torch.Tensor, mode: str, max_pairs: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """Sub-sequence [B, S] of ``item_seq`` (shifted ids, 0 = pad) whose pair grid is supervised.

    ``all`` keeps every column; ``sample`` keeps S random non-padding positions per row
    (padding only where a row has fewer than S items).
    """
    if mode == "all":
        return item_seq
    if mode != "sample":
        raise ValueError(f"pairs={mode!r} is not one of {', '.join(PAIRS)}")
    size = subset_size(max_pairs)
    if item_seq.shape[1] <= size:
        return item_seq
    keys = torch.rand(item_seq.shape, generator=generator, device=item_seq.device)
    keys = keys.masked_fill(item_seq == 0, 2.0)  # padding sorts after every real item
    idx = keys.topk(size, dim=1, largest=False).indices
    return item_seq.gather(1, idx)
