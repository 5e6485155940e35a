"""Results that travel: a sweep's runs as a folder of small JSON files (in the spirit of MTEB's results repo).

An archive is a folder ``<dir>/<sweep-or-experiment-name>/`` holding

- ``sweep.json``: the experiment name and the sweep parent run's tags (``harness.axes.<g>`` ...),
- ``<cell_key>.json``, one per cell: ``{"schema": 1, "cell_key", "run_id", "run_name", "status", "tags",
  "params", "metrics" (latest value per MLflow key, as ``mlflow.search_runs`` shows it), "history"
  (every logged point per key: ``[[step, value], ...]``), "ranks" ({"test": {"above", "tied", "n", "digest"}},
  counts as base64 of zlib-compressed int32 little-endian), "start_time", "end_time" (ms since the epoch)}``.

Keys are sorted and floats written as Python's shortest round-trip repr, so files diff well and
re-exporting unchanged runs rewrites identical bytes. Machine, library versions and timings travel in
the tags and metrics the run already logs; other artifacts (config.yaml = the params, results.json = the
final metrics) are not copied.

- :class:`ArchiveLogger`: a :class:`~harness.tracking.MemoryLogger` that writes its cell record at
  ``finish()`` (for machines without an MLflow store, e.g. a GPU box); :func:`write_sweep` adds ``sweep.json``.
- :func:`export`: MLflow experiment -> archive (newest FINISHED run per cell key, histories, ranks artifact).
- :func:`read` / :func:`parent` / :class:`Archive`: archive -> the DataFrame ``mlflow.search_runs`` gives
  (``run_id``, ``status``, ``metrics.*``, ``params.*``, ``tags.*`` ...), so every report runs on it unchanged;
  ``Archive.history`` / ``Archive.ranks`` give a row's per-epoch curves and rank counts.
- :func:`import_archive`: archive -> FINISHED MLflow runs (children of the experiment's newest sweep parent)
  for cells not FINISHED there yet, so ``harness sweep ... --local`` skips them.

CLI: ``harness archive export --experiment X --to DIR``, ``harness archive import DIR [--experiment X]``,
``harness archive list DIR [DIR ...]``.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import sys
import tempfile
import time
import uuid
import zlib
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from harness.run_schema import TAG_KEY, TAG_ROLE, finished_keys, search_all
from harness.tracking import RANKS_DIR, MemoryLogger, check_ranks, load_ranks, mlflow_key, save_ranks

SCHEMA = 1
SWEEP_FILE = "sweep.json"
TAG_PARENT = "mlflow.parentRunId"
TAG_RUN_NAME = "mlflow.runName"
INFO_COLUMNS = ("run_id", "experiment_id", "status", "artifact_uri", "start_time", "end_time")


# ------------------------------------------------------------------------------------- encoding, files


def encode_counts(values: np.ndarray) -> str:
    """int32 little-endian bytes, zlib-compressed, base64 (ASCII)."""
    data = np.ascontiguousarray(np.asarray(values, dtype="<i4")).tobytes()
    return base64.b64encode(zlib.compress(data, 9)).decode("ascii")


def decode_counts(text: str, n: int) -> np.ndarray:
    """Inverse of :func:`encode_counts` (int32, native order); checks the length."""
    values = np.frombuffer(zlib.decompress(base64.b64decode(text)), dtype="<i4").astype(np.int32)
    if len(values) != n:
        raise ValueError(f"rank counts decode to {len(values)} values, the record says n={n}")
    return values


def ranks_record(above: np.ndarray, tied: np.ndarray, digest: str) -> dict:
    above, tied = check_ranks(above, tied)
    return {"above": encode_counts(above), "tied": encode_counts(tied), "n": len(above), "digest": str(digest)}


def ranks_from_record(data: dict) -> dict:
    """``{"above": int32, "tied": int32, "digest": str}`` from a record's ``ranks[part]``."""
    n = int(data["n"])
    return {"above": decode_counts(data["above"], n), "tied": decode_counts(data["tied"], n), "digest": str(data["digest"])}


