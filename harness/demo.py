"""The main job on the embedded default (``make demo``): real data, a real encoder, CPU, sqlite MLflow.

Steps, each the same code a user runs by hand:
1. load the dataset the demo sweep names (ML-1M from $HARNESS_DATA_DIR) and print its statistics;
2. encode its item texts with each encoder the sweep names through ``harness/encode.py``;
3. train the sweep's grid with the sweep runner (``harness sweep sweeps/demo.yaml --local``);
4. build the Figure-4-style plot, the results table and the forgetting curves from MLflow (``harness report``).
Running it again reuses the feature cache and skips finished cells.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from harness import encode as encode_job
from harness import report as reports
from harness import sweep as sweep_runner
from harness.data import dataset_stats, load_dataset

REPO = Path(__file__).resolve().parents[1]
DEFAULT_SWEEP = REPO / "sweeps" / "demo.yaml"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="harness demo", description=__doc__.splitlines()[0])
    p.add_argument("--sweep", default=str(DEFAULT_SWEEP), help="sweep file (default sweeps/demo.yaml)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override applied to every cell (e.g. train.epochs=1)")
    p.add_argument("-j", "--jobs", type=int, default=2, help="cells trained at once (default 2: one core each on the 2-core box)")
    p.add_argument("--where", action="append", default=[], metavar="AXIS=LABEL[,LABEL]",
                   help="only these cells of the grid, e.g. --where seed=1")
    p.add_argument("--out", default="results/demo", help="where the plot and tables are written")
    return p.parse_args(argv)


def show_dataset(cells) -> list[tuple[str, str]]:
    """Print the statistics of each dataset the sweep uses; returns (dataset, encoder) pairs to encode."""
    pairs = []
    for name in sorted({c.config.dataset.name for c in cells}):
        stats = dataset_stats(load_dataset(name))
        print(f"[1/4] dataset {name}: {json.dumps(stats)}", flush=True)
        encoders = sorted({c.config.features.text_encoder for c in cells if c.config.dataset.name == name} - {None})
        pairs += [(name, enc) for enc in encoders]
    return pairs


def encode(pairs: list[tuple[str, str]]) -> None:
    """Encode through the encode job's own entry point (resumes / returns at once when cached)."""
    for dataset, encoder in pairs:
        print(f"[2/4] encoding {dataset} item texts with {encoder}", flush=True)
        encode_job.main(["--encoder", encoder, "--dataset", dataset, "--modality", "text", "--cpu"])


def train(sweep, jobs: int, where: list[str]) -> int:
    print(f"[3/4] training {len(sweep_runner.select(sweep.cells(), where))} cells of sweep {sweep.name!r}", flush=True)
    return sweep_runner.run_local(sweep, jobs=jobs, where=where)


def report(sweep, out: Path) -> list[Path]:
    print(f"[4/4] reports from MLflow experiment {sweep.experiment!r}", flush=True)
    files = reports.build("figure4", sweep.experiment, out=out)
    files += reports.build("table2", sweep.experiment, out=out)
    files += reports.build("forgetting", sweep.experiment, out=out)  # fine-tuned vs +KDSR, per epoch
    return files


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    start = time.perf_counter()
    sweep = sweep_runner.load_sweep(args.sweep, args.overrides)
    cells = sweep_runner.select(sweep.cells(), args.where)
    encode(show_dataset(cells))
    status = train(sweep, args.jobs, args.where)
    files = report(sweep, Path(args.out))
    uri = sweep_runner.store_uri(sweep)
    print(f"\ndone in {time.perf_counter() - start:.0f} s ({'all cells finished' if status == 0 else 'SOME CELLS FAILED'})")
    for path in files:
        print(f"  {path}")
    print(f"\nSee every run:  mlflow ui --backend-store-uri {uri} --host 127.0.0.1 --port 5000")
    return status


if __name__ == "__main__":
    raise SystemExit(main())
