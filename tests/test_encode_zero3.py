"""DeepSpeed ZeRO-3 inference with 2 CPU processes (gloo) gives the plain path's features.

The checkpoint is a saved tiny LLaMA folder, so ``from_pretrained`` runs under ``HfDeepSpeedConfig``
and partitions the parameters while loading. Three chunks over two ranks give the ranks different
numbers of batches: the dummy batches that keep ZeRO-3's collective gathers in step are exercised
(without them the job would hang and the subprocess would time out).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import psutil
import pytest
from node_agents import PY, env, finish, kill_node1_rank_after_its_first_shard, start_agents, stop

from harness.encode import main
from harness.encoding.shards import finished_chunks
from harness.features.layout import encoder_key

REPO = Path(__file__).resolve().parents[1]
ARGS = ["--dataset", "ml-1m", "--cpu", "--no-progress", "--limit", "768", "--chunk-size", "256"]


def _save_tiny_llama(path: Path) -> Path:
    from encoders import create_encoder
    from encoders.tokenizers import tiny_tokenizer

    create_encoder("tiny-llama").module.save_pretrained(path)
    tiny_tokenizer().save_pretrained(path)
    return path


def test_zero3_two_cpu_processes_equal_plain_path(tmp_path):
    ckpt = _save_tiny_llama(tmp_path / "tiny-llama-ckpt")
    plain_root, zero_root = tmp_path / "plain", tmp_path / "zero3"
    assert main(["--encoder", str(ckpt), "--cache-dir", str(plain_root), *ARGS]) == 0

    cmd = [str(Path(sys.executable).parent / "torchrun"), "--standalone", "--nproc_per_node=2", "harness/encode.py",
           "--encoder", str(ckpt), "--strategy", "zero3", "--cache-dir", str(zero_root), *ARGS]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, check=False, timeout=400)
    assert proc.returncode == 0, proc.stderr[-6000:]

    sub = Path("features") / "ml-1m.first768" / encoder_key(str(ckpt)) / "text"
    plain = np.load(plain_root / sub / "features.npy")
    zero = np.load(zero_root / sub / "features.npy")
    assert plain.shape == (768, 32) and np.abs(plain).sum(1).min() > 0
    np.testing.assert_allclose(zero, plain, rtol=0, atol=1e-6)

    manifest = json.loads((zero_root / sub / "manifest.json").read_text())
    assert manifest["strategy"] == "zero3" and manifest["world_size"] == 2
    z = manifest["zero3"]
    assert z["partitioned_at_load"] is True  # HfDeepSpeedConfig was alive during from_pretrained
    assert z["rank0_param_numel"] < z["total_param_numel"] == manifest["params"]
    steps = sorted(r["batches"] for r in manifest["ranks"])
    assert steps[0] < steps[1]  # uneven real work: the short rank ran dummy batches


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory) -> Path:
    return _save_tiny_llama(tmp_path_factory.mktemp("ckpt") / "tiny-llama-ckpt")


def _kill_args(ckpt: Path, timeout_s: int) -> list[str]:
    """10 chunks of 64 items, dealt over the two ranks."""
    return ["--encoder", str(ckpt), "--strategy", "zero3", "--dataset", "ml-1m", "--cpu", "--no-progress", "--limit", "640",
            "--chunk-size", "64", "--batch-tokens", "256", "--collective-timeout", str(timeout_s)]


def test_zero3_killed_rank_ends_the_job_in_bounded_time_and_a_rerun_resumes(tmp_path, ckpt):
    """ZeRO-3 gathers parameters in every forward, so a dead rank is met inside DeepSpeed's own collectives:
    node 1's rank is SIGKILLed once it has written a shard (two torchrun node agents, as in
    test_encode_scale); the survivor must stop with one clear line within the bound, and the rerun must
    resume from the kept shards to the cache of an uninterrupted ZeRO-3 run."""
    args = _kill_args(ckpt, 60)
    sub = Path("features") / "ml-1m.first640" / encoder_key(str(ckpt)) / "text"
    killed_root, clean_root = tmp_path / "killed", tmp_path / "clean"
    procs = start_agents([*args, "--cache-dir", str(killed_root)], env(HARNESS_ENCODE_SLOW_S="0.3"))
    try:
        killed, _ = kill_node1_rank_after_its_first_shard(procs, killed_root / sub / "shards")
        results = finish(procs, timeout=120)
        took = time.monotonic() - killed
    finally:
        stop(procs)
    survivor = results[0][1]
    assert all(rc != 0 for rc, _ in results)
    assert "collective failed" in survivor and "rerun the same command to resume" in survivor, survivor[-5000:]
    assert "[rank0]: Traceback" not in survivor, survivor[-5000:]  # one clear line, not DeepSpeed's stack
    assert took < 90, took
    assert not (killed_root / sub / "manifest.json").exists()
    done = len(finished_chunks(killed_root / sub / "shards"))
    assert 0 < done < 10

    for root in (killed_root, clean_root):  # the same command again (resumes), and an uninterrupted run
        proc = subprocess.run([str(Path(PY).parent / "torchrun"), "--standalone", "--nproc_per_node=2", "harness/encode.py",
                               *args, "--cache-dir", str(root)], cwd=REPO, env=env(), capture_output=True, text=True,
                              timeout=400)
        assert proc.returncode == 0, proc.stderr[-6000:]
    manifest = json.loads((killed_root / sub / "manifest.json").read_text())
    assert manifest["chunks"] == {"total": 10, "encoded_this_run": 10 - done, "reused": done}
    assert manifest["zero3"]["group_timeouts_s"] == [60.0]  # DeepSpeed's own groups (torch default: 1800 s) too
    for name in ("features.npy", "valid.npy"):
        assert (killed_root / sub / name).read_bytes() == (clean_root / sub / name).read_bytes(), name
    print(f"survivor exited {took:.1f}s after the kill; {done} of 10 shards kept")


def test_zero3_stuck_rank_is_bounded_by_the_collective_timeout(tmp_path, ckpt):
    """A rank that stops answering without dying (SIGSTOP) is seen only by the timeout, inside a ZeRO-3
    parameter all-gather: the survivor stops with one clear line soon after --collective-timeout."""
    shards = tmp_path / "features" / "ml-1m.first640" / encoder_key(str(ckpt)) / "text" / "shards"
    procs = start_agents([*_kill_args(ckpt, 20), "--cache-dir", str(tmp_path)], env(HARNESS_ENCODE_SLOW_S="0.3"))
    worker = None
    try:
        stopped, worker = kill_node1_rank_after_its_first_shard(procs, shards, sig=signal.SIGSTOP)
        survivor, _ = procs[0].communicate(timeout=240)
        took = time.monotonic() - stopped
    finally:
        if worker is not None:  # stopped, it would outlive its agent
            with contextlib.suppress(psutil.NoSuchProcess):
                worker.kill()
        stop(procs)
    assert procs[0].returncode != 0
    assert "did not answer within --collective-timeout 20s" in survivor and "Timed out" in survivor, survivor[-5000:]
    assert "[rank0]: Traceback" not in survivor, survivor[-5000:]
    assert 20 <= took < 80, took
    print(f"survivor exited {took:.1f}s after its peer stopped (timeout 20 s)")


def test_a_finished_job_leaves_its_process_group(tmp_path, ckpt, request):
    """ZeRO-3 in one process still makes a process group; a finished job destroys it (a gloo group left to
    interpreter teardown can abort the process after the cache is written) and unsets the launcher variables
    it set for it, and a second job in the same process joins a fresh one."""
    import torch
    from accelerate import PartialState

    launcher_env = ("RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")
    assert not set(launcher_env) & set(os.environ)  # no launcher: start_distributed sets them for the job
    request.addfinalizer(lambda: [os.environ.pop(name, None) for name in launcher_env])  # even if the job fails
    args = ["--encoder", str(ckpt), "--strategy", "zero3", "--dataset", "ml-1m", "--cpu", "--no-progress",
            "--limit", "256", "--chunk-size", "256"]
    for root in (tmp_path / "first", tmp_path / "second"):
        assert main([*args, "--cache-dir", str(root)]) == 0
        assert not torch.distributed.is_initialized() and PartialState._shared_state == {}
        assert not set(launcher_env) & set(os.environ)  # or sweep cells started after it would inherit a rank
    sub = Path("features") / "ml-1m.first256" / encoder_key(str(ckpt)) / "text" / "features.npy"
    assert (tmp_path / "first" / sub).read_bytes() == (tmp_path / "second" / sub).read_bytes()
