"""The rank-aware encode job, start to finish: plan, open the folder, encode what is pending, merge.

Items are cut into fixed chunks whose boundaries do not depend on the number of processes; the
chunks still missing are split between ranks by the pure function ``shard``; each chunk is
length-sorted and cut into token-budget batches, preprocessed in DataLoader workers, encoded, and
written as one atomic, self-verifying shard; rank 0 merges after a barrier. Rank 0 holds the feature
folder's lock for the whole job (one job per folder), verifies every shard before it is reused or
merged, and checks the merged files against the manifest before calling a cache complete. See
docs/ENCODE.md and docs/RELIABILITY.md.
"""

from __future__ import annotations

import datetime
import os
import time
from pathlib import Path
from typing import Any

from harness.encoding.dist import Dist, groups_keep_timeout, on_rank0, say_on_rank0, start_distributed
from harness.encoding.encode_loop import encode_pending, peak_memory
from harness.encoding.folder import open_folder, pending_chunks
from harness.encoding.lock import FolderLock
from harness.encoding.merge import merge_shards
from harness.encoding.model import load_encoder
from harness.encoding.options import STRATEGIES, EncodeOptions, check_choice
from harness.encoding.plan import Job, catalogue_lengths, plan_job, set_chunks
from harness.encoding.threads import cpu_threads
from harness.features.manifest import library_versions, write_json_atomic


def _throughput(stats: list[dict], wall: float) -> dict:
    items, tokens = sum(s["items"] for s in stats), sum(s["tokens"] for s in stats)
    return {"items": items, "tokens": tokens, "padded_tokens": sum(s["padded_tokens"] for s in stats),
            "seconds": wall, "items_per_s": items / wall if wall > 0 else None,
            "tokens_per_s": tokens / wall if wall > 0 and tokens else None}


def build_manifest(job: Job, merged: Any, stats: list[dict], wall: float, pending: list[int], ctx: Dist) -> dict:
    """The manifest of a complete cache (see docs/ENCODE.md for every field)."""
    info = job.info
    return {
        **job.plan, "dataset": job.dataset, "encoder_name": info.name,
        "backend": info.backend, "family": info.family, "params": info.params,
        "max_tokens": info.max_tokens, "image_size": info.image_size,
        "n_valid": merged.n_valid, "failures": merged.failures,
        "merged": merged.merged, "shards": merged.shards,
        "strategy": job.strategy, "world_size": ctx.world, "device": str(ctx.device.type),
        "batch_budget": job.budget, "chunks": {"total": job.n_chunks, "encoded_this_run": len(pending),
                                               "reused": job.n_chunks - len(pending)},
        "throughput": _throughput(stats, wall),
        # every chunk's encode seconds, whichever run wrote it: the whole cost of a resumed cache
        "encode_seconds_all_runs": sum(float(c.get("seconds") or 0.0) for c in merged.stats),
        "peak_memory": {"rss_bytes_max_rank": max(s["peak_rss_bytes"] for s in stats),
                        "gpu_bytes_max_rank": max((s.get("peak_gpu_bytes", 0) for s in stats), default=0)},
        "ranks": stats, **job.extra,
        "versions": library_versions(),
        "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
    }


def finish(job: Job, pending: list[int], stats: dict, start: float, ctx: Dist) -> None:
    """Barrier, then rank 0 merges every shard (verifying each) and writes the manifest last (marks
    completion); a merge error on rank 0 stops every rank."""
    all_stats = ctx.gather(stats)

    def merge() -> None:
        merged = merge_shards(job.folder, len(job.raws), job.info.dim)
        manifest = build_manifest(job, merged, all_stats, time.perf_counter() - start, pending, ctx)
        write_json_atomic(job.folder / "manifest.json", manifest)

    on_rank0(ctx, merge)


def run(dataset: Any, opts: EncodeOptions) -> Path:
    """Encode ``dataset``'s items into the cache (resuming any finished shards); returns the folder."""
    return run_job(dataset, opts)[0]


def run_job(dataset: Any, opts: EncodeOptions) -> tuple[Path, str]:
    """``run``, also saying what it did: ``complete`` (nothing to do) or ``encoded`` (encoded / merged now)."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    from encoders import get_info  # ~4 s to import (measured): only a job that runs pays it

    check_choice("--strategy", opts.strategy, STRATEGIES)
    info = get_info(opts.encoder, trust_remote_code=opts.trust_remote_code)  # metadata only, no weights
    ctx = start_distributed(opts, opts.strategy or info.strategy)
    job = plan_job(dataset, opts, info, ctx)
    lock = FolderLock(job.folder)  # taken by rank 0 only, for the whole job (harness.encoding.lock)
    try:
        with cpu_threads(opts.threads, ctx.device) as threads, groups_keep_timeout(ctx):
            state = _run(job, opts, ctx, lock, threads)
    finally:
        lock.release()  # rank 0, after the last collective: every rank has stopped writing
    if state == "encoded":
        say_on_rank0(ctx, f"encode: wrote {job.folder}")
    return job.folder, state


def _run(job: Job, opts: EncodeOptions, ctx: Dist, lock: FolderLock, threads: int | None) -> str:
    state = on_rank0(ctx, lambda: open_folder(job, opts, lock))
    if state == "complete":
        say_on_rank0(ctx, f"encode: {job.folder} is already complete")
        return "complete"
    start = time.perf_counter()  # the wall clock of this run's work (after the encoder loads, when it does)
    if threads:
        job.extra["cpu_threads"] = threads
    if state == "merge":
        job.plan["chunk_size"], job.plan["chunk_order"] = ctx.broadcast((job.plan["chunk_size"], job.plan.get("chunk_order")))
        pending: list[int] = []
        stats = {"items": 0, "tokens": 0, "padded_tokens": 0, "batches": 0, "chunks": 0, "seconds": 0.0,
                 "rank": ctx.rank, **peak_memory(ctx.device)}
        say_on_rank0(ctx, f"encode: all {job.n_chunks} shards are there and verified; merging them")
    else:
        encoder, _keep_alive = load_encoder(job, opts, ctx)
        start = time.perf_counter()
        set_chunks(job, catalogue_lengths(job, encoder, ctx))
        pending = on_rank0(ctx, lambda: pending_chunks(job, opts.wait))
        where = f"{job.dtype} on {ctx.device.type}" + (f", {threads} thread(s) per process" if threads else "")
        say_on_rank0(ctx, f"encode: {len(job.chunks)} chunks of {job.plan['chunk_size']} items, {len(pending)} to do, "
                          f"{ctx.world} process(es), {job.strategy}, {where}")
        stats = encode_pending(job, encoder, pending, opts, ctx)
    finish(job, pending, stats, start, ctx)
    return "encoded"


def encode_dataset(dataset: Any, encoder: str, modality: str | None = None,
                   cache_root: str | Path | None = None, **options: Any) -> Path:
    """In-process encode (what ``ensure_features`` calls): the same job, in however many processes run it."""
    return run(dataset, EncodeOptions(encoder=encoder, modality=modality,
                                      cache_dir=None if cache_root is None else str(cache_root), **options))
