"""CPU training epochs with the harness' malloc settings (harness/allocator.py) vs glibc's defaults, side by
side: the same cell trained in fresh processes, alternating. Prints JSON lines (one per process, then the ratio).

    python benchmarks/bench_allocator.py                          # ML-1M, SASRec dim 64, ID only, 1 thread
    python benchmarks/bench_allocator.py --repeats 2 dataset=ml-100k   # any harness.train overrides

Reference = glibc's defaults: the child gets MALLOC_MMAP_MAX_=65536 (glibc's own default value), which makes
``keep_freed_memory`` leave the allocator alone. Figure: the last epoch's seconds (the first warms up).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
from pathlib import Path

from harness.allocator import USER_KNOBS

BENCH_TRAIN = Path(__file__).with_name("bench_train.py")
DEFAULTS = ["dataset=ml-1m", "dataset.protocol=paper", "dataset.max_len=50", "model=sasrec", "model.items=id",
            "model.dim=64", "train.batch_size=512", "train.epochs=2", "train.device=cpu", "train.threads=1"]
GLIBC_DEFAULT = {"MALLOC_MMAP_MAX_": "65536"}


def train_once(overrides: list[str], reference: bool) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in USER_KNOBS}
    env.update(GLIBC_DEFAULT if reference else {})
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    out = subprocess.run([sys.executable, str(BENCH_TRAIN), "--eval-batches", "4096", *overrides], env=env,
                         capture_output=True, text=True, check=True).stdout
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    record = json.loads(out.strip().splitlines()[-1])
    return {"what": "cpu_train_epoch", "allocator": "glibc default" if reference else "ours",
            "epoch_s": record["epoch_s"], "user_s": round(after.ru_utime - before.ru_utime, 1),
            "system_s": round(after.ru_stime - before.ru_stime, 1),
            "minor_faults": after.ru_minflt - before.ru_minflt, "device": record["device"]}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repeats", type=int, default=1, help="processes per allocator, alternating")
    p.add_argument("overrides", nargs="*", help="harness.train overrides after the defaults")
    args = p.parse_args(argv)
    overrides = DEFAULTS + args.overrides
    last = {"ours": [], "glibc default": []}
    for _ in range(args.repeats):
        for reference in (True, False):
            record = train_once(overrides, reference)
            last[record["allocator"]].append(record["epoch_s"][-1])
            print(json.dumps(record), flush=True)
    ours, ref = statistics.median(last["ours"]), statistics.median(last["glibc default"])
    print(json.dumps({"what": "cpu_train_epoch_s", "ours": ours, "reference": ref, "ratio": round(ref / ours, 2),
                      "reference_is": "glibc malloc defaults", "overrides": overrides, "machine": platform.node(),
                      "cpus": os.cpu_count(), "load_avg_at_end": [round(x, 2) for x in os.getloadavg()]}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
