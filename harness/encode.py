"""The distributed, resumable encode job: an item catalogue -> the feature cache.

    accelerate launch --config_file accelerate_config.yaml harness/encode.py --encoder llama-7b --dataset amazon-beauty
    torchrun --nproc_per_node 2 harness/encode.py --cpu --encoder tiny-llama --dataset ml-1m
    python -m harness.encode --encoder minilm-l6 --dataset ml-1m

Items are cut into fixed chunks whose boundaries do not depend on the number of processes; the
chunks still missing are split between ranks by the pure function ``shard``; each chunk is
length-sorted and cut into token-budget batches, preprocessed in DataLoader workers, encoded, and
written as one atomic, self-verifying shard; rank 0 merges after a barrier. Rank 0 holds the feature
folder's lock for the whole job (one job per folder), verifies every shard before it is reused or
merged, and checks the merged files against the manifest before calling a cache complete. This is
the only module that knows about ranks. See docs/ENCODE.md and docs/RELIABILITY.md.
"""

from __future__ import annotations

import sys
from pathlib import Path

if __name__ == "__main__" and not __package__:  # run as a file: `accelerate launch harness/encode.py`
    sys.path[0] = str(Path(__file__).resolve().parents[1])

import argparse
import datetime
import hashlib
import json
import math
import os
import resource
import shutil
import socket
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from harness.features.batching import Batch, chunk_batches, length_sorted_chunks
from harness.features.fingerprint import fingerprint, item_raws
from harness.features.layout import MODALITIES, default_cache_root, encoder_key
from harness.features.loader import BatchSource, batch_loader, drop_nonfinite, encode_inputs
from harness.features.lock import WRITERS_NAME, FolderLock
from harness.features.manifest import (
    COMPLETE_KEYS,
    PlanMismatch,
    check_plan,
    library_versions,
    read_json,
    weights_revision,
    write_json_atomic,
)
from harness.features.merge import MERGED, file_record, merge_shards, verify_merged
from harness.features.shards import Shard, finished_chunks, remove_stale_tmp, set_aside, verified_chunks
from harness.features.writer import ChunkWriter

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DS_CONFIG = REPO / "configs" / "deepspeed_zero3.json"
STRATEGIES = ("ddp", "zero3")
DTYPES = ("float32", "bfloat16", "float16")
_ACCELERATE_DTYPES = {"bf16": "bfloat16", "fp16": "float16", "no": None, "fp8": None}


@dataclass
class EncodeOptions:
    """Everything the job is asked to do (the CLI flags; ``encode_dataset`` takes them as keywords)."""

    encoder: str
    modality: str | None = None  # default: the encoder's own modality
    cache_dir: str | None = None  # default: $HARNESS_CACHE_DIR or ./.cache/harness
    cpu: bool = False
    strategy: str | None = None  # ddp | zero3; default: the encoder's registered strategy
    batch_tokens: int | None = None  # text: padded tokens per batch; default 16384 on GPU, 4096 on CPU
    batch_size: int = 256  # images per batch
    dtype: str | None = None  # default: float32 on CPU, the encoder's preferred dtype on GPU
    num_workers: int | None = None  # default: 0 on CPU, up to 8 per GPU process
    limit: int | None = None  # encode only the first N items (cached as '<dataset>.first<N>')
    chunk_size: int | None = None  # items per shard; default from the item count (never the world size)
    trust_remote_code: bool = False
    overwrite: bool = False  # refused while another job holds the folder
    wait: bool = True  # another job holds the folder: wait for it (False: fail at once, --no-wait)
    ds_config: str | None = None  # ZeRO-3 config; default configs/deepspeed_zero3.json
    random_weights: bool = False  # the real architecture with seeded random weights (throughput benchmarks)
    compile: bool = False  # torch.compile the encoder's repeated blocks (GPU, long jobs)
    progress: bool = True


# ----------------------------------------------------------------------------- ranks


