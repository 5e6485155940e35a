"""Train/validation/test splits as positions into each user's chronological sequence.

``paper``: the first 80% of a user's sequence trains, the last 20% tests (>= 1 test item); every
test item is a target with all its preceding history. Validation targets are carved from the end
of the training part (``valid_fraction`` of it, rounded up, keeping >= 1 training item).
``leave-one-out``: last item tests, second-to-last validates.
``predefined``: the split the dataset's own train/valid/test files define (``SequenceDataset.split``).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from harness.data.cache import load_npz, save_npz
from harness.data.paths import cache_root
from harness.data.tables import SequenceDataset

PROTOCOLS = ("paper", "leave-one-out", "predefined")
PARTS = ("valid", "test")
SPLIT_VERSION = 1
_EPS = 1e-9  # guards floor/ceil against 0.8 * 10 = 7.999...


@dataclass
class Split:
    """Positions into ``dataset.sequences[u]``: train = seq[:valid_start], validation targets =
    [valid_start, test_start), test targets = [test_start, len); target p has history seq[:p]."""

    protocol: str
    valid_start: np.ndarray
    test_start: np.ndarray
    lengths: np.ndarray | None = None  # sequence lengths, so targets need no dataset

    def bounds(self, part: str) -> tuple[np.ndarray, np.ndarray]:
        """First and one-past-last target position per user for ``part`` ("valid" or "test")."""
        if part == "valid":
            return self.valid_start, self.test_start
        if part == "test":
            if self.lengths is None:
                raise ValueError("this Split has no lengths; build it with make_split")
            return self.test_start, self.lengths
        raise ValueError(f"unknown split part {part!r}; valid: {', '.join(PARTS)}")

    def num_targets(self, part: str) -> int:
        start, end = self.bounds(part)
        return int((end - start).sum())


def _paper(lengths: np.ndarray, valid_fraction: float, test_fraction: float) -> tuple[np.ndarray, np.ndarray]:
    train = np.floor(lengths * (1.0 - test_fraction) + _EPS).astype(np.int64)
    test_start = np.minimum(np.maximum(train, 1), lengths - 1).clip(min=0)
    n_valid = np.ceil(test_start * valid_fraction - _EPS).astype(np.int64)
    n_valid = np.minimum(n_valid, np.maximum(test_start - 1, 0))
    return test_start - n_valid, test_start


def _leave_one_out(lengths: np.ndarray, valid_fraction: float) -> tuple[np.ndarray, np.ndarray]:
    test_start = np.maximum(lengths - 1, 0)
    has_valid = (lengths >= 3) & (valid_fraction > 0)
    return np.where(has_valid, test_start - 1, test_start), test_start


def _check(protocol: str, valid_fraction: float, test_fraction: float) -> None:
    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown split protocol {protocol!r}; valid: {', '.join(PROTOCOLS)}")
    if not 0.0 <= valid_fraction < 1.0:
        raise ValueError(f"valid_fraction must be in [0, 1), got {valid_fraction}")
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")


def compute_split(
    lengths: np.ndarray, protocol: str = "paper", valid_fraction: float = 0.1, test_fraction: float = 0.2
) -> Split:
    """The split of sequences with these lengths (pure, no cache)."""
    _check(protocol, valid_fraction, test_fraction)
    if protocol == "predefined":
        raise ValueError("the predefined split comes with the dataset: use make_split(dataset, 'predefined')")
    lengths = np.asarray(lengths, dtype=np.int64)
    if protocol == "paper":
        valid_start, test_start = _paper(lengths, valid_fraction, test_fraction)
    else:
        valid_start, test_start = _leave_one_out(lengths, valid_fraction)
    return Split(protocol, valid_start, test_start, lengths)


def split_path(
    dataset: SequenceDataset, protocol: str, valid_fraction: float, seed: int, test_fraction: float = 0.2,
    cache_dir: str | Path | None = None,
) -> Path:
    """Cache file of a split: keyed by the dataset's content fingerprint and every parameter."""
    params = {
        "v": SPLIT_VERSION,
        "data": dataset.fingerprint(),
        "protocol": protocol,
        "valid_fraction": valid_fraction,
        "test_fraction": test_fraction,
        "seed": seed,
    }
    key = hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest()[:20]
    return cache_root(cache_dir) / "splits" / f"{dataset.name}-{protocol}-{key}.npz"


def make_split(
    dataset: SequenceDataset,
    protocol: str = "paper",
    valid_fraction: float = 0.1,
    seed: int = 0,
    *,
    test_fraction: float = 0.2,
    use_cache: bool = True,
    cache_dir: str | Path | None = None,
) -> Split:
    """Deterministic split of ``dataset``, cached as npz under ``<cache root>/splits`` (``cache_dir``, else
    $HARNESS_CACHE_DIR).

    Both protocols are chronological, so ``seed`` does not change the positions today; it is
    part of the cache key so a future randomised protocol cannot collide with these.
    """
    _check(protocol, valid_fraction, test_fraction)
    if protocol == "predefined":
        return predefined_split(dataset)
    path = split_path(dataset, protocol, valid_fraction, seed, test_fraction, cache_dir)
    lengths = dataset.lengths()
    cached = load_npz(path) if use_cache else None
    if cached is not None and np.array_equal(cached.get("lengths"), lengths):
        return Split(protocol, cached["valid_start"], cached["test_start"], cached["lengths"])
    split = compute_split(lengths, protocol, valid_fraction, test_fraction)
    if use_cache:
        save_npz(path, valid_start=split.valid_start, test_start=split.test_start, lengths=lengths)
    return split


def predefined_split(dataset: SequenceDataset) -> Split:
    """The split read from the dataset's train/valid/test files (not cached: it is part of the dataset)."""
    if dataset.split is None:
        raise ValueError(
            f"dataset {dataset.name} has no predefined split: put train/valid/test files beside it "
            "(RecBole <name>.train.inter / .valid.inter / .test.inter) or use protocol paper / leave-one-out"
        )
    return Split("predefined", dataset.split[:, 0].copy(), dataset.split[:, 1].copy(), dataset.lengths())


def eval_targets(split: Split, part: str) -> tuple[np.ndarray, np.ndarray]:
    """All (user, position) targets of ``part``, user-major, positions ascending."""
    start, end = split.bounds(part)
    counts = end - start
    users = np.repeat(np.arange(len(counts), dtype=np.int64), counts)
    first = np.repeat(np.cumsum(counts) - counts, counts)
    positions = np.repeat(start, counts) + np.arange(int(counts.sum()), dtype=np.int64) - first
    return users, positions


def train_sequences(dataset: SequenceDataset, split: Split) -> list[np.ndarray]:
    """Each user's training part ``seq[:valid_start]`` (what the model is fitted on)."""
    return [seq[:v] for seq, v in zip(dataset.sequences, split.valid_start.tolist())]


def history_matrix(
    dataset: SequenceDataset, users: np.ndarray, positions: np.ndarray, max_len: int, pad: int = -1
) -> np.ndarray:
    """[T, max_len] histories seq[:p] of each target, most recent ``max_len`` items, left-padded with ``pad``."""
    flat, offsets = dataset.flat()
    begin = offsets[users][:, None]
    index = begin + positions[:, None] - max_len + np.arange(max_len)[None, :]
    inside = index >= begin
    return np.where(inside, flat[np.where(inside, index, 0)] if len(flat) else pad, pad)
