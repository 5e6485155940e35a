"""``harness archive export|import|list``."""

from __future__ import annotations

import argparse
import sys

from harness.archive.exchange import export, import_archive
from harness.archive.reading import Archive, _files
from harness.run_schema import AXES_PREFIX, mlflow_key, part_metric


def listing(paths) -> str:
    """One line per cell (newest record per key, any status): key, status, test HR@20, ranks, run name."""
    archive = Archive(paths)
    recs = archive.newest(status=None)
    sweep = archive.parent()
    head = f"# {archive.experiment() or '-'}: {len(recs)} cells"
    if sweep:
        head += ", " + ", ".join(f"{k}={v}" for k, v in sorted(sweep["tags"].items()) if k.startswith(AXES_PREFIX))
    lines = [head]
    for r in sorted(recs, key=lambda r: r.get("run_name") or r["cell_key"]):
        hr = r["metrics"].get(mlflow_key(part_metric("test", "hr@20")))
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
