"""A cell stopped by SIGTERM (Slurm time limit, scancel) is closed KILLED in MLflow, with the reason."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import pytest
from mlflow import MlflowClient
from services import REPO, base_env


def wait_for(predicate, timeout: float, what: str):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise TimeoutError(what)


def test_sigterm_closes_the_cell_run_as_killed(tmp_path, data_dir, session_cache):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    env = {**base_env(data_dir, session_cache), "MLFLOW_TRACKING_URI": uri}
    cmd = [sys.executable, "-m", "harness.sweep", str(REPO / "sweeps" / "ci.yaml"), "--set", "train.epochs=200",
           "--index", "0"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        line = ""
        while not line.startswith("cell 0 "):  # printed once the store, experiment and parent run exist
            line = proc.stdout.readline()
            assert line, "the cell process ended before starting the cell"
        assert line.startswith("cell 0 [dim=16,seed=1] key "), line
        client = MlflowClient(uri)
        exp = client.get_experiment_by_name("ci").experiment_id

        def running():
            runs = [r for r in client.search_runs([exp]) if r.data.tags.get("harness.role") == "cell"]
            return runs if runs and runs[0].info.status == "RUNNING" else None

        run = wait_for(running, 120, "the cell's run never showed up RUNNING")[0]
        proc.terminate()
        assert proc.wait(timeout=120) == 143
    finally:
        proc.kill()
    run = client.get_run(run.info.run_id)
    assert run.info.status == "KILLED"
    assert run.data.tags["error"].endswith("_Terminated: terminated by signal 15")
    assert "cell killed" in proc.stdout.read()


def test_a_sigterm_lost_in_a_finalizer_stops_the_cell_at_the_next_commit():
    """Python swallows an exception that a signal handler raises inside a ``__del__`` ("Exception ignored in"):
    seen with SIGTERM landing in a progress bar's ``__del__`` at an epoch's end, after which the cell trained on.
    The stop is kept and raised again at the end of the next epoch's commit; nothing stays pending after."""
    from harness import checkpoint
    from harness.sweep.cell import _on_sigterm, _sigterm_raises, _Terminated

    class Finalised:
        def __del__(self):
            _on_sigterm(signal.SIGTERM, None)

    with _sigterm_raises():
        Finalised()  # the handler runs in the finalizer; its exception is swallowed
        with pytest.raises(_Terminated, match="signal 15"), checkpoint.committing():
            pass
    with checkpoint.committing():
        pass
