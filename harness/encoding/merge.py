"""Merge finished shards into ``features.npy`` (float32 [N, dim], row i = item i) and ``valid.npy``.

Every shard is verified against its recorded digest as it is read; the merged files are written to
temporary names, renamed into place, and their sha256 and sizes returned for the manifest, which is
what later runs and ``load_features`` check them against (``harness.features.merged``).
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from harness.atomic import atomic_path
from harness.encoding.shards import CorruptShard, finished_chunks, read_shard, set_aside
from harness.features.merged import MERGED, file_record

TMP_NPY = ".tmp.npy"  # merge temporaries: np.save keeps a name that ends in .npy
NONFINITE = "non-finite features (NaN/inf) from the encoder"


class MergeError(RuntimeError):
    """The shards cannot be merged (missing / repeated items, a corrupt shard, no disk space)."""


@dataclass
class MergeResult:
    n_valid: int
    failures: list[dict] = field(default_factory=list)
    stats: list[dict] = field(default_factory=list)  # per-chunk stats from the shards
    shards: list[dict] = field(default_factory=list)  # per-shard file, chunk, rows, recorded sha256
    merged: dict = field(default_factory=dict)  # file name -> {"sha256", "bytes"} of the merged files


def _check_coverage(seen: np.ndarray, n_items: int) -> None:
    missing = np.flatnonzero(seen == 0)
    twice = np.flatnonzero(seen > 1)
    if len(missing) or len(twice):
        raise MergeError(
            f"shards do not cover each of the {n_items} items exactly once: "
            f"{len(missing)} missing (first {missing[:5].tolist()}), {len(twice)} repeated (first {twice[:5].tolist()})"
        )


def merged_bytes(n_items: int, dim: int) -> int:
    """Bytes the merged files take (both .npy headers are at most 128 bytes here)."""
    return n_items * dim * 4 + n_items + 2 * 128


def check_disk_space(folder: Path, n_items: int, dim: int) -> None:
    """Refuse to start a merge that cannot fit: the new files are written beside the old ones."""
    need = merged_bytes(n_items, dim)
    free = shutil.disk_usage(folder).free
    if free < need:
        raise MergeError(f"not enough free disk space to merge {folder}: the merged files need {need:,} bytes "
                         f"({need / 2**30:.2f} GiB), {free:,} bytes are free on that filesystem; free some space and rerun "
                         "(the shards are kept, nothing is encoded again)")


class RowFile:
    """A new float32 [n_items, dim] .npy file, written by rows with ``pwrite``. The merging process never
    maps it: through a memory map, the file's pages counted in its RSS (measured: +0.9 GB for one 64 MB
    shard's scattered rows into a 1.6 GB matrix, the kernel mapping whole page-cache folios per row)."""

    def __init__(self, path: Path, n_items: int, dim: int):
        np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(n_items, dim))  # header, sized; rows sparse
        self.shape, self.row_bytes = (n_items, dim), dim * 4
        self.offset = path.stat().st_size - n_items * self.row_bytes
        self.fd = os.open(path, os.O_WRONLY)

    def put(self, index: np.ndarray, rows: np.ndarray) -> None:
        """``rows[k]`` becomes row ``index[k]``: one write per run of consecutive items."""
        order = np.argsort(index, kind="stable")
        index, rows = index[order], np.ascontiguousarray(rows[order], dtype=np.float32)
        starts = np.flatnonzero(np.diff(index, prepend=-2) != 1)
        for a, b in zip(starts.tolist(), [*starts[1:].tolist(), len(index)]):
            data, at = memoryview(rows[a:b]).cast("B"), self.offset + int(index[a]) * self.row_bytes
            while data:  # a regular file may take fewer bytes than asked
                done = os.pwrite(self.fd, data, at)
                data, at = data[done:], at + done

    def close(self) -> None:
        os.close(self.fd)


def _fill(folder: Path, matrix: RowFile, valid: np.ndarray, result: MergeResult) -> None:
    """Write every verified shard's rows into place; fail unless each item is covered exactly once."""
    n_items, dim = matrix.shape
    seen = np.zeros(n_items, dtype=np.int64)
    for chunk, path in sorted(finished_chunks(folder / "shards").items()):
        try:
            shard = read_shard(path)
            if shard.features.shape[1:] != (dim,):
                raise CorruptShard(path, f"feature dim {shard.features.shape[1:]} != manifest dim {dim}")
            if len(shard.index) and (shard.index.min() < 0 or shard.index.max() >= n_items):
                raise CorruptShard(path, f"item index outside [0, {n_items})")
        except CorruptShard as exc:
            moved = set_aside(path)
            raise MergeError(f"{exc}; set aside as {moved.name}: rerun to encode its chunk again") from exc
        feats, ok, failures = shard.features, shard.valid.copy(), list(shard.failures)
        bad = ok & ~np.isfinite(feats).all(axis=1)  # a shard written before non-finite rows were caught
        if bad.any():
            feats = feats.copy()
            feats[bad] = 0
            ok[bad] = False
            failures += [{"item": int(i), "reason": NONFINITE} for i in shard.index[bad]]
        matrix.put(shard.index, feats)
        valid[shard.index] = ok
        np.add.at(seen, shard.index, 1)
        result.failures += failures
        result.stats.append({"chunk": chunk, **shard.stats})
        result.shards.append({"file": path.name, "chunk": chunk, "rows": len(shard.index), "sha256": shard.sha256})
    _check_coverage(seen, n_items)


def merge_shards(folder: Path, n_items: int, dim: int) -> MergeResult:
    """Assemble every shard under ``folder/shards`` into the merged matrix and mask (atomically)."""
    check_disk_space(folder, n_items, dim)
    valid = np.zeros(n_items, dtype=np.bool_)
    result = MergeResult(n_valid=0)
    with atomic_path(folder / MERGED[0], suffix=TMP_NPY) as tmp_f, atomic_path(folder / MERGED[1], suffix=TMP_NPY) as tmp_v:
        matrix = RowFile(tmp_f, n_items, dim)
        try:
            _fill(folder, matrix, valid, result)
        finally:
            matrix.close()
        np.save(tmp_v, valid)
    result.merged = {name: file_record(folder / name) for name in MERGED}
    result.n_valid = int(valid.sum())
    result.failures.sort(key=lambda f: f["item"])
    return result
