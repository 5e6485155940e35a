"""A sweep in MLflow: the store, the experiment and the parent run, the unfinished cells, the closing table.

Two MLflow races are avoided on purpose (shared/docs/SLURM_MLFLOW_RECIPE.md): the store schema, the
experiment and the parent run are created by ONE process (:func:`prepare`) before any cell starts, and the
cells get the experiment id through ``MLFLOW_EXPERIMENT_ID`` instead of calling ``set_experiment``.
Keys and queries come from :mod:`harness.run_schema`.
"""

from __future__ import annotations

import collections
import csv
import io
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness import run_schema as schema
from harness.sweep.grid import Cell, Sweep
from harness.tracking import ensure_experiment, open_store, tracking_uri

ENV_EXPERIMENT = "MLFLOW_EXPERIMENT_ID"
ENV_PARENT = "HARNESS_PARENT_RUN_ID"


@dataclass(frozen=True)
class Context:
    """Where a sweep's cells log: created once by :func:`prepare`, handed to tasks through the environment."""

    uri: str
    experiment_id: str
    parent_run_id: str

    def env(self) -> dict[str, str]:
        return {"MLFLOW_TRACKING_URI": self.uri, ENV_EXPERIMENT: self.experiment_id, ENV_PARENT: self.parent_run_id}


def store_uri(sweep: Sweep) -> str:
    """The sweep's tracking URI; a relative sqlite path is made absolute so every task opens the same file."""
    uri = tracking_uri(sweep.cells()[0].config.tracking)
    prefix = "sqlite:///"
    if uri.startswith(prefix) and not uri[len(prefix):].startswith("/"):
        uri = prefix + str(Path(uri[len(prefix):]).resolve())
    return uri


def init_store(uri: str):
    """Open the store from this one process (creates the sqlite schema before any parallel writer)."""
    return open_store(uri)


def sweep_tags(sweep: Sweep) -> dict[str, str]:
    """The parent run's tags a report needs: identity, the axes of each grid and the cell count."""
    axes = [sweep.axes(g) for g in range(len(sweep.grids))]
    return schema.sweep_tags(sweep.name, sweep.overrides, axes, len(sweep.cells()))


def _parent(client, experiment_id: str, sweep: Sweep) -> str:
    """The sweep's parent run (same name and overrides): reused by a rerun, else created."""
    tags = schema.sweep_parent_tags(sweep.name, sweep.overrides)
    found = schema.newest_parent(client, experiment_id, tags[schema.TAG_SWEEP_ID])
    if found is not None:
        run_id = found.info.run_id
        client.update_run(run_id, status="RUNNING")
        return run_id
    run_id = client.create_run(experiment_id, tags=tags, run_name=f"sweep:{sweep.name}").info.run_id
    if sweep.path is not None:
        client.log_text(run_id, sweep.path.read_text(), f"sweep/{sweep.path.name}")
    return run_id


def _describe(client, run_id: str, sweep: Sweep) -> None:
    """Parent tags a report needs: the axes of each grid and the cell count."""
    from mlflow.entities import RunTag  # mlflow where used: `--archive` cells run where it is not installed

    tags = schema.describe_tags(sweep_tags(sweep))
    client.log_batch(run_id, tags=[RunTag(k, v) for k, v in tags.items()])


def prepare(sweep: Sweep) -> Context:
    """Store schema, experiment and parent run, created once by the submitting process."""
    uri = store_uri(sweep)
    client = init_store(uri)
    experiment_id = ensure_experiment(client, sweep.experiment, restore=True)
    parent = _parent(client, experiment_id, sweep)
    _describe(client, parent, sweep)
    return Context(uri, experiment_id, parent)


def context_from_env(sweep: Sweep) -> Context:
    """The context a submitter passed down (array task), else a fresh :func:`prepare` (a cell run by hand)."""
    exp, parent = os.environ.get(ENV_EXPERIMENT), os.environ.get(ENV_PARENT)
    if exp and parent:
        return Context(store_uri(sweep), exp, parent)
    return prepare(sweep)


def client(ctx: Context):
    """An ``MlflowClient`` on the sweep's store."""
    from mlflow import MlflowClient

    return MlflowClient(ctx.uri)


def finished(ctx: Context) -> set[str]:
    """Cell keys with a FINISHED run in the sweep's experiment."""
    return schema.finished_keys(client(ctx), ctx.experiment_id)


def pending(sweep: Sweep, ctx: Context) -> list[Cell]:
    """Cells without a FINISHED run."""
    done = finished(ctx)
    return [c for c in sweep.cells() if c.key not in done]


def finalize(sweep: Sweep, ctx: Context, active: set[int] = frozenset()) -> dict[str, int]:
    """Close the parent run: FINISHED when every cell has a FINISHED run, else FAILED; log a cells table.
    Cells in ``active`` (queued or running in Slurm for another submission) count as ``QUEUED`` and leave the
    parent RUNNING: the finalize job of that submission closes it."""
    store = client(ctx)
    best: dict[str, Any] = {}
    for run in schema.search_all(store, ctx.experiment_id, schema.CELLS):
        key, old = run.data.tags.get(schema.TAG_KEY), best.get(run.data.tags.get(schema.TAG_KEY))
        if old is None or (run.info.status == "FINISHED", run.info.start_time) > (old.info.status == "FINISHED", old.info.start_time):
            best[key] = run
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(["index", "key", "name", "status", "run_id"])
    counts: collections.Counter = collections.Counter()
    for cell in sweep.cells():
        run = best.get(cell.key)
        status = "QUEUED" if cell.index in active else run.info.status if run else "MISSING"
        counts[status] += 1
        writer.writerow([cell.index, cell.key, cell.name, status, run.info.run_id if run else ""])
    store.log_text(ctx.parent_run_id, buf.getvalue(), "sweep/cells.csv")
    for key, value in schema.status_counts_tag(counts).items():
        store.set_tag(ctx.parent_run_id, key, value)
    if counts["QUEUED"]:
        print(f"{sweep.name}: {counts['QUEUED']} cells still in Slurm (another submission); parent left RUNNING", flush=True)
    else:
        store.set_terminated(ctx.parent_run_id, "FINISHED" if counts["FINISHED"] == len(sweep.cells()) else "FAILED")
    print(f"{sweep.name}: " + ", ".join(f"{v} {k}" for k, v in sorted(counts.items())), flush=True)
    return dict(counts)


def set_tags(ctx: Context, tags: dict[str, str]) -> None:
    """Tags on the sweep's parent run (e.g. the Slurm job ids)."""
    store = client(ctx)
    for key, value in tags.items():
        store.set_tag(ctx.parent_run_id, key, value)