def dumps(obj: Any, indent: int = 0) -> str:
    """JSON with sorted keys, one dict entry per line, everything else (lists, numbers) compact on its line."""
    if isinstance(obj, dict) and obj:
        pad = " " * (indent + 1)
        items = [f"{pad}{json.dumps(str(k))}: {dumps(obj[k], indent + 1)}" for k in sorted(obj)]
        return "{\n" + ",\n".join(items) + "\n" + " " * indent + "}"
    return json.dumps(obj, separators=(", ", ": "), sort_keys=True)


def write_json(path: str | Path, data: dict) -> Path:
    """Write ``data`` atomically: serialised first, then a temporary file in the same folder, fsync, rename.

    A failure at any point leaves the previous file (or none) in place and no temporary file behind.
    """
    path = Path(path)
    text = dumps(data) + "\n"  # serialisation errors happen before anything touches the disk
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def cell_file(folder: str | Path, cell_key: str) -> Path:
    if not cell_key or "/" in cell_key or cell_key.startswith(".") or cell_key == Path(SWEEP_FILE).stem:
        raise ValueError(f"invalid cell key {cell_key!r} for an archive file name")
    return Path(folder) / f"{cell_key}.json"


def write_cell(folder: str | Path, record: dict) -> Path | None:
    """Write a cell record as ``<folder>/<cell_key>.json``; a non-FINISHED record never replaces a FINISHED one
    (returns None then)."""
    path = cell_file(folder, record["cell_key"])
    if record["status"] != "FINISHED" and path.is_file():
        try:
            if json.loads(path.read_text()).get("status") == "FINISHED":
                return None
        except (OSError, ValueError):
            pass
    return write_json(path, record)


def write_sweep(folder: str | Path, experiment: str, tags: dict[str, str] | None = None, run_id: str | None = None,
                run_name: str | None = None, start_time: int | None = None) -> Path:
    """``sweep.json``: the experiment name and the sweep parent run's tags (``harness.axes.<g>`` for the reports)."""
    return write_json(Path(folder) / SWEEP_FILE, {"schema": SCHEMA, "experiment": experiment, "run_id": run_id,
                                                  "run_name": run_name, "start_time": start_time,
                                                  "tags": {k: str(v) for k, v in (tags or {}).items()}})


def latest(history: dict[str, list]) -> dict[str, float]:
    """What MLflow shows as a run's metric: the value logged last at the highest step."""
    out = {}
    for key, points in history.items():
        top = max(step for step, _ in points)
        out[key] = [value for step, value in points if step == top][-1]
    return out


# ---------------------------------------------------------------------------------------------- logger


def now_ms() -> int:
    return int(time.time() * 1000)


class ArchiveLogger(MemoryLogger):
    """Records a run in memory and, at ``finish()``, writes its cell record to ``folder`` (atomically).

    The file is named by the run's ``harness.cell_key`` tag (``cell_key``, which ``harness train`` sets,
    is the fallback). Params are stored as MLflow stores them (``str(value)[:6000]``); metrics logged
    without a step get step 0, as in :class:`~harness.tracking.MLflowLogger`.
    """

    def __init__(self, folder: str | Path, tags: dict[str, Any] | None = None, run_name: str | None = None):
        super().__init__()
        self.folder = Path(folder)
        self.run_id = uuid.uuid4().hex
        self.run_name = run_name
        self.start_time = now_ms()
        self.end_time: int | None = None
        self.path: Path | None = None
        if tags:
            self.set_tags(tags)
        if run_name:
            self.set_tags({TAG_RUN_NAME: run_name})

    def cell_key(self) -> str:
        key = self.tags.get(TAG_KEY) or self.tags.get("cell_key")
        if not key:
            raise ValueError(f"ArchiveLogger needs the run's cell key: set the {TAG_KEY!r} tag (tags= or set_tags)")
        return key

    def record(self) -> dict:
        """The cell record (what :meth:`finish` writes)."""
        history: dict[str, list] = {}
        for name, value, step in self.metrics:
            history.setdefault(mlflow_key(name), []).append([int(step or 0), float(value)])
        for points in history.values():
            points.sort(key=lambda p: p[0])  # stable: same-step points keep their logging order
        return {"schema": SCHEMA, "cell_key": self.cell_key(), "run_id": self.run_id,
                "run_name": self.run_name or self.tags.get(TAG_RUN_NAME), "status": self.status or "RUNNING",
                "tags": dict(self.tags), "params": {k: str(v)[:6000] for k, v in self.params.items()},
                "metrics": latest(history), "history": history,
                "ranks": {part: ranks_record(r["above"], r["tied"], r["digest"]) for part, r in self.ranks.items()},
                "start_time": self.start_time, "end_time": self.end_time}

    def _finish(self, status):
        super()._finish(status)
        self.end_time = now_ms()
        self.path = write_cell(self.folder, self.record())


