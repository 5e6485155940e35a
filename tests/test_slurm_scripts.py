"""slurm/encode.sh and slurm/sweep.sh as a user submits them, on the real single-node Slurm of the test suite.

encode.sh's multi-node path is srun -> one torchrun per node -> c10d on the first node; with one slurmd this runs
it for one node (the two-node rendezvous itself is tested with two torchrun node agents in test_encode_scale.py).
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
from services import REPO

pytest_plugins = ["services"]  # fixture: slurm
pytestmark = pytest.mark.services


def sbatch(cluster, out: Path, *args: str) -> str:
    out.mkdir(parents=True, exist_ok=True)
    proc = cluster.run("sbatch", "--parsable", f"--output={out}/%j.out", *args, cwd=REPO)
    return proc.stdout.strip().split(";")[0]


def wait_job(cluster, job: str, timeout: float = 600) -> dict[str, str]:
    """The job's final record (JobState COMPLETED / FAILED ...) once it has left the queue."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        record = next((j for j in cluster.jobs() if j.get("JobId") == job), None)
        if record and record["JobState"] not in ("PENDING", "RUNNING", "CONFIGURING", "COMPLETING"):
            return record
        time.sleep(0.5)
    raise TimeoutError(f"job {job} still queued after {timeout}s:\n{cluster.run('squeue').stdout}")


def test_encode_sh_through_srun_and_torchrun_equals_a_one_process_run(slurm, tmp_path):
    job = sbatch(slurm, tmp_path / "logs", "--gres=none", "--cpus-per-task=1", "--mem=2G", "--time=10",
                 "slurm/encode.sh", "--cpu", "--encoder", "tiny-bert", "--dataset", "ml-100k",
                 "--cache-dir", str(tmp_path / "slurm-cache"), "--no-progress")
    record = wait_job(slurm, job)
    log = (tmp_path / "logs" / f"{job}.out").read_text()
    assert record["JobState"] == "COMPLETED", log[-3000:]

    subprocess.run([sys.executable, "-m", "harness.encode", "--cpu", "--encoder", "tiny-bert", "--dataset", "ml-100k",
                    "--cache-dir", str(tmp_path / "one-process"), "--no-progress"], cwd=REPO, env=slurm.env, check=True,
                   capture_output=True, timeout=600)
    folders = [next((tmp_path / root).rglob("features.npy")).parent for root in ("slurm-cache", "one-process")]
    for name in ("features.npy", "valid.npy"):
        assert (folders[0] / name).read_bytes() == (folders[1] / name).read_bytes(), name


def test_sweep_sh_with_a_wrong_argument_fails_in_its_first_seconds(slurm, tmp_path):
    job = sbatch(slurm, tmp_path / "logs", "slurm/sweep.sh", "sweeps/figure-4.yaml")
    record = wait_job(slurm, job, timeout=120)
    log = (tmp_path / "logs" / f"{job}.out").read_text()
    assert record["JobState"] == "FAILED" and record["ExitCode"] == "2:0", record
    assert "sweep file 'sweeps/figure-4.yaml' not found" in log
    assert record["RunTime"] <= "00:01:00", record["RunTime"]  # checked before any heavy import: seconds, not hours
