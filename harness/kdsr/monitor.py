"""Modality-forgetting monitor (paper Figure 1, right).

On a fixed sample of item pairs, the Pearson correlation between the pairwise cosine
similarities of (a) the current supervised modality embeddings and (b) the original
encoder features, and of (a) and (c) the model's ID embeddings. Falling (a)-(b)
correlation while (a)-(c) rises is the modality forgetting KDSR is meant to prevent.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


def monitor_pairs(valid: np.ndarray, n_pairs: int, seed: int = 0) -> np.ndarray:
    """[P, 2] int64 random pairs of distinct items with valid features (fixed by ``seed``)."""
    items = np.flatnonzero(valid)
    if len(items) < 2:
        raise ValueError("the forgetting monitor needs at least 2 items with valid features")
    rng = np.random.default_rng(seed)
    first = rng.integers(0, len(items), n_pairs)
    second = rng.integers(0, len(items) - 1, n_pairs)
    second += second >= first
    return np.stack([items[first], items[second]], axis=1)


def pair_cosine(rows: torch.Tensor, pairs: torch.Tensor) -> torch.Tensor:
    """Cosine similarity of ``rows[pairs[:, 0]]`` and ``rows[pairs[:, 1]]``."""
    return F.cosine_similarity(rows[pairs[:, 0]].float(), rows[pairs[:, 1]].float(), dim=-1, eps=1e-8)


def pearson(x: torch.Tensor, y: torch.Tensor) -> float:
    """Pearson correlation of two 1-D tensors (0.0 when either is constant)."""
    x, y = x.double() - x.double().mean(), y.double() - y.double().mean()
    denom = x.norm() * y.norm()
    return float((x @ y) / denom) if denom > 0 else 0.0


def forgetting_pearson(tables: dict[str, torch.Tensor], feature_sims: dict[str, torch.Tensor], ids: torch.Tensor | None, pairs: torch.Tensor) -> dict[str, float]:
    """Monitor metrics from embeddings of the sampled items.

    Args:
        tables: modality -> [M, d] current supervised embeddings of the sampled items.
        feature_sims: modality -> [P] cosine similarities of the original features for ``pairs``.
        ids: [M, d] ID embeddings of the same items, or None (then no ``pearson_id_*``).
        pairs: [P, 2] row indices into the M sampled items.
    """
    out: dict[str, float] = {}
    id_sims = pair_cosine(ids, pairs) if ids is not None else None
    for modality, table in tables.items():
        sims = pair_cosine(table, pairs)
        out[f"monitor/pearson_{modality}"] = pearson(sims, feature_sims[modality].to(sims.device))
        if id_sims is not None:
            out[f"monitor/pearson_id_{modality}"] = pearson(sims, id_sims)
    return out
