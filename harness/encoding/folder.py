"""Rank 0's view of the cache folder: what is to be done (complete / merge / encode), ``--overwrite``,
and which chunks are still pending once every shard there has been verified. Called with the job lock held.
"""

from __future__ import annotations

import math
import shutil

import numpy as np

from harness.encoding.dist import say
from harness.encoding.lock import WRITERS_NAME, FolderLock
from harness.encoding.options import EncodeOptions
from harness.encoding.plan import Job
from harness.encoding.shards import finished_chunks, remove_stale_tmp, set_aside, verified_chunks
from harness.features.manifest import COMPLETE_KEYS, check_plan, read_json, write_json_atomic
from harness.features.merged import MERGED, file_record, verify_merged


def _writers_lock(job: Job, wait: bool, why: str) -> FolderLock:
    """Exclusive writer lock: no process of an earlier job still writes shards (see harness.encoding.lock)."""
    return FolderLock(job.folder, WRITERS_NAME).acquire(wait=wait, say=say, why=why)


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
    say(f"encode: {job.folder}: recorded the checksums of its merged files (its manifest predates them)")
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
        job.verified = verified_chunks(job.folder / "shards", say)
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
        lock.acquire(wait=opts.wait, say=say, why="" if opts.wait else "rerun without --no-wait to wait for it")
    for tmp in remove_stale_tmp(job.folder):  # a merge or manifest write killed part-way (we hold the job lock)
        say(f"encode: removed {tmp.name}, left by a killed merge")
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
        say(f"encode: {problem}; not complete: merging it again from its shards")
        manifest_path.unlink()  # never reported complete while it is repaired
    return "merge" if _all_shards_verified(job, opts.wait, repair) else "encode"


def pending_chunks(job: Job, wait: bool = True) -> list[int]:
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
            job.verified = verified_chunks(shards, say)
        for chunk, shard in sorted(job.verified.items()):
            if chunk >= len(job.chunks) or not np.array_equal(np.sort(shard.index), np.sort(job.chunks[chunk])):
                path = finished_chunks(shards)[chunk]
                moved = set_aside(path)
                say(f"encode: shard {path} holds other items than chunk {chunk}; set aside as {moved.name}")
                del job.verified[chunk]
    return [c for c in range(len(job.chunks)) if c not in job.verified]
