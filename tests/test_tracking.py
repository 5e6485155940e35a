"""Loggers: the in-memory one, and real MLflow on a temporary sqlite database."""

from __future__ import annotations

import time
from pathlib import Path

import mlflow
import pytest
from mlflow import MlflowClient

from harness.config import TrackingConfig
from harness.tracking import MemoryLogger, MLflowLogger, harness_key, mlflow_key


@pytest.fixture
def tracking(tmp_path, monkeypatch) -> TrackingConfig:
    monkeypatch.chdir(tmp_path)  # the default artifact root is relative to the working directory
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("MLFLOW_EXPERIMENT_ID", raising=False)
    return TrackingConfig(uri=f"sqlite:///{tmp_path / 'mlflow.db'}", experiment="test-exp", run_name="cell-1")


def test_memory_logger_records_everything(tmp_path):
    log = MemoryLogger()
    log.log_params({"train": {"lr": 0.1}, "seed": 3})
    log.log_metrics({"valid/hr@10": 0.5}, step=0)
    log.log_metrics({"valid/hr@10": 0.6}, step=1)
    (tmp_path / "a.txt").write_text("hi")
    log.log_artifact(tmp_path / "a.txt")
    log.log_text("x: 1\n", "config.yaml")
    log.set_tags({"k": 1})
    log.finish("FAILED", error="Traceback...\nValueError: boom")
    assert log.params == {"train.lr": 0.1, "seed": 3}
    assert log.history("valid/hr@10") == [(0, 0.5), (1, 0.6)]
    assert log.artifacts["a.txt"] == b"hi" and log.artifacts["config.yaml"] == "x: 1\n"
    assert log.tags == {"k": "1", "error": "ValueError: boom"} and log.status == "FAILED"
    with pytest.raises(ValueError, match="FINISHED, FAILED, KILLED"):
        log.finish("DONE")


def test_metric_names_map_to_valid_mlflow_keys():
    assert mlflow_key("test/ndcg@10") == "test/ndcg_at_10"
    assert harness_key(mlflow_key("valid/hr@20")) == "valid/hr@20"


def test_mlflow_run_written_to_sqlite(tracking, tmp_path):
    log = MLflowLogger(tracking, tags={"cell_key": "abc"})
    log.log_params({"model": {"name": "sasrec", "dim": 64}})
    for epoch in range(3):
        log.log_metrics({"train/loss": 3.0 - epoch, "valid/ndcg@10": 0.1 * epoch}, step=epoch)
    log.log_text("model:\n  name: sasrec\n", "config.yaml")
    log.log_dict({"a": 1}, "final.json")
    log.finish("FINISHED")

    client = MlflowClient(tracking.uri)
    run = client.get_run(log.run_id)
    assert run.info.status == "FINISHED" and run.info.run_name == "cell-1"
    assert client.get_experiment(run.info.experiment_id).name == "test-exp"
    assert run.data.params == {"model.name": "sasrec", "model.dim": "64"}
    assert run.data.tags["cell_key"] == "abc"
    history = client.get_metric_history(log.run_id, "valid/ndcg_at_10")
    assert [(m.step, round(m.value, 6)) for m in history] == [(0, 0.0), (1, 0.1), (2, 0.2)]
    assert {a.path for a in client.list_artifacts(log.run_id)} == {"config.yaml", "final.json"}
    local = client.download_artifacts(log.run_id, "config.yaml", str(tmp_path / "dl"))
    assert Path(local).read_text() == "model:\n  name: sasrec\n"


def test_mlflow_honours_experiment_id_and_parent(tracking):
    client = MlflowClient(tracking.uri)
    exp = client.create_experiment("sweep")
    parent = client.create_run(exp, run_name="parent").info.run_id
    tracking.experiment_id, tracking.parent_run_id = exp, parent
    log = MLflowLogger(tracking)
    log.finish("FAILED", error="Traceback\nRuntimeError: out of memory")
    run = client.get_run(log.run_id)
    assert run.info.experiment_id == exp and run.info.status == "FAILED"
    assert run.data.tags["mlflow.parentRunId"] == parent and run.data.tags["error"] == "RuntimeError: out of memory"
    assert {a.path for a in client.list_artifacts(log.run_id)} == {"error.txt"}
    children = client.search_runs([exp], filter_string=f"tags.mlflow.parentRunId = '{parent}'")
    assert [r.info.run_id for r in children] == [log.run_id]


def test_existing_experiment_is_reused_and_env_uri_honoured(tracking, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", tracking.uri)
    tracking.uri = None
    first, second = MLflowLogger(tracking), MLflowLogger(tracking)
    assert first.experiment_id == second.experiment_id and first.uri.startswith("sqlite:///")
    assert mlflow.MlflowClient(first.uri).get_experiment(first.experiment_id).name == "test-exp"


def test_non_zero_rank_records_nothing(tracking, monkeypatch):
    monkeypatch.setenv("RANK", "1")
    log = MLflowLogger(tracking)
    log.log_metrics({"x": 1.0}, step=0)
    log.finish()
    assert log.run_id is None
    mem = MemoryLogger()
    mem.log_metrics({"x": 1.0})
    assert mem.metrics == []


def test_system_metrics_are_logged(tracking):
    tracking.system_metrics = True
    log = MLflowLogger(tracking, system_metrics_interval=0.1)
    time.sleep(0.5)
    log.finish()
    keys = MlflowClient(tracking.uri).get_run(log.run_id).data.metrics
    assert any(k.startswith("system/cpu_utilization") for k in keys), keys
