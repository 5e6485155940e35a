"""The two things every consumer of the data layer reads: an item table and user sequences."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field

import numpy as np


@dataclass
class ItemTable:
    """Dense item index i -> raw id, text for text encoders, image path/URL ("" when none)."""

    raw_ids: list[str]
    texts: list[str]
    images: list[str]

    def __post_init__(self) -> None:
        if not (len(self.raw_ids) == len(self.texts) == len(self.images)):
            raise ValueError(
                f"ItemTable columns differ in length: raw_ids={len(self.raw_ids)}, "
                f"texts={len(self.texts)}, images={len(self.images)}"
            )

    def __len__(self) -> int:
        return len(self.raw_ids)

    def index(self) -> dict[str, int]:
        """Raw id -> dense index."""
        return {raw: i for i, raw in enumerate(self.raw_ids)}


@dataclass
class SequenceDataset:
    """Chronological, 5-core filtered per-user sequences of dense 0-based item indices."""

    name: str
    user_ids: list[str]
    sequences: list[np.ndarray]
    items: ItemTable
    notes: list[str] = field(default_factory=list)  # caveats, e.g. keyword text instead of titles
    source: dict = field(default_factory=dict)  # layout, files and their sha256
    split: np.ndarray | None = None  # int64 [U, 2] valid_start, test_start when split files came with it

    @property
    def num_items(self) -> int:
        return len(self.items)

    @property
    def num_users(self) -> int:
        return len(self.sequences)

    @property
    def num_interactions(self) -> int:
        return int(sum(len(s) for s in self.sequences))

    def lengths(self) -> np.ndarray:
        """Sequence length per user, int64 [U]."""
        return np.fromiter((len(s) for s in self.sequences), dtype=np.int64, count=len(self.sequences))

    def flat(self) -> tuple[np.ndarray, np.ndarray]:
        """All sequences concatenated (int64) and the start offset of each user [U + 1]."""
        lengths = self.lengths()
        offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        flat = np.concatenate(self.sequences).astype(np.int64) if self.sequences else np.zeros(0, np.int64)
        return flat, offsets

    def fingerprint(self) -> str:
        """sha256 of the sequences and item ids: what splits and caches are keyed on."""
        flat, offsets = self.flat()
        h = hashlib.sha256()
        h.update(self.name.encode())
        h.update(np.ascontiguousarray(flat).tobytes())
        h.update(np.ascontiguousarray(offsets).tobytes())
        h.update(json.dumps(self.items.raw_ids).encode())
        return h.hexdigest()
