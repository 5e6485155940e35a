"""``harness sweep FILE [--list | --index N | --local | --submit | --finalize]`` and ``harness sweep sync FILE``: the
command line of the runner."""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from pathlib import Path

from harness.sweep.adopt import adopt
from harness.sweep.cell import archived_keys, cell_status, run_cell
from harness.sweep.grid import Sweep, _label, check_names, load_sweep, select
from harness.sweep.local import run_archive, run_local
from harness.sweep.slurm import active_tasks, submit
from harness.sweep.sync import main as sync_main
from harness.sweep.tracking import context_from_env, finalize


DEFAULT_SWEEP = "sweeps/figure4.yaml"  # the paper's Figure 4 grid; relative to the repository root


def list_cells(sweep: Sweep, where: list[str] | None = None, archive: str | Path | None = None) -> str:
    """One line per cell: index, key, run name, overrides (the ``key=value`` pairs ``harness train`` takes); with
    ``archive``, then where each cell stands (:func:`~harness.sweep.cell.cell_status`: finished in that archive,
    epochs done by its checkpoint, or ``-``)."""
    cells = select(sweep.cells(), where)
    lines = [f"# {sweep.name}: {len(cells)} cells -> experiment {sweep.experiment!r}"]
    finished = archived_keys(Path(archive) / sweep.name) if archive else set()
    for cell in cells:
        values = " ".join(f"{k}={_label(v)}" for k, v in cell.values.items())
        status = f"  {cell_status(sweep, cell, finished)}" if archive else ""
        lines.append(f"{cell.index:4d}  {cell.key}  {cell.name}  {values}{status}")
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="harness sweep", description="Run a sweep grid (sweeps/*.yaml) locally or on Slurm.")
    p.add_argument("file", nargs="?", default=DEFAULT_SWEEP, help=f"sweep YAML: base config + grid (default {DEFAULT_SWEEP})")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="config override applied to every cell (repeatable)")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--list", action="store_true", help="print the cells (index, key, overrides)")
    mode.add_argument("--index", type=int, help="run one cell (default: $SLURM_ARRAY_TASK_ID)")
    mode.add_argument("--local", action="store_true", help="run every unfinished cell on this machine")
    mode.add_argument("--submit", action="store_true", help="create experiment + parent run, sbatch the array")
    mode.add_argument("--finalize", action="store_true", help="close the parent run, log the cells table")
    mode.add_argument("--adopt", nargs="+", metavar="SRC", help="with --archive: copy the FINISHED cells of archive(s) "
                      "SRC that are cells of this sweep too (same key) into it, relabelled as this sweep's cells")
    p.add_argument("-j", "--jobs", type=int, default=1, help="--local: processes at once")
    p.add_argument("--max-parallel", type=int, help="--submit: array tasks at once (%%N)")
    p.add_argument("--sbatch-arg", action="append", default=[], metavar="ARG",
                   help="--submit: extra sbatch argument for the array, e.g. --sbatch-arg=--gres=gpu:1 "
                        "(also from $HARNESS_SBATCH_ARGS)")
    p.add_argument("--logs", help="folder for per-cell logs (default results/sweeps/<name>)")
    p.add_argument("--where", action="append", default=[], metavar="AXIS=LABEL[,LABEL]",
                   help="--local / --list: only the cells with these axis labels, e.g. --where dataset=ml-1m --where seed=1,2")
    p.add_argument("--archive", metavar="DIR", help="--local / --index / --adopt: record cells in the archive DIR/<sweep name>/ "
                                                    "instead of MLflow (see harness archive import); --list: "
                                                    "show each cell's status there (finished, checkpoint epochs)")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["sync"]:  # `harness sweep sync FILE|DIR`: upload the spool
        return sync_main(argv[1:])
    args = parse_args(argv)
    if not Path(args.file).is_file():  # before any heavy import: a wrong argument fails in the first seconds
        print(f"harness sweep: sweep file {args.file!r} not found (in {Path.cwd()}); "
              f"usage: harness sweep [SWEEP.yaml] [--set key=value ...] [--list | --local | --submit ...]", file=sys.stderr)
        return 2
    sweep = load_sweep(args.file, args.overrides)
    if args.adopt:
        if not args.archive:
            print("harness sweep: --adopt needs --archive DIR (where this sweep's records go)", file=sys.stderr)
            return 2
        keys = adopt(sweep, args.adopt, args.archive)
        print(f"adopted {len(keys)} cells into {Path(args.archive) / sweep.name}")
        return 0
    if args.index is None and not (args.list or args.local or args.submit or args.finalize):
        if "SLURM_ARRAY_TASK_ID" not in os.environ:
            print(list_cells(sweep))
            return 0
        args.index = int(os.environ["SLURM_ARRAY_TASK_ID"])
    if args.list:
        print(list_cells(sweep, args.where, args.archive))
        return 0
    if args.index is not None:
        return run_cell(sweep, args.index, archive_dir=args.archive)
    if args.finalize:
        counts = finalize(sweep, context_from_env(sweep), active_tasks(sweep))
        return 0 if counts.get("FINISHED", 0) + counts.get("QUEUED", 0) == len(sweep.cells()) else 1
    check_names(sweep.cells())
    if args.local and args.archive:
        return run_archive(sweep, args.archive, max(1, args.jobs), args.logs, args.where)
    if args.local:
        return run_local(sweep, max(1, args.jobs), args.logs, args.where)
    extra = shlex.split(os.environ.get("HARNESS_SBATCH_ARGS", "")) + args.sbatch_arg
    submit(sweep, extra, args.max_parallel, args.logs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
