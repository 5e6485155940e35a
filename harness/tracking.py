"""Run tracking behind one small interface: MLflow for real runs, in-memory for tests.

Loggers handle ranks themselves: on any process other than global rank 0 every call is a
no-op, so training code never checks ranks. ``MLflowLogger`` talks to an ``MlflowClient``
(no global active run) and never calls ``mlflow.set_experiment``: several processes creating
the same experiment at once can silently land in the Default experiment (see
shared/docs/SLURM_MLFLOW_RECIPE.md), so it takes an experiment id when the sweep
submitter provides one and otherwise creates-or-gets the experiment, tolerating the race.

MLflow metric names may not contain ``@``; the harness' canonical names (``valid/hr@20``)
are stored in MLflow as ``valid/hr_at_20`` (``run_schema.mlflow_key``; ``run_schema.harness_key`` maps back).
The other MLflow client helpers live here too: :func:`open_store` and :func:`ensure_experiment`.
"""

from __future__ import annotations

import abc
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from harness.config import TrackingConfig
from harness.run_schema import TAG_ERROR, TAG_PARENT, mlflow_key
from harness.run_schema import harness_key  # noqa: F401  (re-exported: the metric names' inverse, next to mlflow_key)

DEFAULT_URI = "sqlite:///mlruns.db"
STATUSES = ("FINISHED", "FAILED", "KILLED")
RANKS_DIR = "ranks"  # artifact folder of Logger.log_ranks: ranks/<part>.npz


def is_rank_zero() -> bool:
    """True on the process that should record the run (global rank 0, or not distributed)."""
    try:
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            return dist.get_rank() == 0
    except ImportError:  # pragma: no cover - torch is a dependency
        pass
    return int(os.environ.get("RANK", "0")) == 0