# --------------------------------------------------------------------------------------------- reading


def _files(paths: str | Path | Iterable[str | Path]) -> tuple[list[Path], list[Path]]:
    """(cell record files, sweep.json files) under the given archive folders (or single record files)."""
    paths = [paths] if isinstance(paths, str | Path) else list(paths)
    cells, sweeps = [], []
    for p in map(Path, paths):
        if p.is_file():
            (sweeps if p.name == SWEEP_FILE else cells).append(p)
        elif p.is_dir():
            found = sorted(f for f in p.glob("*.json") if not f.name.startswith("."))
            if not found:  # a folder of archives (dir/<name>/...): one level down
                found = sorted(f for f in p.glob("*/*.json") if not f.name.startswith("."))
            cells += [f for f in found if f.name != SWEEP_FILE]
            sweeps += [f for f in found if f.name == SWEEP_FILE]
        else:
            raise FileNotFoundError(f"archive {p} not found")
    return cells, sweeps


def load_record(path: Path) -> dict:
    data = json.loads(Path(path).read_text())
    if data.get("schema") != SCHEMA:
        raise ValueError(f"{path}: archive schema {data.get('schema')!r} is not supported (this harness reads {SCHEMA})")
    data["_path"] = str(path)
    return data


class Archive:
    """One or more archive folders read together; the newest record per cell key wins."""

    def __init__(self, paths: str | Path | Iterable[str | Path]):
        cell_files, sweep_files = _files(paths)
        if not cell_files and not sweep_files:
            raise LookupError(f"no archive records (*.json) in {paths}")
        self.records = [load_record(f) for f in cell_files]
        self.sweeps = [json.loads(f.read_text()) for f in sweep_files]
        self.by_run = {r["run_id"]: r for r in self.records}

    def newest(self, status: str | None = "FINISHED") -> list[dict]:
        """Newest record per cell key (``status``: only records with it; None: any), newest first."""
        recs = [r for r in self.records if status is None or r["status"] == status]
        recs.sort(key=lambda r: r["run_id"])
        recs.sort(key=lambda r: r.get("start_time") or 0, reverse=True)  # like MLflow: start_time DESC, run_id
        out, seen = [], set()
        for r in recs:
            if r["cell_key"] not in seen:
                seen.add(r["cell_key"])
                out.append(r)
        return out

    def experiment(self) -> str:
        names = [s.get("experiment") for s in self.sweeps if s.get("experiment")]
        return names[0] if names else ""

    def runs(self, status: str | None = "FINISHED"):
        """The DataFrame ``mlflow.search_runs`` would give for these runs (one row per cell key)."""
        import pandas as pd

        recs = self.newest(status)
        if not recs:
            raise LookupError(f"the archive has no {status or ''} cell records".replace("  ", " "))
        info = {c: [] for c in INFO_COLUMNS}
        for r in recs:
            info["run_id"].append(r["run_id"])
            info["experiment_id"].append(self.experiment())
            info["status"].append(r["status"])
            info["artifact_uri"].append(Path(r["_path"]).resolve().as_uri())
            info["start_time"].append(pd.to_datetime(r.get("start_time"), unit="ms", utc=True))
            info["end_time"].append(pd.to_datetime(r.get("end_time"), unit="ms", utc=True))
        data: dict[str, list] = dict(info)
        for prefix, field, null in (("metrics", "metrics", np.nan), ("params", "params", None), ("tags", "tags", None)):
            keys = sorted({k for r in recs for k in r[field]})
            for key in keys:
                data[f"{prefix}.{key}"] = [r[field].get(key, null) for r in recs]
        return pd.DataFrame(data)

    def parent(self) -> dict | None:
        """Like ``harness.report.parent_run``: the newest sweep parent's run id and tags (None without one)."""
        found = [s for s in self.sweeps if s.get("tags")]
        if not found:
            return None
        best = max(found, key=lambda s: s.get("start_time") or 0)
        return {"run_id": best.get("run_id"), "tags": dict(best["tags"])}

    def history(self, run_id: str, key: str) -> list[tuple[int, float]]:
        """Per-epoch ``(step, value)`` points of metric ``key`` (MLflow key) of a row's run."""
        return [(int(s), float(v)) for s, v in self.by_run[run_id]["history"].get(key, [])]

    def ranks(self, run_id: str, part: str = "test") -> dict | None:
        """``{"above", "tied", "digest"}`` of a row's run, or None when it logged no rank counts."""
        data = self.by_run[run_id].get("ranks", {}).get(part)
        return ranks_from_record(data) if data else None


