"""Where a report reads runs and writes its files: an MLflow experiment (``harness.archive.Archive`` reads
archives with the same methods)."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pandas as pd

from harness import run_schema as schema
from harness.archive import download_ranks


def cell_runs(experiment: str) -> pd.DataFrame:
    """Newest FINISHED run per cell key of ``experiment`` (one row per cell)."""
    import mlflow  # where used (~3.8 s measured): archive reports run without it

    found = mlflow.get_experiment_by_name(experiment)
    if found is None:
        raise LookupError(f"no MLflow experiment {experiment!r} at {mlflow.get_tracking_uri()}")
    df = mlflow.search_runs([found.experiment_id], filter_string=f"{schema.CELLS} and {schema.FINISHED}",
                            order_by=schema.NEWEST_FIRST)
    if df.empty:
        raise LookupError(f"experiment {experiment!r} has no FINISHED sweep cells")
    return df.drop_duplicates(f"tags.{schema.TAG_KEY}", keep="first").reset_index(drop=True)


def parent_run(experiment: str) -> dict | None:
    """The newest sweep parent run of the experiment: run id and tags (axes of each grid)."""
    import mlflow

    found = mlflow.get_experiment_by_name(experiment)
    run = schema.newest_parent(mlflow.MlflowClient(), found.experiment_id)
    return {"run_id": run.info.run_id, "tags": run.data.tags} if run else None


class MlflowSource:
    """Where a report reads runs: an MLflow experiment (``harness.archive.Archive`` has the same methods)."""

    def __init__(self, experiment: str):
        import mlflow

        self.experiment = experiment
        self.client = mlflow.MlflowClient()

    def runs(self) -> pd.DataFrame:
        return cell_runs(self.experiment)

    def parent(self) -> dict | None:
        return parent_run(self.experiment)

    def history(self, run_id: str, key: str) -> list[tuple[int, float]]:
        return [(m.step, m.value) for m in self.client.get_metric_history(run_id, key)]

    def ranks(self, run_id: str, part: str = "test") -> dict | None:
        """The run's ``ranks/<part>.npz`` artifact (:meth:`harness.tracking.Logger.log_ranks`), None when absent."""
        with tempfile.TemporaryDirectory() as tmp:
            return download_ranks(self.client, run_id, tmp).get(part)



def log_outputs(experiment: str, parent: dict | None, kind: str, files: list[Path]) -> str:
    """Log the report files as artifacts of the sweep parent (or a new ``report:<kind>`` run); returns its id."""
    import mlflow

    client = mlflow.MlflowClient()
    if parent is not None:
        run_id = parent["run_id"]
    else:
        exp = mlflow.get_experiment_by_name(experiment).experiment_id
        run_id = client.create_run(exp, run_name=f"report:{kind}", tags={schema.TAG_ROLE: schema.ROLE_REPORT}).info.run_id
        client.set_terminated(run_id)
    for path in files:
        client.log_artifact(run_id, str(path), f"report/{kind}")
    return run_id


