"""Upload spool entries (:mod:`harness.archive.spool`) to MLflow: complete the run the cell started, or create it.

For each ``<token>.pending`` in a spool folder whose record is no longer RUNNING: when the MLflow run the cell
created still exists, the params, tags, metric points and artifact files it lacks are logged into it (a point
counts as present when the run has the same ``(step, value)``, so nothing is logged twice); otherwise a run is
created like a sweep cell's (same tags, child of the sweep parent) and filled. The run is then closed with the
record's status and the marker removed, so a second sync uploads nothing.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

from harness.archive.exchange import create_record_run, log_record_data, record_tags
from harness.archive.records import load_record, write_json
from harness.archive.spool import FILES, PENDING, bound_http_retries
from harness.tracking import STATUSES, ensure_experiment


def pending(folder: str | Path) -> list[Path]:
    """The folder's markers of entries not uploaded yet, oldest first."""
    return sorted(Path(folder).glob(f"*{PENDING}"), key=lambda p: p.stat().st_mtime) if Path(folder).is_dir() else []


def _existing_run(client, run_id: str | None):
    from mlflow.exceptions import MlflowException

    if not run_id:
        return None
    try:
        run = client.get_run(run_id)
    except MlflowException:
        return None
    return run if run.info.lifecycle_stage == "active" else None


def _artifact_paths(client, run_id: str, path: str | None = None) -> set[str]:
    out = set()
    for info in client.list_artifacts(run_id, path):
        out |= _artifact_paths(client, run_id, info.path) if info.is_dir else {info.path}
    return out


def sync_entry(marker: Path, uri: str | None = None) -> dict | None:
    """Upload one entry; returns ``{"run_id", "created", "points"}``, None when its run is still RUNNING."""
    from mlflow import MlflowClient
    from mlflow.entities import RunTag

    token = marker.name[: -len(PENDING)]
    rec, target = load_record(marker.parent / f"{token}.json"), json.loads(marker.read_text())
    if rec["status"] not in STATUSES:
        return None
    client = MlflowClient(uri or target["uri"])
    run = _existing_run(client, target.get("run_id"))
    if run is None:
        exp_id = target.get("experiment_id") or ensure_experiment(client, target["experiment"])
        run_id = create_record_run(client, exp_id, rec, target.get("parent_run_id"))
        write_json(marker, {**target, "experiment_id": exp_id, "run_id": run_id})  # a rerun after a crash completes this run
        have_params, have_points = set(), {}
    else:
        run_id = run.info.run_id
        tags = record_tags(rec, target.get("parent_run_id"))
        client.log_batch(run_id, tags=[RunTag(k, v) for k, v in tags.items()])
        have_params = set(run.data.params)
        have_points = {k: Counter((int(m.step), float(m.value)) for m in client.get_metric_history(run_id, k))
                       for k in set(rec["history"]) | set(rec["metrics"])}
    points = log_record_data(client, run_id, rec, have_params, have_points)
    files = marker.parent / f"{token}{FILES}"
    if files.is_dir():
        have = _artifact_paths(client, run_id)
        for path in sorted(p for p in files.rglob("*") if p.is_file()):
            rel = path.relative_to(files).as_posix()
            if rel not in have:
                parent = str(Path(rel).parent)
                client.log_artifact(run_id, str(path), None if parent == "." else parent)
    client.set_terminated(run_id, rec["status"], end_time=rec.get("end_time"))
    marker.unlink()
    return {"run_id": run_id, "created": run is None, "points": points}


def sync_folder(folder: str | Path, uri: str | None = None) -> dict[str, int]:
    """Every pending entry of a spool folder: counts of ``synced`` (of which ``created``), ``points`` and
    ``running`` (skipped: the cell has not ended)."""
    bound_http_retries()
    counts = Counter(synced=0, created=0, points=0, running=0)
    for marker in pending(folder):
        done = sync_entry(marker, uri)
        if done is None:
            counts["running"] += 1
            continue
        counts.update(synced=1, created=int(done["created"]), points=done["points"])
    return dict(counts)