def read(paths: str | Path | Iterable[str | Path], status: str | None = "FINISHED"):
    """Archive folder(s) -> the ``mlflow.search_runs`` DataFrame of the newest (FINISHED) run per cell key."""
    return Archive(paths).runs(status)


def parent(paths: str | Path | Iterable[str | Path]) -> dict | None:
    """The sweep parent of the archive(s) (``sweep.json``) as ``{"run_id", "tags"}``, like ``report.parent_run``."""
    return Archive(paths).parent()


# ----------------------------------------------------------------------------------------------- MLflow


def _uri(uri: str | None) -> str:
    """``uri``, else ``$MLFLOW_TRACKING_URI``, else the harness' ``sqlite:///mlruns.db``."""
    from harness.config import TrackingConfig
    from harness.tracking import tracking_uri

    return tracking_uri(TrackingConfig(uri=uri))


def _newest_parent(client, experiment_id: str):
    found = client.search_runs([experiment_id], filter_string=f"tags.`{TAG_ROLE}` = 'sweep'", max_results=1,
                               order_by=["attributes.start_time DESC"])
    return found[0] if found else None


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
    return {"schema": SCHEMA, "cell_key": run.data.tags[TAG_KEY], "run_id": run.info.run_id, "run_name": run.info.run_name,
            "status": run.info.status, "tags": dict(run.data.tags), "params": dict(run.data.params),
            "metrics": {k: float(v) for k, v in run.data.metrics.items()}, "history": history, "ranks": ranks,
            "start_time": run.info.start_time, "end_time": run.info.end_time}


def export(experiment: str, dest: str | Path, uri: str | None = None) -> Path:
    """Write the experiment's newest FINISHED run per cell key to ``<dest>/<experiment>/``; returns that folder."""
    from mlflow import MlflowClient

    client = MlflowClient(_uri(uri))
    found = client.get_experiment_by_name(experiment)
    if found is None:
        raise LookupError(f"no MLflow experiment {experiment!r} at {_uri(uri)}")
    runs = search_all(client, found.experiment_id, "attributes.status = 'FINISHED'", ["attributes.start_time DESC"])
    newest: dict[str, Any] = {}
    for run in runs:  # start_time DESC: the first per key is the newest
        key = run.data.tags.get(TAG_KEY)
        if key and run.data.tags.get(TAG_ROLE, "cell") == "cell" and key not in newest:
            newest[key] = run
    if not newest:
        raise LookupError(f"experiment {experiment!r} has no FINISHED runs with a {TAG_KEY} tag")
    folder = Path(dest) / experiment
    sweep = _newest_parent(client, found.experiment_id)
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
    from mlflow.entities import Metric, Param

    archive = Archive(path)
    experiment = experiment or archive.experiment()
    if not experiment:
        raise ValueError("no experiment given and the archive's sweep.json names none")
    client = MlflowClient(_uri(uri))
    found = client.get_experiment_by_name(experiment)
    exp_id = found.experiment_id if found is not None else client.create_experiment(experiment)
    if found is not None and found.lifecycle_stage == "deleted":
        client.restore_experiment(exp_id)
    done = finished_keys(client, exp_id)  # one search, not one per record
    todo = [r for r in archive.newest("FINISHED") if r["cell_key"] not in done]
    if not todo:
        return []
    parent = _newest_parent(client, exp_id)
    parent_id = parent.info.run_id if parent is not None else None
    sweep = archive.parent()
    if parent_id is None and sweep and sweep["tags"].get(TAG_ROLE) == "sweep":
        tags = {k: v for k, v in sweep["tags"].items() if k not in (TAG_PARENT, TAG_RUN_NAME)}
        name = sweep["tags"].get(TAG_RUN_NAME)
        parent_id = client.create_run(exp_id, tags=tags, run_name=name).info.run_id
        client.set_terminated(parent_id, "FINISHED")
    created = []
    with tempfile.TemporaryDirectory() as tmp:
        for rec in reversed(todo):  # oldest first
            tags = {k: v for k, v in rec["tags"].items() if k not in (TAG_PARENT, TAG_RUN_NAME)}
            if parent_id:
                tags[TAG_PARENT] = parent_id
            run_id = client.create_run(exp_id, start_time=rec.get("start_time"), tags=tags, run_name=rec.get("run_name")).info.run_id
            params = [Param(k, v) for k, v in sorted(rec["params"].items())]
            for lo in range(0, len(params), 100):
                client.log_batch(run_id, params=params[lo : lo + 100])
            t0 = rec.get("start_time") or now_ms()
            metrics, seen = [], set()
            for key, points in sorted(rec["history"].items()):
                metrics += [Metric(key, float(v), t0 + i, int(s)) for i, (s, v) in enumerate(points)]
                seen.add(key)
            metrics += [Metric(k, float(v), t0, 0) for k, v in sorted(rec["metrics"].items()) if k not in seen]
            for lo in range(0, len(metrics), 1000):
                client.log_batch(run_id, metrics=metrics[lo : lo + 1000])
            for part, data in sorted(rec.get("ranks", {}).items()):
                r = ranks_from_record(data)
                client.log_artifact(run_id, str(save_ranks(Path(tmp) / f"{part}.npz", r["above"], r["tied"], r["digest"])), RANKS_DIR)
            client.set_terminated(run_id, "FINISHED", end_time=rec.get("end_time"))
            created.append(run_id)
    return created


