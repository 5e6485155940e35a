"""Fan-out on this machine: every unfinished cell in its own process, ``jobs`` at a time (into MLflow or an
archive folder), after encoding the features they share once."""

from __future__ import annotations

import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path

from harness.data.paths import cache_root
from harness.encoding import EncodeOptions, encode_many, summary
from harness.encoding.dist import end_distributed
from harness.progress import progress
from harness.sweep.cell import archive_folder, archived_keys, with_checkpoint
from harness.sweep.grid import Cell, Sweep, select
from harness.sweep.sync import sync_sweep
from harness.sweep.tracking import Context, finalize, finished, pending, prepare


def pre_encode(cells: list[Cell]) -> None:
    """Encode every (dataset, encoder, modality) the cells need, once, before they fan out. A target that cannot be
    encoded (a remote-code checkpoint without ``features.trust_remote_code``, a dataset without images ...) is
    reported here and fails only its own cells, not the whole sweep."""
    needs = sorted({(c.config.dataset.name, c.config.dataset.data_dir or "", enc, mod, c.config.features.cache_dir or "",
                     c.config.features.trust_remote_code)
                    for c in cells
                    for mod, enc in (("text", c.config.features.text_encoder), ("image", c.config.features.image_encoder))
                    if enc})
    if not needs:
        return
    outcomes = encode_many((name, data_dir or None, EncodeOptions(encoder, modality=modality, cache_dir=cache or None,
                                                                   trust_remote_code=trust))
                           for name, data_dir, encoder, modality, cache, trust in needs)
    end_distributed()  # a ZeRO-3 encoder's group of one: the cells started next must not inherit its rank
    print(summary(outcomes), flush=True)


def task_env(ctx: Context | None, threads: int | None = None) -> dict[str, str]:
    """Environment for cell processes: the context, one shared absolute cache, no inherited Slurm job ids."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_") or k == "SLURM_CONF"}
    env.update(ctx.env() if ctx is not None else {})
    env["HARNESS_CACHE_DIR"] = str(cache_root())
    if threads:
        env.setdefault("OMP_NUM_THREADS", str(threads))
    return env


def cell_argv(sweep: Sweep) -> list[str]:
    """Arguments that make a child process see the same sweep (file + overrides)."""
    assert sweep.path is not None, "a sweep run in other processes needs its file"
    return [str(sweep.path.resolve())] + [a for o in sweep.overrides for a in ("--set", o)]


def log_dir(sweep: Sweep, logs: str | Path | None = None) -> Path:
    path = Path(logs) if logs else Path("results") / "sweeps" / sweep.name
    path.mkdir(parents=True, exist_ok=True)
    return path.resolve()


def _run_one(sweep: Sweep, cell: Cell, env: dict[str, str], logs: Path, echo: bool = False, extra: list[str] = ()) -> int:
    """Run one cell in its own process, its output in the cell's log (and on the terminal with ``echo``)."""
    cmd = [sys.executable, "-m", "harness.sweep", *cell_argv(sweep), "--index", str(cell.index), *extra]
    with open(logs / f"cell-{cell.index:04d}.log", "wb", buffering=0) as out:  # unbuffered: `tail -f` follows it
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        for chunk in iter(lambda: proc.stdout.read1(4096), b""):  # read1: progress bars arrive as they draw
            out.write(chunk)
            if echo:
                sys.stderr.buffer.write(chunk)
                sys.stderr.flush()
        return proc.wait()


def _fan_out(sweep: Sweep, todo: list[Cell], jobs: int, env: dict[str, str], logs: Path, extra: list[str] = ()) -> None:
    """``todo`` in ``jobs`` processes at a time; a failed cell's log is named, the sweep goes on."""
    # off a terminal (nohup, Slurm): one plain line per finished cell, no carriage returns in the log
    with ThreadPoolExecutor(max_workers=jobs) as pool, progress(total=len(todo), desc="cells", every_s=0) as bar:
        futures = {pool.submit(_run_one, sweep, cell, env, logs, jobs == 1, extra): cell for cell in todo}
        for future in as_completed(futures):
            cell = futures[future]
            if future.result() != 0:
                bar.write(f"cell {cell.index} [{cell.name}] failed: {logs / f'cell-{cell.index:04d}.log'}")
            bar.update()


def resuming(sweep: Sweep, todo: list[Cell]) -> str:
    n = with_checkpoint(sweep, todo)
    return f" ({n} from an epoch checkpoint)" if n else ""


def run_local(sweep: Sweep, jobs: int = 1, logs: str | Path | None = None, where: list[str] | None = None) -> int:
    """Every unfinished cell on this machine, ``jobs`` processes at a time; 0 when all cells FINISHED."""
    ctx = prepare(sweep)
    sync_sweep(sweep)  # runs an earlier outage left in the spool, before deciding what is pending
    chosen = {c.key for c in select(sweep.cells(), where)}
    todo = [c for c in pending(sweep, ctx) if c.key in chosen]
    print(f"{sweep.name}: {len(chosen)} cells, {len(todo)} to run{resuming(sweep, todo)}, {jobs} at a time", flush=True)
    pre_encode(todo)
    env, logs = task_env(ctx, max(1, (os.cpu_count() or 1) // jobs)), log_dir(sweep, logs)
    _fan_out(sweep, todo, jobs, env, logs)
    finalize(sweep, ctx)
    return 0 if chosen <= finished(ctx) else 1


def run_archive(sweep: Sweep, root: str | Path, jobs: int = 1, logs: str | Path | None = None,
                where: list[str] | None = None) -> int:
    """Every cell not yet in the archive, on this machine, ``jobs`` processes at a time, without MLflow
    (e.g. a GPU box that has none); ``harness archive import`` later brings the records into MLflow."""
    folder = archive_folder(sweep, root)
    chosen = select(sweep.cells(), where)
    done = archived_keys(folder)  # read the records once, not once per cell
    todo = [c for c in chosen if c.key not in done]
    print(f"{sweep.name}: {len(chosen)} cells, {len(todo)} to run{resuming(sweep, todo)} into {folder}, {jobs} at a time",
          flush=True)
    pre_encode(todo)
    env, logs = task_env(None, max(1, (os.cpu_count() or 1) // jobs)), log_dir(sweep, logs)
    _fan_out(sweep, todo, jobs, env, logs, ["--archive", str(Path(root).resolve())])
    return 0 if {c.key for c in chosen} <= archived_keys(folder) else 1
