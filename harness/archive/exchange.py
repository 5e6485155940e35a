"""Archives and MLflow: :func:`export` an experiment's newest FINISHED run per cell, :func:`import_archive`
the cells an experiment lacks (so ``harness sweep ... --local`` skips them)."""

from __future__ import annotations

import os
import tempfile
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from harness import run_schema as schema
from harness.archive.logger import now_ms
from harness.archive.reading import Archive
from harness.archive.records import SCHEMA, ranks_from_record, ranks_record, write_cell, write_sweep
from harness.config import TrackingConfig
from harness.tracking import RANKS_DIR, ensure_experiment, load_ranks, save_ranks, tracking_uri


def _uri(uri: str | None) -> str:
    """``uri``, else ``$MLFLOW_TRACKING_URI``, else the harness' ``sqlite:///mlruns.db``."""
    return tracking_uri(TrackingConfig(uri=uri))


def download_ranks(client, run_id: str, tmp: str | Path) -> dict[str, dict]:
    """Every ``ranks/<part>.npz`` artifact of a run, loaded: ``{part: {"above", "tied", "digest"}}`` ({} when none).

    MLflow's per-download progress bar is switched off meanwhile (unless ``MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR``
    is set): an export fetches one file per run."""
    out = {}
    names = [a.path for a in client.list_artifacts(run_id, RANKS_DIR) if a.path.endswith(".npz")]
    if not names:
        return out
    var, before = "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", os.environ.get("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR")
    os.environ.setdefault(var, "false")
    try:
        for name in names:
            out[Path(name).stem] = load_ranks(client.download_artifacts(run_id, name, str(tmp)))
    finally:
        if before is None:
            os.environ.pop(var, None)
    return out


def run_record(client, run, tmp: Path) -> dict:
    """The cell record of an MLflow run: tags, params, latest metrics, full histories, rank counts."""
    history = {}
    for key in sorted(run.data.metrics):
        points = sorted(client.get_metric_history(run.info.run_id, key), key=lambda m: (m.step, m.timestamp, m.value))
        history[key] = [[int(m.step), float(m.value)] for m in points]
    ranks = {part: ranks_record(r["above"], r["tied"], r["digest"]) for part, r in download_ranks(client, run.info.run_id, tmp).items()}
    return {"schema": SCHEMA, "cell_key": run.data.tags[schema.TAG_KEY], "run_id": run.info.run_id, "run_name": run.info.run_name,
            "status": run.info.status, "tags": dict(run.data.tags), "params": dict(run.data.params),
            "metrics": {k: float(v) for k, v in run.data.metrics.items()}, "history": history, "ranks": ranks,
            "start_time": run.info.start_time, "end_time": run.info.end_time}


def export(experiment: str, dest: str | Path, uri: str | None = None) -> Path:
    """Write the experiment's newest FINISHED run per cell key to ``<dest>/<experiment>/``; returns that folder."""
    from mlflow import MlflowClient  # mlflow where used: archives are written and read on machines without it

    client = MlflowClient(_uri(uri))
    found = client.get_experiment_by_name(experiment)
    if found is None:
        raise LookupError(f"no MLflow experiment {experiment!r} at {_uri(uri)}")
    runs = schema.search_all(client, found.experiment_id, schema.FINISHED, schema.NEWEST_FIRST)
    newest: dict[str, Any] = {}
    for run in runs:  # start_time DESC: the first per key is the newest
        key = run.data.tags.get(schema.TAG_KEY)
        if key and run.data.tags.get(schema.TAG_ROLE, schema.ROLE_CELL) == schema.ROLE_CELL and key not in newest:
            newest[key] = run
    if not newest:
        raise LookupError(f"experiment {experiment!r} has no FINISHED runs with a {schema.TAG_KEY} tag")
    folder = Path(dest) / experiment
    sweep = schema.newest_parent(client, found.experiment_id)
    if sweep is not None:
        write_sweep(folder, experiment, sweep.data.tags, sweep.info.run_id, sweep.info.run_name, sweep.info.start_time)
    else:
        write_sweep(folder, experiment)
    with tempfile.TemporaryDirectory() as tmp:
        for key, run in newest.items():
            write_cell(folder, run_record(client, run, Path(tmp)))
    return folder


