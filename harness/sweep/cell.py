"""One cell: its tags and config, run as one MLflow child run (or one archive record), closed whatever happens."""

from __future__ import annotations

import contextlib
import copy
import os
import signal
import subprocess
import threading
import traceback
from pathlib import Path

from harness import archive, checkpoint
from harness import config as C
from harness import run_schema as schema
from harness.data.paths import cache_root
from harness.sweep.grid import Cell, Sweep
from harness.sweep.sync import finished_if_reachable
from harness.sweep.tracking import Context, context_from_env, sweep_tags
from harness.tracking import MLflowLogger


def cell_tags(sweep: Sweep, cell: Cell) -> dict[str, str]:
    """Tags that identify the cell in MLflow (sweep, axis labels, Slurm ids) on top of the run's own
    (``run_schema.run_tags``: what it computes; the encoder tags and metrics are logged by the run)."""
    return schema.cell_tags(cell.config, sweep.name, cell.index, cell.grids, cell.labels)


def checkpoint_dir(sweep: Sweep, cell: Cell) -> Path:
    """``<root>/<sweep>/<cell key>/``; root: the sweep's ``train.checkpoint_dir``, else ``<cache root>/checkpoints``."""
    root = cell.config.train.checkpoint_dir or cache_root() / "checkpoints"
    return Path(root).resolve() / sweep.name / cell.key


def with_checkpoint(sweep: Sweep, cells: list[Cell]) -> int:
    """How many of ``cells`` left an epoch checkpoint (a killed or requeued run): they resume, not restart."""
    return sum(checkpoint.path(checkpoint_dir(sweep, c)).is_file() for c in cells)


def cell_status(sweep: Sweep, cell: Cell, finished: set[str]) -> str:
    """``finished`` (its key is in ``finished``), ``checkpoint: 24/100 epochs`` (it resumes there), else ``-``."""
    if cell.key in finished:
        return "finished"
    saved = checkpoint.load(checkpoint_dir(sweep, cell))
    return f"checkpoint: {saved['epochs']}/{cell.config.train.epochs} epochs" if saved else "-"


def _cell_config(sweep: Sweep, cell: Cell, ctx: Context) -> C.Config:
    cfg = copy.deepcopy(cell.config)
    t = cfg.tracking
    t.uri, t.experiment_id, t.parent_run_id, t.run_name = ctx.uri, ctx.experiment_id, ctx.parent_run_id, cell.name
    cfg.train.checkpoint_dir = str(checkpoint_dir(sweep, cell))
    return cfg


class _Terminated(Exception):
    """SIGTERM (Slurm time limit, scancel) turned into an exception so the run is closed as KILLED."""


def _on_sigterm(signum, frame):
    def stop():
        raise _Terminated(f"terminated by signal {signum}")

    if not checkpoint.defer(stop):  # while an epoch is logged and checkpointed, at the end of that
        stop()  # else now; should Python swallow it (a finalizer), again at the end of the next epoch's commit


def _on_usr1(signum, frame):
    """Slurm's warning before the time limit (``--signal=B:USR1@300`` in slurm/cell.sh): requeue this task;
    Slurm then sends SIGTERM and starts it again, to resume from its last checkpoint."""
    job = os.environ["SLURM_JOB_ID"]
    print(f"cell: USR1 (time limit near): requeue job {job}", flush=True)
    subprocess.run(["scontrol", "requeue", job], check=False)


