"""The archive as a run logger: a cell run recorded in memory and written as one record at ``finish()``;
its :meth:`~ArchiveLogger.snapshot` rides in each epoch checkpoint, so a killed cell's record is continued."""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Any

from harness.archive.records import SCHEMA, latest, ranks_record, write_cell
from harness.run_schema import LEGACY_TAG_KEY, TAG_KEY, TAG_RUN_NAME, mlflow_key
from harness.tracking import MemoryLogger


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

    def stored_params(self) -> dict[str, str]:
        """Params as MLflow stores them (``str(value)[:6000]``)."""
        return {k: str(v)[:6000] for k, v in self.params.items()}

    def snapshot(self) -> dict[str, Any]:
        """The record so far in plain types (an epoch checkpoint keeps it; ``torch.load(weights_only=True)`` reads it):
        checkpoint and log are saved together, so a resumed run neither loses nor repeats an epoch."""
        return {"run_id": self.run_id, "run_name": self.run_name, "start_time": self.start_time,
                "tags": dict(self.tags), "params": self.stored_params(),
                "metrics": [[name, float(value), step] for name, value, step in self.metrics]}

    @classmethod
    def resume(cls, folder: str | Path, snapshot: dict[str, Any]) -> ArchiveLogger:
        """The logger a :meth:`snapshot` was taken of: same run id, start time, tags, params and metrics."""
        logger = cls(folder, snapshot["tags"], snapshot["run_name"])
        logger.run_id, logger.start_time = snapshot["run_id"], snapshot["start_time"]
        logger.params = dict(snapshot["params"])
        logger.metrics = [(name, value, step) for name, value, step in snapshot["metrics"]]
        return logger

    def cell_key(self) -> str:
        key = self.tags.get(TAG_KEY) or self.tags.get(LEGACY_TAG_KEY)
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
                "tags": dict(self.tags), "params": self.stored_params(),
                "metrics": latest(history), "history": history,
                "ranks": {part: ranks_record(r["above"], r["tied"], r["digest"]) for part, r in self.ranks.items()},
                "start_time": self.start_time, "end_time": self.end_time}

    def _finish(self, status):
        super()._finish(status)
        self.end_time = now_ms()
        self.path = write_cell(self.folder, self.record())