# ------------------------------------------------------------------------------------------------- CLI


def listing(paths) -> str:
    """One line per cell (newest record per key, any status): key, status, test HR@20, ranks, run name."""
    archive = Archive(paths)
    recs = archive.newest(status=None)
    sweep = archive.parent()
    head = f"# {archive.experiment() or '-'}: {len(recs)} cells"
    if sweep:
        head += ", " + ", ".join(f"{k}={v}" for k, v in sorted(sweep["tags"].items()) if k.startswith("harness.axes."))
    lines = [head]
    for r in sorted(recs, key=lambda r: r.get("run_name") or r["cell_key"]):
        hr = r["metrics"].get(mlflow_key("test/hr@20"))
        hr = f"{100 * hr:6.2f}" if hr is not None else "     -"
        parts = ",".join(sorted(r.get("ranks") or {})) or "-"
        lines.append(f"{r['cell_key']}  {r['status']:<8}  HR@20 {hr}  ranks {parts:<5}  {r.get('run_name') or '-'}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="harness archive", description="Results that travel: MLflow runs <-> JSON archives.")
    sub = p.add_subparsers(dest="command", required=True)
    e = sub.add_parser("export", help="write an experiment's newest FINISHED run per cell to DIR/<experiment>/")
    e.add_argument("--experiment", required=True)
    e.add_argument("--to", required=True, metavar="DIR")
    e.add_argument("--uri", help="tracking URI (default $MLFLOW_TRACKING_URI or sqlite:///mlruns.db)")
    i = sub.add_parser("import", help="create FINISHED MLflow runs for archived cells not FINISHED there yet")
    i.add_argument("paths", nargs="+", metavar="DIR")
    i.add_argument("--experiment", help="target experiment (default: the archive's)")
    i.add_argument("--uri", help="tracking URI (default $MLFLOW_TRACKING_URI or sqlite:///mlruns.db)")
    ls = sub.add_parser("list", help="the cells of archive folder(s)")
    ls.add_argument("paths", nargs="+", metavar="DIR")
    args = p.parse_args(argv)
    if args.command == "export":
        folder = export(args.experiment, args.to, args.uri)
        print(f"{folder}: {len(_files(folder)[0])} cells")
    elif args.command == "import":
        created = import_archive(args.paths, args.experiment, args.uri)
        print(f"imported {len(created)} runs")
    else:
        print(listing(args.paths))
    return 0


if __name__ == "__main__":
    sys.exit(main())
