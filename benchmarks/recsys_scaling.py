"""Recommender cost curve on synthetic power-law interactions: load, split, train, evaluate (JSON lines).

    python benchmarks/recsys_scaling.py --grid 10000x1000000,100000x1000000,1000000x10000000 --out docs/scaling/recsys.jsonl
    python benchmarks/recsys_scaling.py --cell 100000x1000000 --profile /tmp/cell.prof   # one cell, cProfile

Each cell (items x interactions) runs in a fresh subprocess (its peak RSS is its own) on a freshly
generated ``synthetic`` dataset (``harness.data.synthetic``: Zipf items, Pareto users, 20 interactions
per user on average) and times each stage of the real code path:

- ``load_build``: ``load_dataset`` from the files (read, chronological grouping, coding, npz cache write);
  ``load_cached``: the same call again (npz read); ``kcore5``: ``kcore_mask`` (5-core) on the same arrays;
- ``split``: ``make_split`` (paper protocol, no cache); ``store``: ``SequenceStore``; ``samples``:
  ``train.training_samples`` (all-position windows);
- ``train``: SASRec (dim 32, 2 layers, max_len 50, full softmax over all items), ``--batches`` batches of
  ``--batch-size`` after one warm-up batch -> seconds per training target; ``train_epoch_extrapolated``
  = that x the epoch's targets (not measured: marked ``extrapolated``);
- ``eval``: full-ranking ``evaluate`` on ``--eval-targets`` sampled test targets -> seconds per target;
  ``eval_full_extrapolated`` likewise.

The reference for each figure is the first cell: ``ratio`` = (CPU seconds per unit at this cell) / (at the
first), the unit being an interaction (data stages) or a training / evaluation target x item count (a
full softmax and full ranking are O(targets x items) by definition). Flat ratios mean linear cost. CPU
time of this process (``time.process_time``, torch on ``--threads 1``) is reported beside wall time
because wall time on a shared, loaded box moves 2-3x between identical runs.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from harness import train  # noqa: E402
from harness.batching import SequenceStore  # noqa: E402
from harness.config import load  # noqa: E402
from harness.data import load_dataset, make_split  # noqa: E402
from harness.data.kcore import kcore_mask  # noqa: E402
from harness.data.synthetic import generate  # noqa: E402
from harness.evaluation import evaluate, sample_targets, split_targets  # noqa: E402
from harness.models import build_model  # noqa: E402


def machine() -> str:
    model = next((ln.split(":", 1)[1].strip() for ln in open("/proc/cpuinfo") if ln.startswith("model name")), platform.machine())
    return f"{model}; {os.cpu_count()} cores; torch threads {torch.get_num_threads()}"


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class Stages:
    """Wall seconds and the process's RSS high-water mark after each named stage."""

    def __init__(self) -> None:
        self.rows: dict[str, dict] = {}

    def time(self, name: str, fn, *args, **kwargs):
        tick, cpu = time.perf_counter(), time.process_time()
        out = fn(*args, **kwargs)
        self.rows[name] = {"s": time.perf_counter() - tick, "cpu_s": time.process_time() - cpu,
                           "peak_rss_mb": round(peak_mb(), 1)}
        return out


def _config(folder: Path, args: argparse.Namespace):
    return load(overrides=["dataset.name=synthetic", f"dataset.data_dir={folder}", "dataset.max_len=50",
                           "model.name=sasrec", "model.dim=32", f"train.batch_size={args.batch_size}",
                           f"train.eval_batch_size={args.eval_batch_size}", "train.device=cpu"])


def train_batches(cell: train.Cell, samples, n: int) -> tuple[float, float, int]:
    """Wall and CPU seconds and training targets of ``n`` batches after one warm-up batch (the real loss and step)."""
    stream = train.batches(cell.store, samples, True, cell.cfg.train.batch_size, cell.cfg.dataset.max_len,
                           np.random.default_rng(0))
    cell.model.train()
    seconds, cpu, targets = 0.0, 0.0, 0
    for step, (inputs, target) in zip(range(n + 1), stream):
        tick, cpu_tick = time.perf_counter(), time.process_time()
        losses = train.batch_loss(cell, train.to_tensor(inputs, cell.device), train.to_tensor(target, cell.device))
        cell.optimizer.zero_grad(set_to_none=True)
        losses["loss"].backward()
        cell.optimizer.step()
        if step:
            seconds += time.perf_counter() - tick
            cpu += time.process_time() - cpu_tick
            targets += int((target > 0).sum())
    return seconds, cpu, targets


