"""MLflow outages lose nothing (docs/RELIABILITY.md): the real MLflow server is stopped before a cell starts and
in the middle of another's training, restarted, and the spool is synced: every metric is there, exactly once.

Cells run as real processes (``python -m harness.sweep FILE --index N``) on a tiny ML-100K sweep; the server is
``scripts/mlflow_up.sh``'s, stopped and restarted by PID on the same folder and port.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
from mlflow import MlflowClient
from services import base_env, pause_mlflow, resume_mlflow, start_mlflow, stop_mlflow

from harness import run_schema as schema
from harness.archive import load_record
from harness.sweep import load_sweep
from harness.sweep.tracking import prepare

pytest_plugins = ["services"]
pytestmark = pytest.mark.services

NAME = "mlflow-spool"
SWEEP = """name: spool
experiment: spool
base:
  dataset: {name: ml-100k, max_len: 20}
  model: {name: sasrec, items: id, dim: 16, layers: 1, heads: 1, dropout: 0.1}
  train: {epochs: 3, batch_size: 512, eval_batch_size: 2048, device: cpu, threads: 1, patience: 0}
grid:
  train.seed: [1, 2]
"""


@pytest.fixture(scope="module")
def setup(tmp_path_factory, data_dir, session_cache):
    root = tmp_path_factory.mktemp("spool")
    env = base_env(data_dir, session_cache)
    server = start_mlflow(root / "server", env, name=NAME)
    env.update(MLFLOW_TRACKING_URI=server.url, HARNESS_SPOOL_DIR=str(root / "spool"))
    (root / "spool.yaml").write_text(SWEEP)
    yield root, env, server
    stop_mlflow(NAME)


def harness_sweep(env, *args, timeout=600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "harness.sweep", *map(str, args)], env=env, capture_output=True,
                          text=True, timeout=timeout, check=False)


def check_against_spool(client, run_id: str, record: dict) -> None:
    """The MLflow run holds every metric point of the spooled record exactly once, and its artifacts."""
    for key, points in record["history"].items():
        logged = sorted([m.step, m.value] for m in client.get_metric_history(run_id, key))
        assert logged == sorted(points), key
    epochs = client.get_metric_history(run_id, schema.EPOCH_SECONDS)
    assert sorted(m.step for m in epochs) == [0, 1, 2]
    assert any(schema.is_part_metric(schema.harness_key(k), "test") for k in client.get_run(run_id).data.metrics)
    names = {a.path for a in client.list_artifacts(run_id)} | {a.path for a in client.list_artifacts(run_id, "ranks")}
    assert {"config.yaml", "results.json", "ranks/test.npz"} <= names


def spooled(root: Path) -> dict[str, dict]:
    """Spooled records by cell key."""
    return {r["cell_key"]: r for r in map(load_record, (root / "spool" / "spool").glob("*.json"))}


def test_outage_at_start_and_mid_training_then_sync(setup, monkeypatch):
    root, env, server = setup
    file = root / "spool.yaml"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", server.url)
    sweep = load_sweep(file)
    ctx = prepare(sweep)  # what `harness sweep --submit` does before the cells start
    cell_env = {**env, **ctx.env()}
    client = MlflowClient(server.url)
    keys = [c.key for c in sweep.cells()]

    # (1) the server is down when cell 0 starts: it trains, exits 0 and keeps everything in the spool
    pause_mlflow(NAME)
    t0 = time.monotonic()
    proc = harness_sweep(cell_env, file, "--index", 0)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "local spool" in proc.stderr and proc.stderr.count("WARNING: MLflow failed") == 1
    assert time.monotonic() - t0 < 300
    resume_mlflow(NAME, env)

    # (2) the server stops after cell 1 logged its first epoch and comes back after the cell ended
    cell = subprocess.Popen([sys.executable, "-m", "harness.sweep", str(file), "--index", "1"], env=cell_env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    run_id, deadline = None, time.monotonic() + 300
    while time.monotonic() < deadline and cell.poll() is None:
        runs = client.search_runs([ctx.experiment_id], f"tags.`{schema.TAG_KEY}` = '{keys[1]}'")
        if runs and client.get_metric_history(runs[0].info.run_id, schema.EPOCH_SECONDS):
            run_id = runs[0].info.run_id
            break
        time.sleep(0.2)
    assert run_id is not None, "cell 1 never logged its first epoch"
    pause_mlflow(NAME)
    out = cell.communicate(timeout=600)[0]
    assert cell.returncode == 0, out[-3000:]
    resume_mlflow(NAME, env)
    assert client.get_run(run_id).info.status == "RUNNING"
    assert len(client.get_metric_history(run_id, schema.EPOCH_SECONDS)) < 3  # the outage really was mid-training

    records = spooled(root)
    assert set(records) == set(keys) and all(r["status"] == "FINISHED" for r in records.values())
    assert len(list((root / "spool" / "spool").glob("*.pending"))) == 2
    assert not schema.finished_keys(client, ctx.experiment_id)

    # sync: cell 0's run is created, cell 1's RUNNING run is completed; both FINISHED, every point once
    proc = harness_sweep(env, "sync", file)
    assert proc.returncode == 0 and "synced 2 spooled runs (1 created" in proc.stdout, proc.stdout + proc.stderr
    assert schema.finished_keys(client, ctx.experiment_id) == set(keys)
    runs = {r.data.tags[schema.TAG_KEY]: r for r in client.search_runs([ctx.experiment_id], schema.CELLS)}
    assert len(runs) == 2 and runs[keys[1]].info.run_id == run_id
    for key, run in runs.items():
        assert run.info.status == "FINISHED" and run.data.tags[schema.TAG_PARENT] == ctx.parent_run_id
        check_against_spool(client, run.info.run_id, records[key])

    # (3) idempotent: a second sync and the next run of the sweep upload nothing and run nothing
    before = {k: len(client.get_metric_history(runs[keys[1]].info.run_id, k)) for k in records[keys[1]]["history"]}
    proc = harness_sweep(env, "sync", file)
    assert proc.returncode == 0 and "nothing to sync" in proc.stdout, proc.stdout + proc.stderr
    proc = harness_sweep(env, file, "--local", "--logs", root / "logs")
    assert proc.returncode == 0 and "0 to run" in proc.stdout, proc.stdout + proc.stderr
    after = {k: len(client.get_metric_history(runs[keys[1]].info.run_id, k)) for k in before}
    assert after == before
