"""Rank-local shards: one safetensors file per finished chunk, written atomically, self-verifying.

A shard is written with ``harness.atomic`` (a temporary name beside it, fsync, rename), so a crash
leaves either a complete shard or none.
Its header records its row count and a sha256 over its metadata and tensor bytes (``shard_digest``),
written in the same file as the data, so the record can never be out of step with it. A shard is
finished only when it reads back and matches that record (``read_shard(verify=True)``); a truncated
or damaged one is set aside as ``*.corrupt`` (never deleted) and its chunk is encoded again.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from safetensors import safe_open
from safetensors.numpy import load_file, save_file

from harness.atomic import atomic_path
from harness.features.layout import chunk_of, shard_name

_TENSORS = ("index", "features", "valid")
_DTYPES = {"index": np.int64, "features": np.float32, "valid": np.bool_}


@dataclass
class Shard:
    """The encoded rows of one chunk: ``index[k]`` is the item of ``features[k]``."""

    chunk: int
    index: np.ndarray  # int64 [n]
    features: np.ndarray  # float32 [n, dim], zeros where not valid
    valid: np.ndarray  # bool [n]
    failures: list[dict] = field(default_factory=list)  # {"item": i, "reason": "..."}
    stats: dict = field(default_factory=dict)  # seconds, tokens, batches of this chunk
    sha256: str | None = None  # the recorded digest (None: a shard written before digests, which has no "rows" either)


class CorruptShard(ValueError):
    """A shard file that does not read back as what was written (truncated, damaged, inconsistent)."""

    def __init__(self, path: Path, reason: str):
        super().__init__(f"shard {path} is corrupt: {reason}")
        self.path, self.reason = Path(path), reason


def shard_digest(meta: dict, tensors: dict[str, np.ndarray]) -> str:
    """sha256 over the shard's metadata (all but the digest itself) and each tensor's dtype, shape and bytes."""
    h = hashlib.sha256(json.dumps({k: v for k, v in meta.items() if k != "sha256"}, sort_keys=True).encode())
    for name in _TENSORS:
        t = np.ascontiguousarray(tensors[name])
        h.update(f"\n{name} {t.dtype.str} {list(t.shape)}\n".encode())
        h.update(t.tobytes())
    return h.hexdigest()


def write_shard(shard_dir: Path, rank: int, shard: Shard) -> Path:
    """Atomically write ``shard`` as ``<rank>-<chunk>.safetensors`` (with its digest) and return its path."""
    final = shard_dir / shard_name(rank, shard.chunk)
    tensors = {name: np.ascontiguousarray(getattr(shard, name), dtype=_DTYPES[name]) for name in _TENSORS}
    meta = {"chunk": str(shard.chunk), "rows": str(len(tensors["index"])),
            "failures": json.dumps(shard.failures), "stats": json.dumps(shard.stats)}
    meta["sha256"] = shard_digest(meta, tensors)
    with atomic_path(final) as tmp:
        save_file(tensors, str(tmp), metadata=meta)
    return final


def read_shard(path: Path, verify: bool = True) -> Shard:
    """Load one shard file; with ``verify`` (the default) raise ``CorruptShard`` unless it matches its record."""
    try:
        tensors = load_file(str(path))
        with safe_open(str(path), framework="numpy") as fh:
            meta = fh.metadata() or {}
        shard = Shard(
            chunk=int(meta.get("chunk", chunk_of(path))),
            index=tensors["index"],
            features=tensors["features"],
            valid=tensors["valid"],
            failures=json.loads(meta.get("failures", "[]")),
            stats=json.loads(meta.get("stats", "{}")),
            sha256=meta.get("sha256"),
        )
    except Exception as exc:  # noqa: BLE001 - whatever the reader says about a damaged file is the reason
        raise CorruptShard(path, f"unreadable ({type(exc).__name__}: {exc})") from exc
    if verify:
        _verify(path, shard, meta, tensors)
    return shard


def _verify(path: Path, shard: Shard, meta: dict, tensors: dict[str, np.ndarray]) -> None:
    n = len(shard.index)
    if shard.index.ndim != 1 or shard.valid.shape != (n,) or shard.features.ndim != 2 or len(shard.features) != n:
        raise CorruptShard(path, f"inconsistent shapes: index {shard.index.shape}, features {shard.features.shape}, "
                                 f"valid {shard.valid.shape}")
    if shard.chunk != chunk_of(path):
        raise CorruptShard(path, f"holds chunk {shard.chunk}, its name says chunk {chunk_of(path)}")
    if "rows" in meta and shard.sha256 is None:  # written with a digest, which is gone: damaged header
        raise CorruptShard(path, "its recorded sha256 is missing from the header")
    if "rows" in meta and meta["rows"] != str(n):
        raise CorruptShard(path, f"{n} rows, {meta['rows']!r} recorded")
    if shard.sha256 is not None and shard_digest(meta, tensors) != shard.sha256:
        raise CorruptShard(path, "content does not match its recorded sha256")


def finished_chunks(shard_dir: Path) -> dict[int, Path]:
    """Chunk id -> shard file for every shard file in ``shard_dir`` (any writer rank; not yet verified)."""
    if not shard_dir.is_dir():
        return {}
    return {chunk_of(p): p for p in sorted(shard_dir.glob("*-*.safetensors"))}


def set_aside(path: Path) -> Path:
    """Rename a corrupt shard to ``<name>.corrupt`` (``.corrupt.1``, ... if taken): kept for inspection, never deleted."""
    target = path.with_name(path.name + ".corrupt")
    k = 0
    while target.exists():
        k += 1
        target = path.with_name(f"{path.name}.corrupt.{k}")
    os.replace(path, target)
    return target


def verified_chunks(shard_dir: Path, say: Callable[[str], None]) -> dict[int, Shard]:
    """Chunk id -> shard (features dropped, index kept) for every shard that verifies; each corrupt one is
    set aside with a message naming it, so its chunk counts as not done. Call with the writer lock held."""
    out: dict[int, Shard] = {}
    for chunk, path in finished_chunks(shard_dir).items():
        try:
            shard = read_shard(path)
        except CorruptShard as exc:
            moved = set_aside(path)
            say(f"encode: {exc}; set aside as {moved.name}, its chunk will be encoded again")
            continue
        shard.features = shard.features[:0]  # keep the index for the coverage check, not the rows
        out[chunk] = shard
    return out


def remove_stale_tmp(folder: Path) -> list[Path]:
    """Delete temporary files left by killed writers (never a finished shard or merged file). Call only
    with the job lock (merge temporaries) and writer lock (shard temporaries) held: then none is live."""
    removed = []
    for tmp in [*folder.glob(".*.tmp"), *folder.glob(".*.tmp.npy")]:
        tmp.unlink(missing_ok=True)
        removed.append(tmp)
    return removed