def shard(n_items: int, rank: int, world_size: int) -> range:
    """The strided slice ``rank, rank + world_size, ...`` of ``range(n_items)`` that ``rank`` owns:
    disjoint, covering, sizes within one. Strided rather than contiguous because the chunks are
    sorted by length: every rank gets a mix of long and short chunks, so all finish together."""
    if not 0 <= rank < world_size:
        raise ValueError(f"rank {rank} is outside world size {world_size}")
    return range(rank, n_items, world_size)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Dist:
    """The process group as the job sees it: rank, world, device, and four collectives."""

    rank: int
    world: int
    device: torch.device

    def barrier(self) -> None:
        if self.world > 1:
            torch.distributed.barrier()

    def broadcast(self, obj: Any) -> Any:
        """``obj`` from rank 0 on every rank."""
        if self.world == 1:
            return obj
        box = [obj]
        torch.distributed.broadcast_object_list(box, src=0)
        return box[0]

    def gather(self, obj: Any) -> list[Any]:
        """Every rank's ``obj``, in rank order, on every rank."""
        if self.world == 1:
            return [obj]
        out: list[Any] = [None] * self.world
        torch.distributed.all_gather_object(out, obj)
        return out

    def max(self, value: int) -> int:
        return max(self.gather(value))


def start_distributed(opts: EncodeOptions, strategy: str) -> Dist:
    """Join the process group set up by torchrun / accelerate launch (gloo on CPU, NCCL on GPUs)."""
    from accelerate import PartialState

    if strategy == "zero3" and "LOCAL_RANK" not in os.environ:  # DeepSpeed needs a group, even of one
        os.environ.update(RANK="0", LOCAL_RANK="0", WORLD_SIZE="1", MASTER_ADDR="127.0.0.1",
                          MASTER_PORT=os.environ.get("MASTER_PORT", str(_free_port())))
    cpu = opts.cpu or not torch.cuda.is_available()
    state = PartialState(cpu=cpu, timeout=datetime.timedelta(hours=6))
    return Dist(rank=state.process_index, world=state.num_processes, device=torch.device(state.device))


# ----------------------------------------------------------------------------- the job plan


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
    chunks: list[list[int]] = field(default_factory=list)  # set once the lengths are known
    lengths: list[int] = field(default_factory=list)
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
        _check_choice("--dtype", opts.dtype, DTYPES)
        return opts.dtype
    if device.type == "cpu":
        return "float32"
    return _ACCELERATE_DTYPES.get(os.environ.get("ACCELERATE_MIXED_PRECISION", "no")) or preferred


def _check_choice(name: str, value: str | None, choices: tuple[str, ...]) -> None:
    if value is not None and value not in choices:
        raise ValueError(f"{name} {value!r} is not one of {', '.join(choices)}")


def _job_inputs(dataset: Any, opts: EncodeOptions, info: Any) -> tuple[str, list[str]]:
    modality = opts.modality or info.modality
    _check_choice("--modality", modality, MODALITIES)
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
    folder = default_cache_root(opts.cache_dir) / "features" / key / enc_key / modality
    return Job(key, folder, raws, info, dtype, opts.strategy or info.strategy, budget, plan)


def catalogue_lengths(job: Job, encoder: Any, ctx: Dist) -> list[int]:
    """Tokens per item (images: 1), each rank tokenising its slice; every rank gets the full list."""
    n = len(job.raws)
    if job.plan["modality"] == "image":
        return [1] * n
    mine = list(shard(n, ctx.rank, ctx.world))
    parts = ctx.gather(encoder.lengths([job.raws[i] for i in mine]))
    lengths = [0] * n
    for rank, part in enumerate(parts):
        for i, length in zip(shard(n, rank, ctx.world), part):
            lengths[i] = int(length)
    return lengths


def set_chunks(job: Job, lengths: list[int]) -> None:
    """Length-sorted chunks, and a digest of their order in the plan (a resume must cut the same chunks)."""
    job.lengths = lengths
    job.chunks = length_sorted_chunks(lengths, job.plan["chunk_size"])
    order = np.concatenate([np.asarray(c, dtype=np.int64) for c in job.chunks])
    job.plan["chunk_order"] = hashlib.sha256(order.tobytes()).hexdigest()[:16]


# ----------------------------------------------------------------------------- the cache folder


def on_rank0(ctx: Dist, fn: Any) -> Any:
    """Run ``fn()`` on rank 0 and give its result to every rank; an error there is raised everywhere."""
    result: tuple[str, Any] = ("ok", None)
    if ctx.rank == 0:
        try:
            result = ("ok", fn())
        except Exception as exc:
            ctx.broadcast(("error", f"{type(exc).__name__}: {exc}"))
            raise
    result = ctx.broadcast(result)
    if result[0] == "error":
        raise PlanMismatch(f"rank 0 refused the job: {result[1]}")
    return result[1]


