"""MLflow outages lose nothing: a run logger that tees every call into memory and, once MLflow fails, into a
local spool that ``harness sweep sync`` uploads later.

:class:`SpoolLogger` logs to MLflow (an :class:`~harness.tracking.MLflowLogger`) and keeps the same calls in
an :class:`~harness.archive.logger.ArchiveLogger`. The first MLflow error (connection refused, 5xx, timeout;
MLflow's own HTTP retries are bounded by :data:`HTTP_LIMITS` so a dead server fails in seconds) switches it to
spool-only for the rest of the run, with one warning; training goes on and the run still ends FINISHED. From
then on every call rewrites the spool entry ``<spool>/<name>/<token>.*``:

- ``<token>.json``: the run as a cell record (params, tags, metric histories, ranks; the archive format, so
  ``harness archive list`` reads a spool folder),
- ``<token>.files/``: the artifacts logged so far (config.yaml, results.json, ranks/test.npz ...),
- ``<token>.pending``: where it belongs (tracking URI, experiment, parent run, the MLflow run id when the run
  was created) - present while the entry is not uploaded (:mod:`harness.archive.sync` removes it).

``<spool>`` is ``$HARNESS_SPOOL_DIR``, else ``results/spool`` under the working directory; ``<name>`` is the
sweep name (tag ``harness.sweep``), else the experiment name.
"""

from __future__ import annotations

import json
import os
import sys
import uuid
from pathlib import Path
from typing import Any

import yaml

from harness.archive.logger import ArchiveLogger, now_ms
from harness.archive.records import write_json
from harness.config import TrackingConfig
from harness.run_schema import LEGACY_TAG_KEY, TAG_KEY, TAG_SWEEP
from harness.tracking import Logger, MLflowLogger, tracking_uri

ENV_SPOOL = "HARNESS_SPOOL_DIR"
DEFAULT_SPOOL = Path("results") / "spool"
PENDING, FILES = ".pending", ".files"
# MLflow's defaults retry a refused connection 7 times with exponential backoff (minutes); these keep an outage to seconds.
HTTP_LIMITS = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2", "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
               "MLFLOW_HTTP_REQUEST_TIMEOUT": "30"}


def spool_root() -> Path:
    return Path(os.environ.get(ENV_SPOOL) or DEFAULT_SPOOL).resolve()


def spool_folder(name: str) -> Path:
    """``<spool>/<name>``: one sweep's (or experiment's) spool entries."""
    return spool_root() / name


def bound_http_retries() -> None:
    """MLflow HTTP retries and timeout bounded (unless the environment sets them)."""
    for key, value in HTTP_LIMITS.items():
        os.environ.setdefault(key, value)


def mlflow_errors() -> tuple[type[BaseException], ...]:
    """What an unreachable or failing server raises (never a signal turned into an exception, e.g. SIGTERM)."""
    import requests
    from mlflow.exceptions import MlflowException

    return MlflowException, requests.RequestException, OSError


def write_files(folder: Path, artifacts: dict[str, Any]) -> None:
    """A :class:`MemoryLogger`'s artifacts as files: bytes as they are, text, dicts as JSON or YAML (by suffix)."""
    for name, data in artifacts.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(data, bytes):
            path.write_bytes(data)
        elif isinstance(data, str):
            path.write_text(data)
        elif name.endswith(".json"):
            path.write_text(json.dumps(data, indent=2, sort_keys=True))
        else:
            path.write_text(yaml.safe_dump(data, sort_keys=False))


