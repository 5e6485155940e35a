"""``harness report figure4|table2|ablation|forgetting``: build one report from MLflow or archives."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from harness.archive import Archive
from harness.config import TrackingConfig
from harness.report.columns import in_sweep_order
from harness.report.figures import build_figure4
from harness.report.forgetting import build_forgetting
from harness.report.sources import MlflowSource, log_outputs
from harness.report.tables import build_tables
from harness.tracking import tracking_uri

KINDS = ("figure4", "table2", "ablation", "forgetting")


def build(kind: str, experiment: str | None = None, out: str | Path | None = None, log: bool = True,
          uri: str | None = None, archive=None, versus: list[str] | None = None) -> list[Path]:
    """Build one report from the experiment's runs; write it to ``out`` and (``log``) to MLflow.

    ``uri``: tracking URI (default ``$MLFLOW_TRACKING_URI``, else the harness' ``sqlite:///mlruns.db``).
    ``archive``: archive folder(s) (:mod:`harness.archive`) to read instead of MLflow; nothing is logged then.
    """
    if kind not in KINDS:
        raise ValueError(f"unknown report {kind!r}; valid: {', '.join(KINDS)}")
    if archive is not None:
        source = Archive(archive)
        name = experiment or source.experiment() or Path(archive if isinstance(archive, str | Path) else list(archive)[0]).name
        log = False
    else:
        import mlflow  # where used (~3.8 s measured): archive reports run without it

        if not experiment:
            raise ValueError("an MLflow report needs an experiment name (or read an archive)")
        mlflow.set_tracking_uri(tracking_uri(TrackingConfig(uri=uri)))
        source, name = MlflowSource(experiment), experiment
    out = Path(out or Path("results") / "report" / name)
    out.mkdir(parents=True, exist_ok=True)
    df, parent = in_sweep_order(source.runs()), source.parent()
    if kind == "figure4":
        files = build_figure4(df, out)
    elif kind == "forgetting":
        files = build_forgetting(df, parent, out, source.history)
    else:
        files = build_tables(df, parent, kind, out, source.ranks, versus)
    if log:
        log_outputs(experiment, parent, kind, files)
    return files


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="harness report", description="Paper figures and tables from MLflow runs or archives.")
    p.add_argument("kind", choices=KINDS)
    p.add_argument("--experiment", help="MLflow experiment of the sweep (required unless --archive)")
    p.add_argument("--archive", nargs="+", metavar="DIR", help="read archive folder(s) (harness archive) instead of MLflow")
    p.add_argument("--out", help="output folder (default results/report/<experiment>)")
    p.add_argument("--uri", help="tracking URI (default $MLFLOW_TRACKING_URI or sqlite:///mlruns.db)")
    p.add_argument("--no-log", action="store_true", help="do not log the outputs to MLflow")
    p.add_argument("--versus", action="append", default=[], metavar="ROW",
                   help="table2/ablation: also test every row against a reference row: the row with these labels and "
                        "its own on the other row axes, e.g. --versus method=finetune+async, --versus encoder=minilm-l6")
    args = p.parse_args(argv)
    if not args.experiment and not args.archive:
        p.error("--experiment is required (or read archives with --archive DIR ...)")
    try:
        files = build(args.kind, args.experiment, args.out, log=not args.no_log, uri=args.uri, archive=args.archive,
                      versus=args.versus)
    except (LookupError, ValueError) as err:  # no such experiment / runs, a --versus naming no row axis
        print(f"harness report: {err}", file=sys.stderr)
        return 2
    for path in files:
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
