"""Merge finished shards into ``features.npy`` (float32 [N, dim], row i = item i) and ``valid.npy``."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from harness.features.shards import finished_chunks, read_shard


@dataclass
class MergeResult:
    n_valid: int
    failures: list[dict] = field(default_factory=list)
    stats: list[dict] = field(default_factory=list)  # per-chunk stats from the shards


def _check_coverage(seen: np.ndarray, n_items: int) -> None:
    missing = np.flatnonzero(seen == 0)
    twice = np.flatnonzero(seen > 1)
    if len(missing) or len(twice):
        raise RuntimeError(
            f"shards do not cover each of the {n_items} items exactly once: "
            f"{len(missing)} missing (first {missing[:5].tolist()}), {len(twice)} repeated (first {twice[:5].tolist()})"
        )


def _tmp_memmap(path: Path, shape: tuple, dtype) -> tuple[np.memmap, Path]:
    """A writable .npy memmap at a temporary name beside ``path`` (renamed over it when complete)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp.npy")
    return np.lib.format.open_memmap(tmp, mode="w+", dtype=dtype, shape=shape), tmp


def _fill(folder: Path, matrix: np.ndarray, valid: np.ndarray, result: MergeResult) -> None:
    """Copy every shard's rows into place; fail unless each item is covered exactly once."""
    n_items, dim = matrix.shape
    seen = np.zeros(n_items, dtype=np.int64)
    for chunk, path in sorted(finished_chunks(folder / "shards").items()):
        shard = read_shard(path)
        if shard.features.shape[1:] != (dim,):
            raise RuntimeError(f"{path}: feature dim {shard.features.shape[1:]} != manifest dim {dim}")
        matrix[shard.index] = shard.features
        valid[shard.index] = shard.valid
        np.add.at(seen, shard.index, 1)
        result.failures += shard.failures
        result.stats.append({"chunk": chunk, **shard.stats})
    _check_coverage(seen, n_items)


def merge_shards(folder: Path, n_items: int, dim: int) -> MergeResult:
    """Assemble every shard under ``folder/shards`` into the merged matrix and mask (atomically)."""
    path_f, path_v = folder / "features.npy", folder / "valid.npy"
    matrix, tmp_f = _tmp_memmap(path_f, (n_items, dim), np.float32)
    valid = np.zeros(n_items, dtype=np.bool_)
    result = MergeResult(n_valid=0)
    try:
        _fill(folder, matrix, valid, result)
        matrix.flush()
    except BaseException:
        tmp_f.unlink(missing_ok=True)
        raise
    finally:
        del matrix
    os.replace(tmp_f, path_f)
    tmp_v = path_v.with_name(f".{path_v.name}.{os.getpid()}.tmp.npy")
    np.save(tmp_v, valid)
    os.replace(tmp_v, path_v)
    result.n_valid = int(valid.sum())
    result.failures.sort(key=lambda f: f["item"])
    return result
