"""Modality-forgetting monitor (paper Figure 1, right).

On a fixed sample of item pairs, the Pearson correlation between the pairwise cosine
similarities of (a) the current supervised modality embeddings and (b) the original
encoder features, and of (a) and (c) the model's ID embeddings. Falling (a)-(b)
correlation while (a)-(c) rises is the modality forgetting KDSR is meant to prevent.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from harness.run_schema import monitor_key


MONITOR_SEED = 0  # every run (any training seed, any method) is measured on the same item pairs


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
        out[monitor_key(modality)] = pearson(sims, feature_sims[modality].to(sims.device))
        if id_sims is not None:
            out[monitor_key(modality, ids=True)] = pearson(sims, id_sims)
    return out


class ForgettingMonitor(nn.Module):
    """Per-epoch forgetting metrics of a model's item tables, on fixed pairs of items with features.

    Independent of KDSR, so a plain fine-tuned run logs the same curve KDSR is meant to hold up.

    Args:
        features: modality -> ``Features`` (``.matrix``, ``.valid``) or an [N, D] array.
        n_pairs: item pairs sampled per modality (fixed by ``seed``).
        valid: modality -> [N] bool mask of items the pairs may use (default: the features' own).
    """

    def __init__(self, features: dict[str, Any], n_pairs: int, seed: int = 0, valid: dict[str, Any] | None = None):
        super().__init__()
        self.modalities: list[str] = []
        for modality, feats in features.items():
            matrix = np.asarray(getattr(feats, "matrix", feats))
            mask = (valid or {}).get(modality, getattr(feats, "valid", np.ones(len(matrix), dtype=bool)))
            pairs = monitor_pairs(np.asarray(torch.as_tensor(mask).cpu()), n_pairs, seed=seed)
            items, local = np.unique(pairs, return_inverse=True)
            local = torch.from_numpy(local.reshape(pairs.shape))
            self.register_buffer(f"items_{modality}", torch.from_numpy(items), persistent=False)
            self.register_buffer(f"pairs_{modality}", local, persistent=False)
            self.register_buffer(f"sims_{modality}", pair_cosine(torch.from_numpy(matrix[items].astype(np.float32)), local), persistent=False)
            self.modalities.append(modality)

    @torch.no_grad()
    def forward(self, items: Any) -> dict[str, float]:
        """{"monitor/pearson_<modality>", "monitor/pearson_id_<modality>"} for ``items`` (an ``ItemRepresentation``).

        The supervised table is ``items.supervised(modality, ...)``; ID embeddings come from
        ``items.parts(...)["id"]`` when the representation has them (in ``id`` mode both are
        the ID table, so pearson_id is 1).
        """
        out: dict[str, float] = {}
        for modality in self.modalities:
            index = getattr(self, f"items_{modality}")
            index = (index + 1).to(_device_of(items, index)).unsqueeze(0)  # shifted ids
            table = items.supervised(modality, index)[0]
            ids = items.parts(index)["id"][0] if hasattr(items, "parts") else None
            pairs = getattr(self, f"pairs_{modality}").to(table.device)
            out.update(forgetting_pearson({modality: table}, {modality: getattr(self, f"sims_{modality}")}, ids, pairs))
        return out


def _device_of(items: Any, fallback: torch.Tensor) -> torch.device:
    if isinstance(items, nn.Module):
        for tensor in (*items.parameters(), *items.buffers()):
            return tensor.device
    return fallback.device
