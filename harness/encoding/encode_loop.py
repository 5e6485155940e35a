"""One rank's share of the pending chunks: batches preprocessed in DataLoader workers, encoded, and
written as one atomic shard per finished chunk."""

from __future__ import annotations

import functools
import os
import resource
import time
from typing import Any

import torch

from harness.encoding.dist import Dist, shard
from harness.encoding.loader import BatchSource, batch_loader, drop_nonfinite, encode_inputs
from harness.encoding.lock import WRITERS_NAME, FolderLock
from harness.encoding.options import EncodeOptions
from harness.encoding.plan import Job, pad_for_zero3, plan_batches
from harness.encoding.progress import Progress
from harness.encoding.writer import ChunkWriter


def _num_workers(opts: EncodeOptions, device: torch.device, local_world: int) -> int:
    if opts.num_workers is not None:
        return opts.num_workers
    if device.type == "cpu":
        return 0
    return max(1, min(8, (os.cpu_count() or 2) // max(1, local_world) - 1))


def _preprocess_fn(encoder: Any) -> Any:
    """What DataLoader workers call: the encoder's picklable preprocessor when it has one."""
    return getattr(encoder, "preprocessor", None) or encoder.preprocess


def encode_pending(job: Job, encoder: Any, pending: list[int], opts: EncodeOptions, ctx: Dist) -> dict:
    """Encode this rank's share of the pending chunks, one atomic shard per finished chunk."""
    mine = [pending[k] for k in shard(len(pending), ctx.rank, ctx.world)]
    batches = plan_batches(job, mine)
    if job.strategy == "zero3":
        batches = pad_for_zero3(batches, ctx)
    source = BatchSource(job.raws, batches, _preprocess_fn(encoder), job.plan["modality"])
    workers = _num_workers(opts, ctx.device, int(os.environ.get("LOCAL_WORLD_SIZE", ctx.world)))
    loader = batch_loader(source, workers, pin_memory=ctx.device.type == "cuda")
    writer = ChunkWriter(job.folder / "shards", ctx.rank, batches)
    progress = Progress(job.folder / "shards", {c: len(job.chunks[c]) for c in pending}, set(mine), ctx.world,
                        enabled=ctx.rank == 0 and opts.progress)
    encode = encoder.encode
    if job.strategy == "zero3":  # every forward gathers the parameters: a collective
        encode = functools.partial(ctx.in_collective, "ZeRO-3 parameter all-gather", encoder.encode)
    slow = float(os.environ.get("HARNESS_ENCODE_SLOW_S", "0"))  # test hook: seconds added per batch
    start = time.perf_counter()
    # shared writer lock while this rank writes (released before the final collective, so a rank stuck
    # there after its rank 0 died never holds up the next job)
    with FolderLock(job.folder, WRITERS_NAME, shared=True):
        for batch, inputs, keep, failures in loader:
            feats = encode_inputs(encode, inputs, len(batch.items), keep, job.info.dim)
            if not batch.dummy:
                writer.add(batch, feats, drop_nonfinite(batch.items, feats, failures))
                progress.update(len(batch.items))
            if slow:
                time.sleep(slow)
    progress.close()
    return {**writer.totals, "seconds": time.perf_counter() - start, "rank": ctx.rank, **peak_memory(ctx.device)}


def peak_memory(device: torch.device) -> dict:
    out = {"peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}
    if device.type == "cuda":
        out["peak_gpu_bytes"] = torch.cuda.max_memory_allocated(device)
    return out