def _say_rank0(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _writers_lock(job: Job, wait: bool, why: str) -> FolderLock:
    """Exclusive writer lock: no process of an earlier job still writes shards (see harness.features.lock)."""
    return FolderLock(job.folder, WRITERS_NAME).acquire(wait=wait, say=_say_rank0, why=why)


def _clear(job: Job) -> None:
    """``--overwrite``: discard the shards, merged files and manifest (never while anyone writes)."""
    with _writers_lock(job, wait=False, why="--overwrite refused: processes of another job still write shards here"):
        shutil.rmtree(job.folder / "shards", ignore_errors=True)
        for name in ("manifest.json", *MERGED):
            (job.folder / name).unlink(missing_ok=True)


def _adopt_legacy(job: Job, manifest: dict) -> bool:
    """A complete cache written before merged-file checksums: record them if its files have the right shapes."""
    try:
        shapes = (np.load(job.folder / "features.npy", mmap_mode="r").shape, np.load(job.folder / "valid.npy").shape)
    except (OSError, ValueError):
        return False
    if shapes != ((len(job.raws), job.plan["dim"]), (len(job.raws),)):
        return False
    manifest["merged"] = {name: file_record(job.folder / name) for name in MERGED}
    write_json_atomic(job.folder / "manifest.json", manifest)
    _say_rank0(f"encode: {job.folder}: recorded the checksums of its merged files (its manifest predates them)")
    return True


def _all_shards_verified(job: Job, wait: bool, repair: bool) -> bool:
    """True when every chunk of the shards folder's plan has a shard that verifies, and that plan agrees with
    this job (on everything a complete cache must: inputs, encoder, revision, dtype..., and on the chunk size
    unless we ``repair`` a cache that was complete): it can then be merged without loading the encoder (its
    chunk order is taken from ``shards/plan.json``)."""
    plan_path = job.folder / "shards" / "plan.json"
    if not plan_path.is_file():
        return False
    old = read_json(plan_path)
    keys = COMPLETE_KEYS if repair else (*COMPLETE_KEYS, "chunk_size")
    if any(old.get(k) != job.plan.get(k) for k in keys) or "chunk_order" not in old:
        return False
    with _writers_lock(job, wait=wait, why="they are still writing shards"):
        remove_stale_tmp(job.folder / "shards")
        job.verified = verified_chunks(job.folder / "shards", _say_rank0)
    if set(job.verified) != set(range(math.ceil(len(job.raws) / old["chunk_size"]))):
        return False
    job.plan["chunk_size"], job.plan["chunk_order"] = old["chunk_size"], old["chunk_order"]
    return True


def open_folder(job: Job, opts: EncodeOptions, lock: FolderLock) -> str:
    """Rank 0, first thing: take the folder's job lock, then say what is to be done: ``complete`` (a
    verified complete cache of these inputs and encoder), ``merge`` (every shard is there and verifies:
    merge without loading the encoder) or ``encode``."""
    if opts.overwrite:
        lock.acquire(wait=False, why="--overwrite refused while another encode job uses this folder; "
                                      "wait for it to finish (or stop it) and rerun")
    else:
        lock.acquire(wait=opts.wait, say=_say_rank0, why="" if opts.wait else "rerun without --no-wait to wait for it")
    for tmp in remove_stale_tmp(job.folder):  # a merge or manifest write killed part-way (we hold the job lock)
        _say_rank0(f"encode: removed {tmp.name}, left by a killed merge")
    if opts.overwrite:
        _clear(job)
    manifest_path = job.folder / "manifest.json"
    repair = manifest_path.is_file()
    if repair:
        manifest = read_json(manifest_path)
        check_plan(manifest, job.plan, job.folder, keys=COMPLETE_KEYS)  # another job's complete cache: refused
        problem = verify_merged(job.folder, manifest)
        if problem is None or ("merged" not in manifest and _adopt_legacy(job, manifest)):
            return "complete"
        _say_rank0(f"encode: {problem}; not complete: merging it again from its shards")
        manifest_path.unlink()  # never reported complete while it is repaired
    return "merge" if _all_shards_verified(job, opts.wait, repair) else "encode"


def _pending_chunks(job: Job, wait: bool = True) -> list[int]:
    """Check (or record) the plan of the shards folder, drop half-written files, verify the shards (setting
    corrupt ones aside) and list the chunks still to do. Rank 0, job lock held."""
    shards = job.folder / "shards"
    shards.mkdir(parents=True, exist_ok=True)
    plan_path = shards / "plan.json"
    if plan_path.is_file():
        check_plan(read_json(plan_path), job.plan, job.folder)
    else:
        write_json_atomic(plan_path, job.plan)
    with _writers_lock(job, wait=wait, why="they are still writing shards"):
        if job.verified is None:
            remove_stale_tmp(shards)
            job.verified = verified_chunks(shards, _say_rank0)
        for chunk, shard in sorted(job.verified.items()):
            if chunk >= len(job.chunks) or not np.array_equal(np.sort(shard.index), np.sort(job.chunks[chunk])):
                path = finished_chunks(shards)[chunk]
                moved = set_aside(path)
                _say_rank0(f"encode: shard {path} holds other items than chunk {chunk}; set aside as {moved.name}")
                del job.verified[chunk]
    return [c for c in range(len(job.chunks)) if c not in job.verified]


# ----------------------------------------------------------------------------- the encoder


def _zero3_config(path: str | None, job: Job) -> dict:
    """The shipped ZeRO-3 inference config with its "auto" values filled for this model and dtype."""
    config = json.loads(Path(path or DEFAULT_DS_CONFIG).read_text())
    hidden = job.info.dim
    auto = {"stage3_param_persistence_threshold": 10 * hidden, "stage3_prefetch_bucket_size": int(0.9 * hidden * hidden),
            "reduce_bucket_size": hidden * hidden}
    zero = config.setdefault("zero_optimization", {})
    for key, value in auto.items():
        if zero.get(key, "auto") == "auto":
            zero[key] = value
    config.setdefault("bf16", {})["enabled"] = job.dtype == "bfloat16"
    config.setdefault("fp16", {})["enabled"] = job.dtype == "float16"
    return config


def _create_kwargs(job: Job, opts: EncodeOptions, ctx: Dist) -> dict:
    kwargs: dict[str, Any] = {"device": ctx.device, "dtype": job.dtype, "trust_remote_code": opts.trust_remote_code}
    if opts.random_weights:
        kwargs["random_weights"] = True
    if opts.compile:
        kwargs["compile"] = True
    return kwargs


def _load_zero3(job: Job, opts: EncodeOptions, ctx: Dist) -> tuple[Any, Any]:
    """Load under ``HfDeepSpeedConfig`` (so ``from_pretrained`` partitions parameters as it loads),
    then wrap in a ZeRO-3 engine whose hooks gather each layer's parameters for its forward."""
    import deepspeed
    from transformers.integrations import HfDeepSpeedConfig

    from encoders import create_encoder

    config = _zero3_config(opts.ds_config, job)
    hf_config = HfDeepSpeedConfig(config)  # must be alive while the weights load
    encoder = create_encoder(opts.encoder, **_create_kwargs(job, opts, ctx))
    partitioned_at_load = any(hasattr(p, "ds_id") for p in encoder.module.parameters())
    engine, *_ = deepspeed.initialize(model=encoder.module, config=config, dist_init_required=False)
    engine.module.eval()
    params = list(encoder.module.parameters())
    job.extra["zero3"] = {"partitioned_at_load": partitioned_at_load,
                          "rank0_param_numel": sum(p.ds_tensor.numel() for p in params),
                          "total_param_numel": sum(p.ds_numel for p in params)}
    return encoder, (engine, hf_config)


def load_encoder(job: Job, opts: EncodeOptions, ctx: Dist) -> tuple[Any, Any]:
    """The encoder on this rank's device (data parallel), or partitioned across ranks (ZeRO-3)."""
    if job.strategy == "zero3":
        return _load_zero3(job, opts, ctx)
    from encoders import create_encoder

    return create_encoder(opts.encoder, **_create_kwargs(job, opts, ctx)), None


# ----------------------------------------------------------------------------- encoding


def plan_batches(job: Job, chunks: list[int]) -> list[Batch]:
    """Token-budget batches of the given chunks, chunk by chunk (images: ``budget`` per batch)."""
    out: list[Batch] = []
    for c in chunks:
        items = job.chunks[c]
        out += chunk_batches(c, items, [job.lengths[i] for i in items], job.budget)
    return out


def pad_for_zero3(batches: list[Batch], ctx: Dist) -> list[Batch]:
    """Dummy batches so every rank runs the same number of forwards (ZeRO-3 gathers are collective)."""
    steps = ctx.max(len(batches))
    return batches + [Batch(chunk=-1, items=(0,), tokens=0, padded=0, dummy=True)] * (steps - len(batches))


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
    batches = plan_batches(job, [pending[k] for k in shard(len(pending), ctx.rank, ctx.world)])
    if job.strategy == "zero3":
        batches = pad_for_zero3(batches, ctx)
    source = BatchSource(job.raws, batches, _preprocess_fn(encoder), job.plan["modality"])
    workers = _num_workers(opts, ctx.device, int(os.environ.get("LOCAL_WORLD_SIZE", ctx.world)))
    loader = batch_loader(source, workers, pin_memory=ctx.device.type == "cuda")
    writer = ChunkWriter(job.folder / "shards", ctx.rank, batches)
    total = sum(len(b.items) for b in batches if not b.dummy)
    bar = tqdm(total=total, unit="item", desc=f"encode rank 0/{ctx.world}", disable=ctx.rank != 0 or not opts.progress)
    start = time.perf_counter()
    # shared writer lock while this rank writes (released before the final collective, so a rank stuck
    # there after its rank 0 died never holds up the next job)
    with FolderLock(job.folder, WRITERS_NAME, shared=True):
        for batch, inputs, keep, failures in loader:
            feats = encode_inputs(encoder.encode, inputs, len(batch.items), keep, job.info.dim)
            if not batch.dummy:
                writer.add(batch, feats, drop_nonfinite(batch.items, feats, failures))
                bar.update(len(batch.items))
    bar.close()
    return {**writer.totals, "seconds": time.perf_counter() - start, "rank": ctx.rank, **_peak_memory(ctx.device)}


def _peak_memory(device: torch.device) -> dict:
    out = {"peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}
    if device.type == "cuda":
        out["peak_gpu_bytes"] = torch.cuda.max_memory_allocated(device)
    return out


# ----------------------------------------------------------------------------- merge + manifest


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


# ----------------------------------------------------------------------------- entry points


def run(dataset: Any, opts: EncodeOptions) -> Path:
    """Encode ``dataset``'s items into the cache (resuming any finished shards); returns the folder."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    from encoders import get_info

    _check_choice("--strategy", opts.strategy, STRATEGIES)
    info = get_info(opts.encoder, trust_remote_code=opts.trust_remote_code)  # metadata only, no weights
    ctx = start_distributed(opts, opts.strategy or info.strategy)
    job = plan_job(dataset, opts, info, ctx)
    lock = FolderLock(job.folder)  # taken by rank 0 only, for the whole job (harness.features.lock)
    try:
        state = on_rank0(ctx, lambda: open_folder(job, opts, lock))
        if state == "complete":
            _say(ctx, f"encode: {job.folder} is already complete")
            return job.folder
        start = time.perf_counter()  # the wall clock of this run's work (after the encoder loads, when it does)
        if state == "merge":
            job.plan["chunk_size"], job.plan["chunk_order"] = ctx.broadcast((job.plan["chunk_size"], job.plan.get("chunk_order")))
            pending: list[int] = []
            stats = {"items": 0, "tokens": 0, "padded_tokens": 0, "batches": 0, "chunks": 0, "seconds": 0.0,
                     "rank": ctx.rank, **_peak_memory(ctx.device)}
            _say(ctx, f"encode: all {job.n_chunks} shards are there and verified; merging them")
        else:
            encoder, _keep_alive = load_encoder(job, opts, ctx)
            start = time.perf_counter()
            set_chunks(job, catalogue_lengths(job, encoder, ctx))
            pending = on_rank0(ctx, lambda: _pending_chunks(job, opts.wait))
            _say(ctx, f"encode: {len(job.chunks)} chunks of {job.plan['chunk_size']} items, {len(pending)} to do, "
                      f"{ctx.world} process(es), {job.strategy}, {job.dtype} on {ctx.device.type}")
            stats = encode_pending(job, encoder, pending, opts, ctx)
        finish(job, pending, stats, start, ctx)
    finally:
        lock.release()  # rank 0, after the last collective: every rank has stopped writing
    _say(ctx, f"encode: wrote {job.folder}")
    return job.folder


def encode_dataset(dataset: Any, encoder: str, modality: str | None = None,
                   cache_root: str | Path | None = None, **options: Any) -> Path:
    """In-process encode (what ``ensure_features`` calls): the same job, in however many processes run it."""
    return run(dataset, EncodeOptions(encoder=encoder, modality=modality,
                                      cache_dir=None if cache_root is None else str(cache_root), **options))


def _say(ctx: Dist, message: str) -> None:
    if ctx.rank == 0:
        print(message, file=sys.stderr, flush=True)


def parse_args(argv: list[str] | None) -> tuple[str, str | None, EncodeOptions]:
    p = argparse.ArgumentParser(prog="harness encode", description="Encode an item catalogue into the feature cache.")
    p.add_argument("--encoder", required=True, help="registered name (see `harness encoders list`) or a local checkpoint folder")
    p.add_argument("--dataset", required=True, help="dataset name (see `harness data stats`)")
    p.add_argument("--modality", choices=MODALITIES, help="default: the encoder's modality")
    p.add_argument("--cache-dir", help="cache root (default $HARNESS_CACHE_DIR or ./.cache/harness)")
    p.add_argument("--data-dir", help="dataset root (default $HARNESS_DATA_DIR)")
    p.add_argument("--cpu", action="store_true", help="run on CPU (gloo) even where GPUs exist")
    p.add_argument("--strategy", choices=STRATEGIES, help="ddp (data parallel) or zero3 (DeepSpeed ZeRO-3 inference)")
    p.add_argument("--batch-tokens", type=int, help="padded tokens per text batch (default 16384 GPU / 4096 CPU)")
    p.add_argument("--batch-size", type=int, default=256, help="images per batch")
    p.add_argument("--dtype", choices=DTYPES, help="default float32 on CPU, the encoder's preferred dtype on GPU")
    p.add_argument("--num-workers", type=int, help="DataLoader workers per process (default 0 on CPU)")
    p.add_argument("--limit", type=int, help="encode only the first N items")
    p.add_argument("--chunk-size", type=int, help="items per shard (default from the item count)")
    p.add_argument("--ds-config", help=f"DeepSpeed config for --strategy zero3 (default {DEFAULT_DS_CONFIG.relative_to(REPO)})")
    p.add_argument("--trust-remote-code", action="store_true", help="allow legacy checkpoints that run their own code")
    p.add_argument("--random-weights", action="store_true", help="real architecture, seeded random weights (benchmarks)")
    p.add_argument("--compile", action="store_true", help="torch.compile the encoder's repeated blocks")
    p.add_argument("--overwrite", action="store_true",
                   help="discard an existing or partial cache for this encoder (refused while another job uses it)")
    p.add_argument("--no-wait", action="store_true",
                   help="fail at once when another encode job holds the feature folder (default: wait for it)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    a = p.parse_args(argv)
    opts = EncodeOptions(encoder=a.encoder, modality=a.modality, cache_dir=a.cache_dir, cpu=a.cpu, strategy=a.strategy,
                         batch_tokens=a.batch_tokens, batch_size=a.batch_size, dtype=a.dtype, num_workers=a.num_workers,
                         limit=a.limit, chunk_size=a.chunk_size, trust_remote_code=a.trust_remote_code,
                         overwrite=a.overwrite, wait=not a.no_wait, ds_config=a.ds_config, random_weights=a.random_weights,
                         compile=a.compile, progress=not a.no_progress)
    return a.dataset, a.data_dir, opts


def main(argv: list[str] | None = None) -> int:
    """``harness encode ...`` / ``python -m harness.encode ...`` / ``torchrun ... harness/encode.py ...``."""
    from harness.data import load_dataset

    name, data_dir, opts = parse_args(argv)
    run(load_dataset(name, data_dir=data_dir), opts)
    return 0


if __name__ == "__main__":
    sys.exit(main())