class SpoolLogger(Logger):
    """An MLflow run that falls back to the local spool when MLflow fails (see the module docstring)."""

    def __init__(self, tracking: TrackingConfig | None = None, tags: dict[str, Any] | None = None,
                 run_id: str | None = None):
        """``run_id``: continue that MLflow run (a cell resumed from its checkpoint)."""
        super().__init__()
        tracking = tracking or TrackingConfig()
        tags = {k: str(v) for k, v in (tags or {}).items()}
        self.local = ArchiveLogger(spool_folder(tags.get(TAG_SWEEP) or tracking.experiment), tags)
        self.local.run_name = tracking.run_name
        self.token = self.local.run_id  # the spool entry's name
        self.run_id: str | None = None
        self.error: str | None = None
        self.target = {"uri": tracking_uri(tracking), "experiment": tracking.experiment,
                       "experiment_id": tracking.experiment_id or os.environ.get("MLFLOW_EXPERIMENT_ID"),
                       "parent_run_id": tracking.parent_run_id, "run_name": tracking.run_name, "run_id": None}
        self.mlflow: MLflowLogger | None = None
        if not self.active:
            return
        bound_http_retries()
        self.errors = mlflow_errors()
        try:
            self.mlflow = MLflowLogger(tracking, tags=tags, run_id=run_id)
            self.run_id = self.target["run_id"] = self.mlflow.run_id
            self.target["experiment_id"] = self.mlflow.experiment_id
        except self.errors as exc:
            self._degrade(exc)

    @property
    def path(self) -> Path:
        return self.local.folder / f"{self.token}.json"

    def _degrade(self, exc: BaseException) -> None:
        self.error = f"{type(exc).__name__}: {str(exc).strip().splitlines()[0][:300] if str(exc).strip() else ''}"
        print(f"WARNING: MLflow failed ({self.error}); this run goes on in the local spool {self.path} "
              f"(upload with `harness sweep sync`)", file=sys.stderr, flush=True)
        if self.mlflow is not None and self.mlflow._monitor is not None:
            try:
                self.mlflow._monitor.finish()
            except Exception:  # noqa: BLE001
                pass
            self.mlflow._monitor = None
        self.mlflow = None
        self._flush()

    def _flush(self) -> None:
        """Rewrite the spool entry: files, record, then the pending marker (sync reads the marker last written)."""
        if not (self.local.tags.get(TAG_KEY) or self.local.tags.get(LEGACY_TAG_KEY)):
            return  # `harness train` tags the run after its params: the entry is written from then on
        folder = self.local.folder
        write_files(folder / f"{self.token}{FILES}", self.local.artifacts)
        write_json(self.path, self.local.record())
        write_json(folder / f"{self.token}{PENDING}", {**self.target, "error": self.error})

    def _tee(self, local, remote) -> None:
        """``local()`` always; ``remote(mlflow_logger)`` while MLflow works; the spool rewritten once it does not."""
        local()
        if self.mlflow is not None:
            try:
                remote(self.mlflow)
                return
            except self.errors as exc:
                self._degrade(exc)
                return
        self._flush()

    def _log_params(self, params):
        self._tee(lambda: self.local._log_params(params), lambda m: m._log_params(params))

    def _log_metrics(self, metrics, step):
        self._tee(lambda: self.local._log_metrics(metrics, step), lambda m: m._log_metrics(metrics, step))

    def _log_artifact(self, path, artifact_path):
        self._tee(lambda: self.local._log_artifact(path, artifact_path), lambda m: m._log_artifact(path, artifact_path))

    def _log_dict(self, data, name):
        self._tee(lambda: self.local._log_dict(data, name), lambda m: m._log_dict(data, name))

    def _log_text(self, text, name):
        self._tee(lambda: self.local._log_text(text, name), lambda m: m._log_text(text, name))

    def _set_tags(self, tags):
        self._tee(lambda: self.local._set_tags(tags), lambda m: m._set_tags(tags))

    def _log_ranks(self, part, above, tied, digest):
        self._tee(lambda: self.local._log_ranks(part, above, tied, digest), lambda m: m._log_ranks(part, above, tied, digest))

    def _finish(self, status):
        def local():
            self.local.status, self.local.end_time = status, now_ms()

        self._tee(local, lambda m: m._finish(status))

    @property
    def spooled(self) -> bool:
        """True when this run lives (also) in the spool, waiting for a sync."""
        return self.error is not None


