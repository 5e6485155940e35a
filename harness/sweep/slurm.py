"""Fan-out on Slurm: one array job of the unfinished cells (``slurm/cell.sh``) and a finalize job after it."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from harness import run_schema as schema
from harness.sweep.grid import Sweep
from harness.sweep.local import cell_argv, log_dir, pre_encode, task_env
from harness.sweep.tracking import finalize, pending, prepare, set_tags

REPO = Path(__file__).resolve().parents[2]


def slurm_script(name: str) -> Path:
    """``slurm/<name>`` of this checkout (or ``$HARNESS_SLURM_DIR``)."""
    root = os.environ.get("HARNESS_SLURM_DIR")
    path = Path(root) / name if root else REPO / "slurm" / name
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found; set HARNESS_SLURM_DIR to the folder holding {name}")
    return path


def array_spec(indices: list[int]) -> str:
    """[0, 1, 2, 5, 7, 8] -> ``0-2,5,7-8`` (sbatch --array syntax)."""
    parts, start = [], None
    for i, idx in enumerate(indices):
        start = idx if start is None else start
        if i + 1 == len(indices) or indices[i + 1] != idx + 1:
            parts.append(str(idx) if start == idx else f"{start}-{idx}")
            start = None
    return ",".join(parts)


def sweep_id(sweep: Sweep) -> str:
    """The sweep's identity (name + overrides; also its parent run's tag): the array job's ``--comment``."""
    return schema.sweep_parent_tags(sweep.name, sweep.overrides)[schema.TAG_SWEEP_ID]


def active_tasks(sweep: Sweep) -> set[int]:
    """Cell indices of this sweep's array tasks that Slurm still holds (queued, running, requeued), from any
    submission: ``squeue`` by job name and comment. Empty where there is no Slurm."""
    try:
        proc = subprocess.run(["squeue", "-h", "-r", "-n", sweep.name, "-o", "%K|%k"], capture_output=True,
                              text=True, check=False)
    except FileNotFoundError:
        return set()
    if proc.returncode != 0:
        raise RuntimeError(f"squeue failed ({proc.returncode}): {proc.stderr.strip()}")
    rows = (line.split("|", 1) for line in proc.stdout.splitlines() if "|" in line)
    return {int(task) for task, comment in rows if comment.strip() == sweep_id(sweep) and task.isdigit()}


def sbatch(args: list[str], env: dict[str, str]) -> str:
    """Run ``sbatch --parsable``; return the job id."""
    proc = subprocess.run(["sbatch", "--parsable", *args], env=env, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"sbatch {' '.join(args)} failed ({proc.returncode}): {proc.stderr.strip()}")
    return proc.stdout.strip().split(";")[0]


def submit(sweep: Sweep, sbatch_args: list[str] | None = None, max_parallel: int | None = None,
           logs: str | Path | None = None) -> list[str]:
    """Create experiment + parent once, then one array job of the unfinished cells and a finalize job after it.
    Cells that another submission of this sweep has queued or running in Slurm are left to it.

    Returns the submitted job ids (empty when every cell already FINISHED or is in Slurm).
    """
    ctx = prepare(sweep)
    active = active_tasks(sweep)
    todo = [c for c in pending(sweep, ctx) if c.index not in active]
    if not todo and active:
        print(f"{sweep.name}: {len(active)} cells queued or running in Slurm (another submission), the rest "
              "FINISHED; nothing to submit", flush=True)
        return []
    if not todo:
        print(f"{sweep.name}: all {len(sweep.cells())} cells FINISHED in MLflow; nothing to submit", flush=True)
        finalize(sweep, ctx)
        return []
    pre_encode(todo)
    env, logs, extra = task_env(ctx), log_dir(sweep, logs), list(sbatch_args or [])
    array = array_spec([c.index for c in todo]) + (f"%{max_parallel}" if max_parallel else "")
    job = sbatch([f"--array={array}", f"--job-name={sweep.name}", f"--comment={sweep_id(sweep)}", f"--output={logs}/%x-%A_%a.out", *extra,
                  str(slurm_script("cell.sh")), *cell_argv(sweep)], env)
    fin = sbatch([f"--dependency=afterany:{job}", f"--job-name={sweep.name}-finalize", f"--output={logs}/%x-%j.out",
                  str(slurm_script("finalize.sh")), *cell_argv(sweep)], env)
    set_tags(ctx, {schema.TAG_ARRAY_JOB: job, schema.TAG_FINALIZE_JOB: fin})
    print(f"{sweep.name}: submitted array job {job} --array={array} ({len(todo)} of {len(sweep.cells())} cells), "
          f"finalize job {fin}; logs in {logs}" + (f"; {len(active)} cells left to another submission" if active else ""),
          flush=True)
    return [job, fin]
