"""Cells on the real Slurm of the test suite survive a requeue, and a second submission is harmless.

- requeue: the array task gets Slurm's time-limit signal (USR1 to the batch shell, sent with ``scancel --batch``)
  once its first epoch's checkpoint exists; ``slurm/cell.sh`` requeues itself, the restarted task resumes from
  the checkpoint and ends with the metrics of an uninterrupted run, in one MLflow run, no epoch twice.
- submitting twice: while the first submission's cells run or wait, a second one submits no cell, and
  neither finalize job closes the parent FAILED.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from mlflow import MlflowClient
from services import REPO

from harness import checkpoint

pytest_plugins = ["services"]  # fixtures: slurm, mlflow_server
pytestmark = pytest.mark.services

EPOCHS = 4
KEYS = ("valid/hr_at_20", "valid/ndcg_at_10", "train/loss")


def sweep_file(tmp_path: Path, name: str, grid: dict, **train) -> Path:
    sweep = yaml.safe_load((REPO / "sweeps" / "ci.yaml").read_text())
    sweep.update(name=name, experiment=name, grid=grid)
    sweep["base"]["train"].update(train)
    file = tmp_path / f"{name}.yaml"
    file.write_text(yaml.safe_dump(sweep))
    return file


def harness_sweep(env: dict[str, str], *args: str, timeout: float = 600) -> str:
    proc = subprocess.run([sys.executable, "-m", "harness.sweep", *map(str, args)], env=env, capture_output=True,
                          text=True, timeout=timeout, check=False)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout


def wait_for(predicate, timeout: float, what: str):
    end = time.monotonic() + timeout
    while not (value := predicate()):
        assert time.monotonic() < end, what
        time.sleep(0.1)
    return value


def cell_runs(uri: str, experiment: str) -> list:
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name(experiment).experiment_id
    return [r for r in client.search_runs([exp]) if r.data.tags.get("harness.role") == "cell"]


def history(uri: str, run) -> dict[str, list]:
    client = MlflowClient(uri)
    return {k: [(m.step, m.value) for m in client.get_metric_history(run.info.run_id, k)] for k in KEYS}


def test_a_requeued_cell_resumes_its_checkpoint_in_the_same_run(slurm, mlflow_server, tmp_path):
    file = sweep_file(tmp_path, "ci-requeue", {"model.dim": [16]}, epochs=EPOCHS, patience=0,
                      checkpoint_dir=str(tmp_path / "ckpt"))
    env = {**slurm.env, "MLFLOW_TRACKING_URI": mlflow_server.url}
    harness_sweep(env, file, "--submit", "--logs", tmp_path / "logs")
    wait_for(lambda: list((tmp_path / "ckpt").rglob(checkpoint.FILE)), 300, "no checkpoint written")
    task = slurm.run("squeue", "-h", "-r", "-n", "ci-requeue", "-o", "%i").stdout.split()[0]
    slurm.run("scancel", "--batch", "--signal=USR1", task)  # what --signal=B:USR1@300 sends before the time limit
    # the reference: the same cell uninterrupted, on this machine, into its own store
    local_uri = f"sqlite:///{tmp_path}/reference.db"
    harness_sweep({**env, "MLFLOW_TRACKING_URI": local_uri}, file, "--set", f"train.checkpoint_dir={tmp_path}/ref",
                  "--index", "0")
    slurm.wait_idle()

    job = [j for j in slurm.jobs() if j.get("JobName") == "ci-requeue" and "ArrayTaskId" in j]
    assert [(j["JobState"], j["Restarts"]) for j in job] == [("COMPLETED", "1")]
    log = next((tmp_path / "logs").glob("ci-requeue-*_0.out")).read_text()
    assert "cell: USR1 (time limit near): requeue job" in log and "resumed from" in log, log[-3000:]
    runs = cell_runs(mlflow_server.url, "ci-requeue")
    assert len(runs) == 1 and runs[0].info.status == "FINISHED" and "error" not in runs[0].data.tags
    (reference,) = cell_runs(local_uri, "ci-requeue")
    got, want = history(mlflow_server.url, runs[0]), history(local_uri, reference)
    assert got == want and [s for s, _ in got["train/loss"]] == list(range(EPOCHS))  # each epoch once, bitwise
    tests = {k: v for k, v in reference.data.metrics.items() if k.startswith("test/")}
    assert tests and {k: runs[0].data.metrics[k] for k in tests} == tests
    assert not list((tmp_path / "ckpt").rglob(checkpoint.FILE))
    (parent,) = parents(mlflow_server.url, "ci-requeue")  # the finalize job waited for the requeued task
    assert parent.info.status == "FINISHED" and parent.data.tags["harness.cells"] == "FINISHED=1"


def parents(uri: str, experiment: str) -> list:
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name(experiment).experiment_id
    return [r for r in client.search_runs([exp]) if r.data.tags.get("harness.role") == "sweep"]


def test_submitting_twice_submits_nothing_running_and_fails_no_parent(slurm, mlflow_server, tmp_path):
    file = sweep_file(tmp_path, "ci-twice", {"model.dim": [16, 32]})
    env = {**slurm.env, "MLFLOW_TRACKING_URI": mlflow_server.url}
    before = {j["JobId"] for j in slurm.jobs()}
    harness_sweep(env, file, "--submit", "--sbatch-arg=--hold", "--logs", tmp_path / "logs")  # queued until released
    array = [j for j in slurm.jobs() if j["JobId"] not in before and j.get("JobName") == "ci-twice"]
    try:
        out = harness_sweep(env, file, "--submit", "--logs", tmp_path / "logs2")
        assert "2 cells queued or running in Slurm (another submission)" in out and "nothing to submit" in out, out
        # a finalize step of another submission while these cells are in Slurm: parent left RUNNING, not FAILED
        out = harness_sweep(env, file, "--finalize")
        assert "2 cells still in Slurm (another submission); parent left RUNNING" in out, out
        (parent,) = parents(mlflow_server.url, "ci-twice")
        assert parent.info.status == "RUNNING"
    finally:
        slurm.run("scontrol", "release", array[0]["ArrayJobId"], check=False)
    slurm.wait_idle()
    new = [j for j in slurm.jobs() if j["JobId"] not in before]
    assert sorted(j["JobName"] for j in new) == ["ci-twice", "ci-twice", "ci-twice-finalize"]  # one array, one finalize
    runs = cell_runs(mlflow_server.url, "ci-twice")
    assert len(runs) == 2 and {r.info.status for r in runs} == {"FINISHED"}
    (parent,) = parents(mlflow_server.url, "ci-twice")
    assert parent.info.status == "FINISHED" and parent.data.tags["harness.cells"] == "FINISHED=2"
