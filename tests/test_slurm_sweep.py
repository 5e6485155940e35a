"""``sbatch slurm/sweep.sh`` on a real single-node Slurm, tracked by a real MLflow server.

The cluster (munge + slurmctld + slurmd) and the server are started by tests/services.py through
scripts/*_up.sh and stopped by PID. The cells are real ``harness.train.run`` calls (ML-100K, 1 epoch).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from mlflow import MlflowClient
from services import REPO, run_slurm_sweep, sbatch_sweep

from harness.sweep import load_sweep
from harness.tracking import mlflow_key

pytest_plugins = ["services"]  # fixtures: slurm, mlflow_server, ci_sweep
pytestmark = pytest.mark.services


def children(client: MlflowClient, experiment: str):
    exp = client.get_experiment_by_name(experiment)
    assert exp is not None and exp.experiment_id != "0", f"experiment {experiment!r} missing"
    runs = client.search_runs([exp.experiment_id])
    parents = [r for r in runs if r.data.tags.get("harness.role") == "sweep"]
    cells = [r for r in runs if r.data.tags.get("harness.role") == "cell"]
    return parents, cells


def array_tasks(jobs: list[dict[str, str]], name: str) -> list[dict[str, str]]:
    return [j for j in jobs if j.get("JobName") == name and "ArrayTaskId" in j]


def test_sweep_sh_runs_every_cell_as_a_child_of_one_parent(ci_sweep, slurm, mlflow_server):
    client = MlflowClient(mlflow_server.url)
    parents, cells = children(client, "ci")
    assert len(parents) == 1 and len(cells) == 4
    parent = parents[0]
    expected = {c.key: c for c in load_sweep(ci_sweep.file).cells()}
    assert {r.data.tags["harness.cell_key"] for r in cells} == set(expected)
    for run in cells:
        cell = expected[run.data.tags["harness.cell_key"]]
        assert run.info.status == "FINISHED"
        assert run.data.tags["mlflow.parentRunId"] == parent.info.run_id
        assert run.info.run_name == cell.name
        assert run.data.params["model.dim"] == str(cell.config.model.dim)
        assert 0.0 < run.data.metrics[mlflow_key("test/hr@20")] <= 1.0
    # one array job, one task per cell, every task COMPLETED with exit code 0, tagged on its run
    tasks = array_tasks(ci_sweep.jobs, "ci")
    assert len(tasks) == 4 and {t["JobState"] for t in tasks} == {"COMPLETED"} and {t["ExitCode"] for t in tasks} == {"0:0"}
    assert {r.data.tags["slurm.array_job_id"] for r in cells} == {tasks[0]["ArrayJobId"]}
    assert sorted(r.data.tags["slurm.array_task_id"] for r in cells) == ["0", "1", "2", "3"]
    # the finalize job closed the parent and logged the cells table
    parent = client.get_run(parent.info.run_id)
    assert parent.info.status == "FINISHED" and parent.data.tags["harness.cells"] == "FINISHED=4"
    table = client.download_artifacts(parent.info.run_id, "sweep/cells.csv", str(ci_sweep.logs))
    assert Path(table).read_text().count(",FINISHED,") == 4


def test_rerun_submits_nothing_for_finished_cells(ci_sweep, slurm, mlflow_server, tmp_path):
    before = {j["JobId"] for j in slurm.jobs()}
    job = sbatch_sweep(slurm, ci_sweep.file, ci_sweep.env, tmp_path)
    slurm.wait_idle()
    new = [j for j in slurm.jobs() if j["JobId"] not in before]
    assert [(j["JobId"], j["JobName"], j["ExitCode"]) for j in new] == [(job, "sweep-submit", "0:0")]  # nothing else
    assert "all 4 cells FINISHED in MLflow; nothing to submit" in (tmp_path / f"submit-{job}.out").read_text()
    parents, cells = children(MlflowClient(mlflow_server.url), "ci")
    assert len(parents) == 1 and len(cells) == 4


def test_a_failing_cell_is_failed_while_the_others_finish(slurm, mlflow_server, tmp_path):
    sweep = yaml.safe_load((REPO / "sweeps" / "ci.yaml").read_text())
    sweep.update(name="ci-fail", experiment="ci-fail", grid={"model.heads": [1, 3]})  # dim 16 / 3 heads: ValueError
    sweep["base"]["model"]["dim"] = 16
    file = tmp_path / "ci-fail.yaml"
    file.write_text(yaml.safe_dump(sweep))
    ended = run_slurm_sweep(slurm, mlflow_server, file, tmp_path)

    client = MlflowClient(mlflow_server.url)
    parents, cells = children(client, "ci-fail")
    by_heads = {r.data.tags["harness.axis.model.heads"]: r for r in cells}
    assert sorted(by_heads) == ["1", "3"] and len(cells) == 2
    assert by_heads["1"].info.status == "FINISHED"
    failed = by_heads["3"]
    assert failed.info.status == "FAILED"
    assert "not divisible by heads=3" in failed.data.tags["error"]
    error = Path(client.download_artifacts(failed.info.run_id, "error.txt", str(tmp_path))).read_text()
    assert "Traceback" in error and "ValueError" in error
    assert client.get_run(parents[0].info.run_id).info.status == "FAILED"
    codes = {t["ArrayTaskId"]: t["ExitCode"] for t in array_tasks(ended.jobs, "ci-fail")}
    assert codes == {"0": "0:0", "1": "1:0"}
