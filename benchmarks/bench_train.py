"""Training-loop throughput and quality of one cell, plus evaluation checks on the trained model. JSON lines.

    python benchmarks/bench_train.py dataset=ml-1m dataset.max_len=200 train.epochs=200    # any harness.train overrides
    python benchmarks/bench_train.py --budget-s 120 dataset=ml-1m                           # stop after ~120 s of training

For the final (best-validation) model it also checks that the test metrics do not change with
the evaluation batch size (--eval-batches) and, on CUDA, how far bf16 autocast moves them from
float32 evaluation.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from typing import Any

import torch

from harness import train
from harness.config import load, to_dict
from harness.tracking import MemoryLogger


def emit(record: dict[str, Any]) -> None:
    print(json.dumps(record), flush=True)


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"{platform.node()} CPU x{torch.get_num_threads()} threads"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--budget-s", type=float, default=0.0, help="stop training after this many seconds (0: no limit)")
    parser.add_argument("--eval-batches", default="256,4096", help="evaluation batch sizes compared on the final model")
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args(argv)
    cfg = load(overrides=args.overrides)
    cell = train.setup(cfg)
    log = MemoryLogger()
    result = train.fit(cell, log, budget_s=args.budget_s)
    epoch_s = [v for _, v in log.history("epoch_time_s")]
    record = {
        "what": "train_cell", "device": device_name(cell.device), "torch": torch.__version__,
        "config": {k: v for k, v in to_dict(cfg, flat=True).items() if k.startswith(("dataset.", "model.", "train."))},
        "epochs_run": result.epochs, "best_epoch": result.best_epoch, "epoch_s_median": statistics.median(epoch_s),
        "epoch_s": [round(v, 3) for v in epoch_s], "fit_s": result.train_time_s,
        "valid_ndcg10_curve": [round(v, 4) for _, v in log.history("valid/ndcg@10")],
    }
    sizes = [int(b) for b in args.eval_batches.split(",")]
    runs = {}
    for size in sizes:
        cfg.train.eval_batch_size = size
        tick = time.perf_counter()
        runs[size] = train.evaluate_part(cell, "test")
        record[f"test_eval_s_batch{size}"] = time.perf_counter() - tick
    record["test"] = runs[sizes[0]]
    record["eval_batch_max_abs_diff"] = max(abs(runs[s][k] - runs[sizes[0]][k]) for s in sizes for k in runs[s])
    if cell.device.type == "cuda" and cfg.train.amp:
        cfg.train.amp = False
        fp32 = train.evaluate_part(cell, "test")
        record["amp_vs_fp32_eval_max_abs_diff"] = max(abs(fp32[k] - runs[sizes[0]][k]) for k in fp32)
        record["test_fp32_eval"] = fp32
        cfg.train.amp = True
    emit(record)
    return 0


if __name__ == "__main__":
    sys.exit(main())
