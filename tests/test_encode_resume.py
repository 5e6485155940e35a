"""SIGKILL part-way, rerun: the final cache is bitwise identical and finished shards are not redone.

The interrupted job runs with 2 processes (torchrun) and is resumed with 1, so the resume also
crosses world sizes.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from harness.encode import main
from harness.encoding.shards import finished_chunks, read_shard
from harness.run_schema import encode_cost

REPO = Path(__file__).resolve().parents[1]
N_CHUNKS = 54  # ceil(3416 / 64)
ARGS = ["--encoder", "tiny-llama", "--dataset", "ml-1m", "--cpu", "--no-progress", "--chunk-size", "64", "--batch-tokens", "256"]


def _sigkill_tree(pid: int) -> None:
    """SIGKILL a launcher and every process under it (torchrun starts its workers in their own sessions)."""
    parent = psutil.Process(pid)
    procs = [parent, *parent.children(recursive=True)]
    for p in procs:
        p.send_signal(signal.SIGKILL)
    psutil.wait_procs(procs, timeout=30)


def _kill_part_way(root: Path, at_least: int) -> None:
    """Start a 2-process job and SIGKILL all of its processes once ``at_least`` shards exist."""
    shards = root / "features" / "ml-1m" / "tiny-llama" / "text" / "shards"
    cmd = [str(Path(sys.executable).parent / "torchrun"), "--standalone", "--nproc_per_node=2", "harness/encode.py",
           "--cache-dir", str(root), *ARGS]
    proc = subprocess.Popen(cmd, cwd=REPO, env={**os.environ, "OMP_NUM_THREADS": "1"},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 240
    try:
        while len(finished_chunks(shards)) < at_least:
            assert proc.poll() is None, "the job ended before it could be interrupted"
            assert time.monotonic() < deadline, "no shards appeared in time"
            time.sleep(0.005)
    finally:
        _sigkill_tree(proc.pid)
        proc.wait()


def _stamps(shards: Path) -> dict[str, tuple[int, int]]:
    return {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in finished_chunks(shards).values()}


def test_sigkill_then_resume_is_bitwise_identical(tmp_path):
    ref_root, root = tmp_path / "uninterrupted", tmp_path / "interrupted"
    assert main(["--cache-dir", str(ref_root), *ARGS]) == 0

    _kill_part_way(root, at_least=4)
    folder = root / "features" / "ml-1m" / "tiny-llama" / "text"
    assert not (folder / "manifest.json").exists()
    before = _stamps(folder / "shards")
    assert 4 <= len(before) < N_CHUNKS, len(before)
    time.sleep(1.0)
    assert _stamps(folder / "shards") == before  # nothing of the killed job is still writing

    assert main(["--cache-dir", str(root), *ARGS]) == 0  # resume with one process
    after = _stamps(folder / "shards")
    assert len(after) == N_CHUNKS
    assert {name: after[name] for name in before} == before  # same inode, same mtime: not rewritten
    assert not list((folder / "shards").glob(".*.tmp"))  # half-written files from the kill are gone

    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["chunks"] == {"total": N_CHUNKS, "encoded_this_run": N_CHUNKS - len(before), "reused": len(before)}
    assert sum(r["chunks"] for r in manifest["ranks"]) == N_CHUNKS - len(before)
    # the encode cost counts the killed run's chunks too, not only this run's
    seconds = {p.name: read_shard(p).stats["seconds"] for p in finished_chunks(folder / "shards").values()}
    assert manifest["encode_seconds_all_runs"] == pytest.approx(sum(seconds.values()), rel=1e-12)
    assert sum(seconds[name] for name in before) > 0
    assert encode_cost(manifest)[0] == manifest["encode_seconds_all_runs"]
    ref = ref_root / "features" / "ml-1m" / "tiny-llama" / "text"
    assert (folder / "features.npy").read_bytes() == (ref / "features.npy").read_bytes()
    assert (folder / "valid.npy").read_bytes() == (ref / "valid.npy").read_bytes()