def flatten(params: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested dict -> ``{"a.b": v}``."""
    out: dict[str, Any] = {}
    for key, value in params.items():
        if isinstance(value, dict):
            out.update(flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def check_ranks(above, tied) -> tuple[np.ndarray, np.ndarray]:
    """``above`` / ``tied`` as int32 ``[n]`` arrays of non-negative counts, or a clear error."""
    out = []
    for name, values in (("above", above), ("tied", tied)):
        arr = np.asarray(values.cpu() if hasattr(values, "cpu") else values)
        if arr.ndim != 1 or (arr.size and not np.issubdtype(arr.dtype, np.integer)):
            raise ValueError(f"rank counts {name!r} must be a 1-D integer array; got dtype {arr.dtype}, shape {arr.shape}")
        if arr.size and (arr.min() < 0 or arr.max() > np.iinfo(np.int32).max):
            raise ValueError(f"rank counts {name!r} must be non-negative int32 counts")
        out.append(arr.astype(np.int32))
    if out[0].shape != out[1].shape:
        raise ValueError(f"above and tied must have one entry per target; got {out[0].shape} and {out[1].shape}")
    return out[0], out[1]


def save_ranks(path: str | Path, above: np.ndarray, tied: np.ndarray, digest: str) -> Path:
    """Write rank counts as a compressed ``.npz`` (``above``, ``tied`` int32, ``digest``)."""
    above, tied = check_ranks(above, tied)
    with open(path, "wb") as f:  # a file object: np.savez_compressed would otherwise append ".npz"
        np.savez_compressed(f, above=above, tied=tied, digest=np.array(digest))
    return Path(path)


def load_ranks(path: str | Path) -> dict[str, Any]:
    """``{"above": int32 [n], "tied": int32 [n], "digest": str}`` from a file written by :func:`save_ranks`."""
    with np.load(path, allow_pickle=False) as data:
        return {"above": data["above"].astype(np.int32), "tied": data["tied"].astype(np.int32), "digest": str(data["digest"])}


class Logger(abc.ABC):
    """What a training run records. Subclasses implement the ``_``-prefixed methods; rank checks live here."""

    def __init__(self) -> None:
        self.active = is_rank_zero()

    def log_params(self, params: dict[str, Any]) -> None:
        """Run parameters; nested dicts are flattened to dotted keys."""
        if self.active:
            self._log_params(flatten(params))

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        if self.active:
            self._log_metrics({k: float(v) for k, v in metrics.items()}, step)

    def log_artifact(self, path: str | Path, artifact_path: str | None = None) -> None:
        if self.active:
            self._log_artifact(Path(path), artifact_path)

    def log_dict(self, data: dict, name: str) -> None:
        """A dict as a JSON/YAML artifact (format from ``name``'s suffix)."""
        if self.active:
            self._log_dict(data, name)

    def log_text(self, text: str, name: str) -> None:
        if self.active:
            self._log_text(text, name)

    def set_tags(self, tags: dict[str, Any]) -> None:
        if self.active:
            self._set_tags({k: str(v) for k, v in tags.items()})

    def log_ranks(self, part: str, above: np.ndarray, tied: np.ndarray, targets_digest: str) -> None:
        """Per-target rank counts of one evaluation part (``"test"``), for paired significance tests.

        ``above[i]``: items scored strictly above target i; ``tied[i]``: other items tied with it (same
        target order for every method on one dataset/protocol; ``targets_digest`` hashes that target
        list so a paired test can refuse unaligned runs). Stored as artifact ``ranks/<part>.npz``
        (``above``/``tied`` int32, ``digest``; :func:`load_ranks` reads it back).
        """
        if not self.active:
            return
        above, tied = check_ranks(above, tied)
        if not part or "/" in part:
            raise ValueError(f"rank part must be a plain name like 'test'; got {part!r}")
        self._log_ranks(part, above, tied, str(targets_digest))

    def _log_ranks(self, part: str, above: np.ndarray, tied: np.ndarray, digest: str) -> None:
        """Default: a compressed ``.npz`` written to a temporary folder and logged through ``_log_artifact``."""
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / f"{part}.npz"
            save_ranks(path, above, tied, digest)
            self._log_artifact(path, RANKS_DIR)

    def finish(self, status: str = "FINISHED", error: str | None = None) -> None:
        """End the run; ``error`` (e.g. a traceback) is kept as ``error.txt`` and an ``error`` tag."""
        if status not in STATUSES:
            raise ValueError(f"unknown run status {status!r}; valid: {', '.join(STATUSES)}")
        if self.active:
            if error:
                self._log_text(error, "error.txt")
                self._set_tags({TAG_ERROR: error.strip().splitlines()[-1][:500] if error.strip() else "error"})
            self._finish(status)

    def snapshot(self) -> dict[str, Any]:
        """What an epoch checkpoint must keep for a resumed run to continue this log ({}: the store keeps it,
        as MLflow does; see :meth:`harness.archive.ArchiveLogger.snapshot`)."""
        return {}

    @abc.abstractmethod
    def _log_params(self, params: dict[str, Any]) -> None: ...

    @abc.abstractmethod
    def _log_metrics(self, metrics: dict[str, float], step: int | None) -> None: ...

    @abc.abstractmethod
    def _log_artifact(self, path: Path, artifact_path: str | None) -> None: ...

    @abc.abstractmethod
    def _log_dict(self, data: dict, name: str) -> None: ...

    @abc.abstractmethod
    def _log_text(self, text: str, name: str) -> None: ...

    @abc.abstractmethod
    def _set_tags(self, tags: dict[str, str]) -> None: ...

    @abc.abstractmethod
    def _finish(self, status: str) -> None: ...


class MemoryLogger(Logger):
    """Keeps everything in lists/dicts; for tests and for callers that only want the numbers."""

    def __init__(self) -> None:
        super().__init__()
        self.params: dict[str, Any] = {}
        self.metrics: list[tuple[str, float, int | None]] = []
        self.artifacts: dict[str, Any] = {}
        self.tags: dict[str, str] = {}
        self.ranks: dict[str, dict[str, Any]] = {}  # part -> {"above": int32, "tied": int32, "digest": str}
        self.status: str | None = None

    def history(self, name: str) -> list[tuple[int | None, float]]:
        """(step, value) pairs logged for ``name``, in order."""
        return [(step, value) for key, value, step in self.metrics if key == name]

    def names(self) -> set[str]:
        return {key for key, _, _ in self.metrics}

    def _log_params(self, params):
        self.params.update(params)

    def _log_metrics(self, metrics, step):
        self.metrics += [(k, v, step) for k, v in metrics.items()]

    def _log_artifact(self, path, artifact_path):
        self.artifacts[str(Path(artifact_path or "") / path.name)] = path.read_bytes()

    def _log_dict(self, data, name):
        self.artifacts[name] = data

    def _log_text(self, text, name):
        self.artifacts[name] = text

    def _set_tags(self, tags):
        self.tags.update(tags)

    def _log_ranks(self, part, above, tied, digest):
        super()._log_ranks(part, above, tied, digest)
        self.ranks[part] = {"above": above, "tied": tied, "digest": digest}

    def _finish(self, status):
        self.status = status


def tracking_uri(tracking: TrackingConfig) -> str:
    """``tracking.uri``, else ``$MLFLOW_TRACKING_URI``, else a sqlite file in the working directory."""
    return tracking.uri or os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_URI


def open_store(uri: str):
    """An ``MlflowClient`` on ``uri``, the store's schema created now (from one process, before any parallel
    writer: a sqlite store's first open migrates it)."""
    from mlflow import MlflowClient

    if uri.startswith("sqlite:///"):
        Path(uri[len("sqlite:///"):]).parent.mkdir(parents=True, exist_ok=True)
    client = MlflowClient(uri)
    client.search_experiments(max_results=1)
    return client


def run_exists(uri: str, run_id: str) -> bool:
    """Whether the store has run ``run_id``; an unreachable store counts as yes (the spool takes over, and the
    run is continued once it is back)."""
    from mlflow.exceptions import MlflowException

    try:
        open_store(uri).get_run(run_id)
    except MlflowException as exc:
        return exc.error_code != "RESOURCE_DOES_NOT_EXIST"
    except OSError:
        return True
    return True


def ensure_experiment(client, name: str, restore: bool = False) -> str:
    """The id of experiment ``name``, created when missing (a concurrent creator is tolerated by re-reading);
    ``restore``: a deleted one is restored."""
    from mlflow.exceptions import MlflowException

    for _ in range(5):
        found = client.get_experiment_by_name(name)
        if found is not None:
            if restore and found.lifecycle_stage == "deleted":
                client.restore_experiment(found.experiment_id)
            return found.experiment_id
        try:
            return client.create_experiment(name)
        except MlflowException:  # another process created it between our get and create
            time.sleep(0.2)
    raise RuntimeError(f"could not get or create MLflow experiment {name!r}")


def _experiment_id(client, tracking: TrackingConfig) -> str:
    """Explicit id (config or ``$MLFLOW_EXPERIMENT_ID``), else get-or-create by name, race-tolerant."""
    explicit = tracking.experiment_id or os.environ.get("MLFLOW_EXPERIMENT_ID")
    return str(explicit) if explicit else ensure_experiment(client, tracking.experiment)


class MLflowLogger(Logger):
    """One MLflow run (child of ``tracking.parent_run_id`` when set), written through ``MlflowClient``."""

    def __init__(
        self, tracking: TrackingConfig | None = None, tags: dict[str, Any] | None = None, system_metrics_interval: float = 10.0,
        run_id: str | None = None,
    ):
        super().__init__()
        tracking = tracking or TrackingConfig()
        self.uri = tracking_uri(tracking)
        self.run_id: str | None = None
        self.experiment_id: str | None = None
        self._monitor = None
        if not self.active:
            return
        from mlflow import MlflowClient

        self.client = MlflowClient(self.uri)
        self.experiment_id = _experiment_id(self.client, tracking)
        run_tags = {k: str(v) for k, v in (tags or {}).items()}
        if tracking.parent_run_id:
            run_tags[TAG_PARENT] = tracking.parent_run_id
        if run_id:  # resume: continue an existing run (a requeued cell), RUNNING again
            self._reopen(run_id)
            self._set_tags(run_tags)
        else:
            self.run_id = self.client.create_run(self.experiment_id, tags=run_tags, run_name=tracking.run_name).info.run_id
        if tracking.system_metrics:
            self._start_system_metrics(system_metrics_interval)

    def _reopen(self, run_id: str) -> None:
        """Continue run ``run_id``: status RUNNING, the ``error`` tag of its interruption dropped."""
        run = self.client.get_run(run_id)
        self.run_id, self.experiment_id = run_id, run.info.experiment_id
        self.client.update_run(run_id, status="RUNNING")
        if TAG_ERROR in run.data.tags:
            self.client.delete_tag(run_id, TAG_ERROR)

    def _start_system_metrics(self, interval: float) -> None:
        """CPU / memory / disk (and GPU when available) sampled every ``interval`` s into ``system/*``."""
        from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor

        self._monitor = SystemMetricsMonitor(self.run_id, sampling_interval=interval, tracking_uri=self.uri)
        self._monitor.start()

    def _log_params(self, params):
        from mlflow.entities import Param

        items = [Param(k, str(v)[:6000]) for k, v in params.items()]
        for lo in range(0, len(items), 100):  # MLflow's per-batch parameter limit
            self.client.log_batch(self.run_id, params=items[lo : lo + 100])

    def _log_metrics(self, metrics, step):
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        items = [Metric(mlflow_key(k), v, now, step or 0) for k, v in metrics.items()]
        for lo in range(0, len(items), 1000):
            self.client.log_batch(self.run_id, metrics=items[lo : lo + 1000])

    def _log_artifact(self, path, artifact_path):
        self.client.log_artifact(self.run_id, str(path), artifact_path)

    def _log_dict(self, data, name):
        self.client.log_dict(self.run_id, data, name)

    def _log_text(self, text, name):
        self.client.log_text(self.run_id, text, name)

    def _set_tags(self, tags):
        from mlflow.entities import RunTag

        self.client.log_batch(self.run_id, tags=[RunTag(k, v) for k, v in tags.items()])

    def _finish(self, status):
        if self._monitor is not None:
            self._monitor.finish()
            self._monitor = None
        self.client.set_terminated(self.run_id, status=status)
