"""Iterative k-core filtering on flat interaction arrays (vectorised with numpy)."""

from __future__ import annotations

import numpy as np

from harness.data.registry import RawData


def kcore_mask(users: np.ndarray, items: np.ndarray, k: int = 5) -> np.ndarray:
    """Boolean mask of interactions kept when users and items with < k interactions are
    removed repeatedly until every remaining user and item has >= k."""
    keep = np.ones(len(users), dtype=bool)
    n_users = int(users.max()) + 1 if len(users) else 0
    n_items = int(items.max()) + 1 if len(items) else 0
    while True:
        user_count = np.bincount(users[keep], minlength=n_users)
        item_count = np.bincount(items[keep], minlength=n_items)
        new = keep & (user_count[users] >= k) & (item_count[items] >= k)
        if new.sum() == keep.sum():
            return keep
        keep = new


def _compress(codes: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Map the surviving codes to 0..n-1 (order kept); return the new codes and the old kept ids."""
    present = np.zeros(size, dtype=bool)
    present[codes] = True
    remap = np.cumsum(present) - 1
    return remap[codes], np.flatnonzero(present)


def apply_kcore(raw: RawData, k: int = 5) -> RawData:
    """``raw`` filtered to its k-core; user and item order are kept, codes re-densified."""
    users = np.repeat(np.arange(len(raw.lengths), dtype=np.int64), raw.lengths)
    keep = kcore_mask(users, raw.items, k) if k > 1 else np.ones(len(users), dtype=bool)
    items, kept_items = _compress(raw.items[keep], len(raw.item_ids))
    lengths = np.bincount(users[keep], minlength=len(raw.lengths))
    kept_users = np.flatnonzero(lengths)
    return RawData(
        user_ids=[raw.user_ids[u] for u in kept_users],
        lengths=lengths[kept_users].astype(np.int64),
        items=items.astype(np.int64),
        item_ids=[raw.item_ids[i] for i in kept_items],
        texts=[raw.texts[i] for i in kept_items],
        images=[raw.images[i] for i in kept_items],
        notes=list(raw.notes),
        split=raw.split if k <= 1 else None,  # readers with predefined splits set k_core 0
    )
