"""A two-node encode job on one machine: two torchrun node agents (one CPU process each, c10d rendezvous
on 127.0.0.1), and killing one of its ranks mid-job the same way every time."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import psutil

from harness.encoding.shards import finished_chunks

REPO = Path(__file__).resolve().parents[1]
PY = sys.executable


def env(**extra: str) -> dict:
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1", "PYTHONPATH": str(REPO), **extra}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_agents(args: list[str], environ: dict) -> list[subprocess.Popen]:
    """Two torchrun node agents running ``harness/encode.py args``: a two-node job on one machine."""
    endpoint, run_id = f"127.0.0.1:{free_port()}", f"t{os.getpid()}{time.monotonic_ns()}"
    procs = []
    for node in (0, 1):
        cmd = [PY, "-m", "torch.distributed.run", "--nnodes", "2", "--node_rank", str(node), "--nproc_per_node", "1",
               "--rdzv_backend", "c10d", "--rdzv_endpoint", endpoint, "--rdzv_id", run_id, "harness/encode.py", *args]
        procs.append(subprocess.Popen(cmd, cwd=REPO, env=environ, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                      start_new_session=True))
        if node == 0:  # node 0's agent hosts the rendezvous store, as the first node of a Slurm job does
            _wait_listening(endpoint, procs[0])
    return procs


def _wait_listening(endpoint: str, agent: subprocess.Popen, timeout: float = 120) -> None:
    host, port = endpoint.split(":")
    deadline = time.monotonic() + timeout
    while agent.poll() is None and time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex((host, int(port))) == 0:
                return
        time.sleep(0.1)
    raise AssertionError(f"node 0's agent is not serving the rendezvous store on {endpoint}")


def finish(procs: list[subprocess.Popen], timeout: float = 300) -> list[tuple[int, str]]:
    """Each agent's exit code and output; whatever still runs after ``timeout`` is killed."""
    out = []
    try:
        for p in procs:
            text, _ = p.communicate(timeout=timeout)
            out.append((p.returncode, text))
    finally:
        stop(procs)
    return out


def stop(procs: list[subprocess.Popen]) -> None:
    for p in procs:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)


def kill_node1_rank_after_its_first_shard(procs: list[subprocess.Popen], shards: Path, timeout: float = 240,
                                          sig: int = signal.SIGKILL) -> tuple[float, psutil.Process]:
    """Send ``sig`` (SIGKILL: a dead rank; SIGSTOP: a stuck one) to node 1's worker (node 0's agent hosts the
    store; killing a worker leaves its agent's store up) as soon as it has written a shard, with the job
    still running; returns when it was sent (monotonic) and the worker (torchrun puts it in a process group
    of its own: a stopped one outlives its agent unless the test kills it)."""
    deadline = time.monotonic() + timeout
    while not (workers := [c for c in psutil.Process(procs[1].pid).children(recursive=True)
                           if "encode.py" in " ".join(c.cmdline()) and "RANK" in c.environ()]):
        assert time.monotonic() < deadline, "node 1 started no worker in time"
        time.sleep(0.05)
    rank = int(workers[0].environ()["RANK"])
    while not [p for p in finished_chunks(shards).values() if int(p.name.split("-")[0]) == rank]:
        assert all(p.poll() is None for p in procs), "the job ended before a rank could be killed"
        assert time.monotonic() < deadline, f"rank {rank} wrote no shard in time"
        time.sleep(0.05)
    workers[0].send_signal(sig)
    return time.monotonic(), workers[0]
