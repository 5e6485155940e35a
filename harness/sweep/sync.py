"""``harness sweep sync FILE|DIR``: upload a sweep's spool (runs recorded while MLflow was unreachable)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from harness import run_schema as schema
from harness.archive.spool import bound_http_retries, spool_folder
from harness.archive.sync import sync_folder
from harness.sweep.grid import Sweep, load_sweep
from harness.sweep.tracking import Context, init_store


def sync_sweep(sweep: Sweep, uri: str | None = None) -> dict[str, int]:
    """Upload the sweep's spool folder; a summary line when there was anything to do."""
    folder = spool_folder(sweep.name)
    counts = sync_folder(folder, uri)
    if any(counts.values()):
        print(f"{sweep.name}: synced {counts['synced']} spooled runs ({counts['created']} created, {counts['points']} "
              f"metric points) from {folder}; {counts['running']} still running", flush=True)
    return counts


def finished_if_reachable(ctx: Context) -> set[str]:
    """The experiment's FINISHED cell keys, or none (with a warning) when MLflow cannot be reached: the cell then
    runs, spooling what it logs."""
    bound_http_retries()
    try:
        return schema.finished_keys(init_store(ctx.uri), ctx.experiment_id)
    except Exception as exc:  # noqa: BLE001 - an outage must not stop the cell
        print(f"WARNING: MLflow unreachable ({type(exc).__name__}); running the cell without the finished check",
              file=sys.stderr, flush=True)
        return set()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="harness sweep sync",
                                description="Upload runs kept in the local spool while MLflow was unreachable.")
    p.add_argument("target", help="sweep YAML (its spool folder <spool>/<sweep name>) or a spool folder")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--uri", help="tracking URI (default: the one each run was logging to)")
    args = p.parse_args(argv)
    if Path(args.target).is_dir():
        counts = sync_folder(args.target, args.uri)
        print(f"{args.target}: {counts}", flush=True)
    else:
        counts = sync_sweep(load_sweep(args.target, args.overrides), args.uri)
        if not any(counts.values()):
            print("nothing to sync", flush=True)
    return 0