def import_archive(path: str | Path | Iterable[str | Path], experiment: str | None = None, uri: str | None = None) -> list[str]:
    """Create FINISHED MLflow runs for the archive's cells that have no FINISHED run in ``experiment`` yet.

    Each run is a copy (tags, params, metric histories, ``ranks/<part>.npz``, start and end time) and a
    child of the experiment's newest sweep parent run; without one, the archive's sweep parent is
    created first (same tags, so ``harness sweep`` reuses it). ``experiment`` defaults to the archive's.
    Returns the new run ids.
    """
    from mlflow import MlflowClient

    archive = Archive(path)
    experiment = experiment or archive.experiment()
    if not experiment:
        raise ValueError("no experiment given and the archive's sweep.json names none")
    client = MlflowClient(_uri(uri))
    exp_id = ensure_experiment(client, experiment, restore=True)
    done = schema.finished_keys(client, exp_id)  # one search, not one per record
    todo = [r for r in archive.newest("FINISHED") if r["cell_key"] not in done]
    if not todo:
        return []
    parent = schema.newest_parent(client, exp_id)
    parent_id = parent.info.run_id if parent is not None else None
    sweep = archive.parent()
    if parent_id is None and sweep and sweep["tags"].get(schema.TAG_ROLE) == schema.ROLE_SWEEP:
        tags = {k: v for k, v in sweep["tags"].items() if k not in (schema.TAG_PARENT, schema.TAG_RUN_NAME)}
        name = sweep["tags"].get(schema.TAG_RUN_NAME)
        parent_id = client.create_run(exp_id, tags=tags, run_name=name).info.run_id
        client.set_terminated(parent_id, "FINISHED")
    created = []
    with tempfile.TemporaryDirectory() as tmp:
        for rec in reversed(todo):  # oldest first
            run_id = create_record_run(client, exp_id, rec, parent_id)
            log_record_data(client, run_id, rec)
            for part, data in sorted(rec.get("ranks", {}).items()):
                r = ranks_from_record(data)
                client.log_artifact(run_id, str(save_ranks(Path(tmp) / f"{part}.npz", r["above"], r["tied"], r["digest"])), RANKS_DIR)
            client.set_terminated(run_id, "FINISHED", end_time=rec.get("end_time"))
            created.append(run_id)
    return created


def record_tags(rec: dict, parent_id: str | None) -> dict[str, str]:
    """A record's tags for a new MLflow run: its own, without the old parent and run name, under ``parent_id``."""
    tags = {k: v for k, v in rec["tags"].items() if k not in (schema.TAG_PARENT, schema.TAG_RUN_NAME)}
    if parent_id:
        tags[schema.TAG_PARENT] = parent_id
    return tags


def create_record_run(client, exp_id: str, rec: dict, parent_id: str | None) -> str:
    """A new RUNNING MLflow run for a record (its tags, name and start time); returns the run id."""
    return client.create_run(exp_id, start_time=rec.get("start_time"), tags=record_tags(rec, parent_id),
                             run_name=rec.get("run_name")).info.run_id


def log_record_data(client, run_id: str, rec: dict, have_params=(), have_points: dict[str, Counter] | None = None) -> int:
    """A record's params and metric points into ``run_id``, except what the run already has (``have_params``:
    param names; ``have_points``: per MLflow key, a Counter of ``(step, value)`` already logged). Returns the
    number of metric points logged."""
    from mlflow.entities import Metric, Param

    params = [Param(k, v) for k, v in sorted(rec["params"].items()) if k not in have_params]
    for lo in range(0, len(params), 100):
        client.log_batch(run_id, params=params[lo : lo + 100])
    t0, have = rec.get("start_time") or now_ms(), {k: Counter(c) for k, c in (have_points or {}).items()}
    metrics, seen = [], set()
    for key, points in sorted(rec["history"].items()):
        left = have.get(key, Counter())
        for s, v in points:
            if left[(int(s), float(v))] > 0:
                left[(int(s), float(v))] -= 1
            else:
                metrics.append(Metric(key, float(v), t0 + len(metrics), int(s)))
        seen.add(key)
    metrics += [Metric(k, float(v), t0, 0) for k, v in sorted(rec["metrics"].items()) if k not in seen and not have.get(k)]
    for lo in range(0, len(metrics), 1000):
        client.log_batch(run_id, metrics=metrics[lo : lo + 1000])
    return len(metrics)