def run_cell(n_items: int, n_inter: int, args: argparse.Namespace) -> dict:
    work = Path(tempfile.mkdtemp(prefix="recsys-scaling-", dir=args.work))
    os.environ["HARNESS_CACHE_DIR"] = str(work / "cache")
    warnings.simplefilter("ignore")
    st = Stages()
    st.time("generate", generate, work / "data" / "synthetic", n_items, n_inter, args.seed)
    dataset = st.time("load_build", load_dataset, "synthetic", work / "data")
    st.time("load_cached", load_dataset, "synthetic", work / "data")
    flat, offsets = dataset.flat()
    users = np.repeat(np.arange(dataset.num_users), np.diff(offsets))
    st.time("kcore5", kcore_mask, users, flat, 5)
    del flat, users
    split = st.time("split", make_split, dataset, use_cache=False)
    store = st.time("store", SequenceStore, dataset.sequences)
    cfg = _config(work / "data", args)
    samples = st.time("samples", train.training_samples, split, cfg.dataset.max_len, True)
    torch.manual_seed(0)
    model = build_model(cfg, dataset.num_items)
    cell = train.Cell(cfg, torch.device("cpu"), dataset, split, store, model, train.make_optimizer(cfg, model))
    seconds, cpu, targets = st.time("train", train_batches, cell, samples, args.batches)
    epoch_targets = int((samples[2] - 1).sum())
    u, p = split_targets(split.valid_start, split.test_start, store.lengths, "test")
    n_test = len(u)
    u, p = sample_targets(u, p, args.eval_targets)
    cell.model.eval()
    st.time("eval", evaluate, train.model_scorer(cell), store, u, p, cfg.dataset.max_len, batch_size=args.eval_batch_size)
    eval_s, eval_cpu = st.rows["eval"]["s"], st.rows["eval"]["cpu_s"]
    return {
        "items": dataset.num_items, "interactions": dataset.num_interactions, "users": dataset.num_users,
        "stages": st.rows, "train_targets_measured": targets, "train_s_per_target": seconds / targets, "train_cpu_s_per_target": cpu / targets,
        "train_epoch_targets": epoch_targets, "train_epoch_s_extrapolated": seconds / targets * epoch_targets,
        "eval_targets_measured": len(u), "eval_s_per_target": eval_s / len(u), "eval_cpu_s_per_target": eval_cpu / len(u), "eval_targets_full": n_test,
        "eval_full_s_extrapolated": eval_s / len(u) * n_test, "peak_rss_mb": round(peak_mb(), 1),
    }


def parse_cell(text: str) -> tuple[int, int]:
    items, inter = text.lower().split("x")
    return int(items), int(inter)


def per_unit(row: dict) -> dict[str, float]:
    """CPU seconds (this process; steadier than wall time on a loaded box) per unit of each figure:
    interactions (data stages), training targets x items and evaluation targets x items (both O(items))."""
    out = {f"{k}_cpu_s_per_M_interactions": v["cpu_s"] / row["interactions"] * 1e6
           for k, v in row["stages"].items() if k not in ("train", "eval")}
    out["train_cpu_ns_per_target_item"] = row["train_cpu_s_per_target"] / row["items"] * 1e9
    out["eval_cpu_ns_per_target_item"] = row["eval_cpu_s_per_target"] / row["items"] * 1e9
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--grid", default="10000x1000000,100000x1000000,1000000x1000000,10000x10000000,100000x10000000,1000000x10000000")
    p.add_argument("--cell", help="run one cell in this process (what --grid starts per cell)")
    p.add_argument("--batches", type=int, default=10)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--eval-targets", type=int, default=1024)
    p.add_argument("--eval-batch-size", type=int, default=1024)
    p.add_argument("--work", default=tempfile.gettempdir())
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1, help="torch threads (1: CPU time = work on a shared box)")
    p.add_argument("--profile", help="with --cell: write a cProfile of the cell here")
    p.add_argument("--out", type=Path)
    a = p.parse_args(argv)
    if a.cell:
        torch.set_num_threads(a.threads)
        prof = cProfile.Profile() if a.profile else None
        if prof:
            prof.enable()
        row = run_cell(*parse_cell(a.cell), a)
        if prof:
            prof.disable()
            prof.dump_stats(a.profile)
        print(json.dumps(row), flush=True)
        return 0
    reference = None
    for cell in a.grid.split(","):
        load_start = [round(x, 2) for x in os.getloadavg()]
        cmd = [sys.executable, __file__, "--cell", cell, *sum(([f"--{k.replace('_', '-')}", str(getattr(a, k))]
               for k in ("batches", "batch_size", "eval_targets", "eval_batch_size", "work", "seed", "threads")), [])]
        done = subprocess.run(cmd, capture_output=True, text=True)
        if done.returncode:
            print(json.dumps({"what": f"recsys_scaling/{cell}", "error": done.stderr[-1500:]}), flush=True)
            continue
        row = json.loads(done.stdout.strip().splitlines()[-1])
        units = per_unit(row)
        reference = reference or units
        line = {"what": f"recsys_scaling/{cell}", "ours": units, "reference": reference,
                "ratio": {k: v / reference[k] for k, v in units.items() if reference.get(k)},
                "unit": "s per unit (ref: first cell)", "machine": machine(), "load_start": load_start,
                "load": [round(x, 2) for x in os.getloadavg()], **row}
        text = json.dumps(line)
        print(text, flush=True)
        if a.out:
            a.out.parent.mkdir(parents=True, exist_ok=True)
            with open(a.out, "a") as fh:
                fh.write(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
