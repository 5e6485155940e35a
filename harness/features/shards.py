"""Rank-local shards: one safetensors file per finished chunk, written atomically.

A shard is written to a temporary name in the same folder, flushed to disk, then renamed over its
final name (``os.replace`` is atomic on POSIX), so a crash leaves either a complete shard or none.
A shard whose file exists is finished and is never recomputed.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from safetensors import safe_open
from safetensors.numpy import load_file, save_file

from harness.features.layout import chunk_of, shard_name


@dataclass
class Shard:
    """The encoded rows of one chunk: ``index[k]`` is the item of ``features[k]``."""

    chunk: int
    index: np.ndarray  # int64 [n]
    features: np.ndarray  # float32 [n, dim], zeros where not valid
    valid: np.ndarray  # bool [n]
    failures: list[dict] = field(default_factory=list)  # {"item": i, "reason": "..."}
    stats: dict = field(default_factory=dict)  # seconds, tokens, batches of this chunk


def write_shard(shard_dir: Path, rank: int, shard: Shard) -> Path:
    """Atomically write ``shard`` as ``<rank>-<chunk>.safetensors`` and return its path."""
    final = shard_dir / shard_name(rank, shard.chunk)
    tmp = shard_dir / f".{final.name}.{os.getpid()}.tmp"
    tensors = {
        "index": np.ascontiguousarray(shard.index, dtype=np.int64),
        "features": np.ascontiguousarray(shard.features, dtype=np.float32),
        "valid": np.ascontiguousarray(shard.valid, dtype=np.bool_),
    }
    meta = {"chunk": str(shard.chunk), "failures": json.dumps(shard.failures), "stats": json.dumps(shard.stats)}
    save_file(tensors, str(tmp), metadata=meta)
    os.chmod(tmp, 0o644)
    with open(tmp, "rb") as fh:
        os.fsync(fh.fileno())
    os.replace(tmp, final)
    return final


def read_shard(path: Path) -> Shard:
    """Load one shard file."""
    tensors = load_file(str(path))
    with safe_open(str(path), framework="numpy") as fh:
        meta = fh.metadata() or {}
    return Shard(
        chunk=int(meta.get("chunk", chunk_of(path))),
        index=tensors["index"],
        features=tensors["features"],
        valid=tensors["valid"],
        failures=json.loads(meta.get("failures", "[]")),
        stats=json.loads(meta.get("stats", "{}")),
    )


def finished_chunks(shard_dir: Path) -> dict[int, Path]:
    """Chunk id -> shard file for every finished shard in ``shard_dir`` (any writer rank)."""
    if not shard_dir.is_dir():
        return {}
    return {chunk_of(p): p for p in sorted(shard_dir.glob("*-*.safetensors"))}


def remove_stale_tmp(shard_dir: Path) -> None:
    """Delete half-written temporary files left by a killed run (never a finished shard)."""
    for tmp in shard_dir.glob(".*.tmp"):
        tmp.unlink(missing_ok=True)
