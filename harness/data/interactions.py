"""Turn parsed interactions into ``RawData``: chronological grouping and item coding, vectorised."""

from __future__ import annotations

import numpy as np

from harness.data.registry import RawData


def code_numeric(ids: np.ndarray) -> tuple[np.ndarray, list[str]]:
    """Integer raw ids -> dense codes in ascending id order, and code -> raw id string."""
    uniq, codes = np.unique(ids, return_inverse=True)
    return codes.astype(np.int64), [str(int(x)) for x in uniq]


def code_by_order(tokens: list[str], order: dict[str, int] | None = None) -> tuple[np.ndarray, list[str]]:
    """String raw ids -> dense codes; ordered by ``order`` (raw id -> rank) or first appearance."""
    if order is None:
        order = {}
        for t in tokens:
            order.setdefault(t, len(order))
        ranked = list(order)
    else:
        unknown = next((t for t in tokens if t not in order), None)
        if unknown is not None:
            order = dict(order)
            for t in tokens:
                order.setdefault(t, len(order))
        ranked = sorted(set(tokens), key=order.__getitem__)
    index = {raw: i for i, raw in enumerate(ranked)}
    return np.fromiter((index[t] for t in tokens), dtype=np.int64, count=len(tokens)), ranked


def group_chronologically(users: np.ndarray, times: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Order interactions by (user, time), ties kept in file order.

    Returns the permutation, the sorted unique users and the interactions per user.
    """
    by_time = np.argsort(times, kind="stable")
    perm = by_time[np.argsort(users[by_time], kind="stable")]
    uniq, counts = np.unique(users[perm], return_counts=True)
    return perm, uniq, counts.astype(np.int64)


def raw_from_table(
    users: np.ndarray, items: np.ndarray, times: np.ndarray, item_meta: dict[str, tuple[str, str]], notes: list[str]
) -> RawData:
    """Integer (user, item, time) columns + item metadata (raw id -> (text, image)) -> ``RawData``."""
    perm, uniq_users, counts = group_chronologically(users, times)
    codes, item_ids = code_numeric(items[perm])
    return with_metadata(RawData([str(int(u)) for u in uniq_users], counts, codes, item_ids, [], []), item_meta, notes)


def with_metadata(raw: RawData, item_meta: dict[str, tuple[str, str]], notes: list[str]) -> RawData:
    """Fill texts/images from ``item_meta`` (raw id -> (text, image)); absent items get ""."""
    raw.texts = [item_meta.get(i, ("", ""))[0] for i in raw.item_ids]
    raw.images = [item_meta.get(i, ("", ""))[1] for i in raw.item_ids]
    raw.notes = list(notes)
    return raw
