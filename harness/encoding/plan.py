"""The job plan: inputs, fingerprint, cache folder, dtype, batch budget, and the length-sorted chunks.

No weights are loaded here; ``plan`` is what a resume must agree with (see harness.features.manifest).
"""

from __future__ import annotations

import hashlib
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from harness.data import paths
from harness.encoding.dist import Dist, shard
from harness.encoding.options import DTYPES, EncodeOptions, check_choice
from harness.encoding.shards import Shard
from harness.encoding.token_batches import Batch, chunk_batches, length_sorted_chunks
from harness.features.fingerprint import fingerprint, item_raws
from harness.features.layout import MODALITIES, encoder_key
from harness.features.manifest import weights_revision

_ACCELERATE_DTYPES = {"bf16": "bfloat16", "fp16": "float16", "no": None, "fp8": None}


@dataclass
class Job:
    """What is encoded, where it goes, and the plan a resume must agree with."""

    dataset: str  # cache key: the dataset name, '.first<N>' with --limit
    folder: Path
    raws: list[str]
    info: Any  # encoders.EncoderInfo
    dtype: str
    strategy: str
    budget: int  # padded tokens (text) or images per batch
    plan: dict
    chunks: list[np.ndarray] = field(default_factory=list)  # item indices per chunk, set once the lengths are known
    lengths: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))  # tokens per item
    extra: dict = field(default_factory=dict)  # filled while running (ZeRO-3 partition sizes)
    verified: dict[int, Shard] | None = None  # rank 0: shards already verified this run (chunk -> index)

    @property
    def n_chunks(self) -> int:
        return math.ceil(len(self.raws) / self.plan["chunk_size"])


def auto_chunk_size(n_items: int) -> int:
    """Items per chunk from the catalogue size alone (~64 chunks, 1024..8192 items each): big enough that
    a chunk fills several token-budget batches, small enough to spread over many ranks and lose little on a crash."""
    return max(1024, min(8192, math.ceil(n_items / 64)))


def _resolve_dtype(opts: EncodeOptions, device: torch.device, preferred: str) -> str:
    """--dtype, else (on GPU) accelerate's mixed precision or the encoder's preference; float32 on CPU."""
    if opts.dtype is not None:
        check_choice("--dtype", opts.dtype, DTYPES)
        return opts.dtype
    if device.type == "cpu":
        return "float32"
    return _ACCELERATE_DTYPES.get(os.environ.get("ACCELERATE_MIXED_PRECISION", "no")) or preferred


def _job_inputs(dataset: Any, opts: EncodeOptions, info: Any) -> tuple[str, list[str]]:
    modality = opts.modality or info.modality
    check_choice("--modality", modality, MODALITIES)
    if modality != info.modality:
        raise ValueError(f"encoder {opts.encoder!r} encodes {info.modality}, not {modality}; pick a {modality} encoder")
    raws = item_raws(dataset.items, modality)[: opts.limit]
    if not raws:
        raise ValueError(f"dataset {dataset.name!r} has no items to encode")
    return modality, raws


def plan_job(dataset: Any, opts: EncodeOptions, info: Any, ctx: Dist) -> Job:
    """Resolve inputs, fingerprint, cache folder, dtype and batch budget (no weights loaded)."""
    modality, raws = _job_inputs(dataset, opts, info)
    key = dataset.name + (f".first{opts.limit}" if opts.limit else "")
    enc_key = encoder_key(opts.encoder) + (".random" if opts.random_weights else "")  # never mistaken for real weights
    dtype = _resolve_dtype(opts, ctx.device, info.dtype)
    budget = opts.batch_size if modality == "image" else opts.batch_tokens or (16384 if ctx.device.type == "cuda" else 4096)
    weights = "random" if opts.random_weights else info.weights
    pinned = getattr(info, "revision", None)  # a registry name pinned to one upstream commit (e.g. mpnet-base)
    revision = f"{weights}@{pinned}" if pinned and weights != "random" else weights_revision(weights)
    plan = {"encoder": enc_key, "revision": revision, "modality": modality,
            "pooling": info.pooling, "layer": info.layer, "dtype": dtype, "dim": info.dim, "n_items": len(raws),
            "fingerprint": fingerprint(raws, modality), "chunk_size": opts.chunk_size or auto_chunk_size(len(raws)),
            "weights": weights}
    folder = paths.cache_root(opts.cache_dir) / "features" / key / enc_key / modality
    return Job(key, folder, raws, info, dtype, opts.strategy or info.strategy, budget, plan)


LENGTH_BLOCK = 10_000  # items tokenised at once when planning


def catalogue_lengths(job: Job, encoder: Any, ctx: Dist) -> np.ndarray:
    """Tokens per item (images: 1), each rank tokenising its slice; every rank gets the full int64 array."""
    n = len(job.raws)
    if job.plan["modality"] == "image":
        return np.ones(n, dtype=np.int64)
    mine = shard(n, ctx.rank, ctx.world)
    # tokenised in blocks: the tokenizer's output for a whole catalogue costs ~5 KB per item (measured, 200k items)
    blocks = [np.asarray(encoder.lengths([job.raws[i] for i in mine[lo : lo + LENGTH_BLOCK]]), dtype=np.int64)
              for lo in range(0, len(mine), LENGTH_BLOCK)]
    parts = ctx.gather(np.concatenate(blocks) if blocks else np.zeros(0, dtype=np.int64))
    lengths = np.zeros(n, dtype=np.int64)
    for rank, part in enumerate(parts):
        lengths[np.asarray(shard(n, rank, ctx.world))] = part
    return lengths


def set_chunks(job: Job, lengths: np.ndarray) -> None:
    """Length-sorted chunks, and a digest of their order in the plan (a resume must cut the same chunks)."""
    job.lengths = lengths
    job.chunks = length_sorted_chunks(lengths, job.plan["chunk_size"])
    order = np.concatenate([np.asarray(c, dtype=np.int64) for c in job.chunks])
    job.plan["chunk_order"] = hashlib.sha256(order.tobytes()).hexdigest()[:16]


def plan_batches(job: Job, chunks: list[int]) -> list[Batch]:
    """Token-budget batches of the given chunks, chunk by chunk (images: ``budget`` per batch)."""
    out: list[Batch] = []
    for c in chunks:
        items = job.chunks[c]
        out += chunk_batches(c, items, job.lengths[items], job.budget)
    return out


def pad_for_zero3(batches: list[Batch], ctx: Dist) -> list[Batch]:
    """Dummy batches so every rank runs the same number of forwards (ZeRO-3 gathers are collective)."""
    steps = ctx.max(len(batches))
    return batches + [Batch(chunk=-1, items=(0,), tokens=0, padded=0, dummy=True)] * (steps - len(batches))