@contextlib.contextmanager
def _sigterm_raises():
    """While a cell runs, SIGTERM raises :class:`_Terminated` and, in a Slurm job, USR1 requeues it (main thread
    only; elsewhere a no-op)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {signal.SIGTERM: signal.signal(signal.SIGTERM, _on_sigterm)}
    if "SLURM_JOB_ID" in os.environ:
        previous[signal.SIGUSR1] = signal.signal(signal.SIGUSR1, _on_usr1)
    try:
        yield
    finally:
        checkpoint.cancel_deferred()
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _train(run, cfg: C.Config, logger) -> int:
    """``run(cfg, logger)`` (``harness.train.run``) with the MLflow run closed FINISHED, FAILED or KILLED."""
    try:
        metrics = run(cfg, logger)
    except (_Terminated, KeyboardInterrupt):
        logger.finish("KILLED", traceback.format_exc())
        print("cell killed", flush=True)
        return 143
    except Exception:  # noqa: BLE001 - a failing cell is recorded, not raised: the sweep goes on
        logger.finish("FAILED", traceback.format_exc())
        traceback.print_exc()
        return 1
    logger.finish("FINISHED")
    checkpoint.remove(cfg.train.checkpoint_dir)
    shown = {k: round(v, 4) for k, v in (metrics or {}).items() if schema.is_part_metric(k, "test")}
    print(f"finished: {shown}", flush=True)
    return 0


def archive_folder(sweep: Sweep, root: str | Path) -> Path:
    """``<root>/<sweep name>/``, with the sweep's description (``sweep.json``) written once."""
    folder = Path(root) / sweep.name
    if not (folder / archive.SWEEP_FILE).is_file():
        archive.write_sweep(folder, sweep.experiment, sweep_tags(sweep), run_name=f"sweep:{sweep.name}")
    return folder


def archived_keys(folder: Path) -> set[str]:
    """Cell keys with a FINISHED record in the archive folder (what a rerun into it skips)."""
    records = (archive.load_record(f) for f in folder.glob("*.json") if f.name != archive.SWEEP_FILE)
    return {r["cell_key"] for r in records if r.get("status") == "FINISHED"}


def archive_logger(folder: Path, ckpt_dir: str, tags: dict[str, str], name: str) -> archive.ArchiveLogger:
    """The record a checkpoint in ``ckpt_dir`` was logged to (a restarted cell continues it), else a new one.
    A checkpoint without a record (written by an MLflow run of the cell) is dropped: training restarts."""
    saved = checkpoint.load(ckpt_dir)
    if saved is not None and saved.get("log"):
        logger = archive.ArchiveLogger.resume(folder, saved["log"])
        logger.set_tags(tags)  # this attempt's Slurm ids
        return logger
    if saved is not None:
        print(f"checkpoint in {ckpt_dir} was logged to MLflow, not to this archive; starting over", flush=True)
        checkpoint.remove(ckpt_dir)
    return archive.ArchiveLogger(folder, tags, name)


def run_cell(sweep: Sweep, index: int, ctx: Context | None = None, archive_dir: str | Path | None = None) -> int:
    """Run cell ``index`` as one MLflow child run (or, with ``archive_dir``, as one record in that archive folder,
    no MLflow needed); skip it when its key already FINISHED there. Returns an exit code."""
    cells = sweep.cells()
    if not 0 <= index < len(cells):
        raise IndexError(f"cell index {index} out of range: {sweep.name} has cells 0..{len(cells) - 1}")
    cell = cells[index]
    # imported here, before the run exists: torch and the models (~3 s measured), which listing and submitting skip
    from harness import train

    if archive_dir is not None:
        folder = archive_folder(sweep, archive_dir)
        if cell.key in archived_keys(folder):
            print(f"cell {index} [{cell.name}] key {cell.key} already in {folder}; skipped", flush=True)
            return 0
        print(f"cell {index} [{cell.name}] key {cell.key} -> {folder}", flush=True)
        cfg = copy.deepcopy(cell.config)
        cfg.train.checkpoint_dir = str(checkpoint_dir(sweep, cell))
        with _sigterm_raises():
            return _train(train.run, cfg, archive_logger(folder, cfg.train.checkpoint_dir, cell_tags(sweep, cell), cell.name))
    ctx = ctx or context_from_env(sweep)
    if cell.key in finished_if_reachable(ctx):
        print(f"cell {index} [{cell.name}] key {cell.key} already FINISHED; skipped", flush=True)
        return 0
    print(f"cell {index} [{cell.name}] key {cell.key}", flush=True)
    cfg = _cell_config(sweep, cell, ctx)
    with _sigterm_raises():
        try:
            tags = cell_tags(sweep, cell)
        except Exception:
            logger = MLflowLogger(cfg.tracking, tags=schema.failed_cell_tags(cell.key, sweep.name))
            logger.finish("FAILED", traceback.format_exc())
            raise
        return _train(train.run, cfg, train.open_logger(cfg, tags))
