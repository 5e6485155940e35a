"""KDSR cost, measured side by side in one process: a training epoch of the same backbone with and
without KDSR, the per-batch split of that cost, and the two ways of getting teacher signals
(on the fly from the compressed vectors vs precomputed N x N tables). Prints JSON lines.

    python benchmarks/bench_kdsr.py                      # ML-1M, max_len 200, SASRec, MiniLM text
    python benchmarks/bench_kdsr.py --batches 8          # a fixed number of batches per "epoch" (slow CPUs)
    python benchmarks/bench_kdsr.py --variants off,sample,all

Variants: ``off`` (no KDSR), ``sample`` (kdsr.pairs=sample, --max-pairs), ``all`` (every pair).
Epochs are interleaved (off, sample, ..., off, sample, ...) so drift in machine load hits every
variant alike; the reported epoch time is the median over --repeats.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from typing import Any

import numpy as np
import psutil
import torch

from harness import train
from harness.config import load
from harness.kdsr import TeacherTable
from harness.kdsr.pairs import sample_positions


def emit(record: dict[str, Any]) -> None:
    print(json.dumps(record), flush=True)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def variant_config(args: argparse.Namespace, variant: str):
    overrides = [
        f"dataset={args.dataset}", f"dataset.max_len={args.max_len}", f"model={args.model}", "model.items=finetune",
        f"features.text_encoder={args.encoder}", f"train.device={args.device}", f"train.batch_size={args.batch_size}",
        f"train.threads={args.threads}", f"kdsr.enabled={variant != 'off'}", f"kdsr.max_pairs={args.max_pairs}",
        f"kdsr.pairs={'all' if variant == 'all' else 'sample'}",
    ]
    return load(overrides=overrides)


def build_cells(args: argparse.Namespace) -> dict[str, train.Cell]:
    cells = {}
    for variant in args.variants:
        tick = time.perf_counter()
        cells[variant] = train.setup(variant_config(args, variant))
        record = {"event": "setup", "variant": variant, "seconds": round(time.perf_counter() - tick, 2)}
        if cells[variant].kdsr is not None:
            record["teachers"] = cells[variant].kdsr.teacher_info
        emit(record)
    return cells


def epoch_samples(cell: train.Cell, args: argparse.Namespace) -> tuple[np.ndarray, ...]:
    samples = train.training_samples(cell.split, args.max_len, train.uses_windows(cell))
    if args.batches:
        keep = np.random.default_rng(0).permutation(len(samples[0]))[: args.batches * args.batch_size]
        samples = tuple(a[keep] for a in samples)
    return samples


def timed_epoch(cell: train.Cell, samples: tuple[np.ndarray, ...], epoch: int) -> tuple[float, dict[str, float]]:
    sync(cell.device)
    tick = time.perf_counter()
    losses = train.train_epoch(cell, samples, epoch)
    sync(cell.device)
    return time.perf_counter() - tick, losses


def compare_epochs(cells: dict[str, train.Cell], args: argparse.Namespace) -> None:
    samples = epoch_samples(next(iter(cells.values())), args)
    n_batches = -(-len(samples[0]) // args.batch_size)
    times: dict[str, list[float]] = {v: [] for v in cells}
    for variant, cell in cells.items():  # warm-up (kernels, allocator, lazy heads), not timed
        train.train_epoch(cell, tuple(a[: 2 * args.batch_size] for a in samples), 0)
        if cell.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(cell.device)
    for rep in range(args.repeats):
        for variant, cell in cells.items():
            seconds, losses = timed_epoch(cell, samples, rep + 1)
            times[variant].append(seconds)
            emit({"event": "epoch", "variant": variant, "repeat": rep, "seconds": round(seconds, 3), "batches": n_batches,
                  "losses": {k: round(v, 4) for k, v in losses.items()}})
    summary = {v: statistics.median(t) for v, t in times.items()}
    record = {"event": "epoch_summary", "device": device_name(args), "batches": n_batches, "batch_size": args.batch_size,
              "max_len": args.max_len, "max_pairs": args.max_pairs, "median_seconds": {k: round(v, 3) for k, v in summary.items()},
              "rss_gb": round(psutil.Process().memory_info().rss / 2**30, 2)}
    if "off" in summary:
        record["ratio_vs_off"] = {k: round(v / summary["off"], 3) for k, v in summary.items() if k != "off"}
    if torch.cuda.is_available():
        record["cuda_peak_gb"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
    emit(record)


def one_batch(cell: train.Cell, args: argparse.Namespace) -> tuple[torch.Tensor, torch.Tensor]:
    samples = epoch_samples(cell, args)
    rng = np.random.default_rng(1)
    inputs, targets = next(train.batches(cell.store, samples, train.uses_windows(cell), args.batch_size, args.max_len, rng))
    return tuple(torch.from_numpy(np.ascontiguousarray(a)).to(cell.device) for a in (inputs, targets))


def time_call(fn, device: torch.device, repeats: int) -> float:
    fn()
    sync(device)
    tick = time.perf_counter()
    for _ in range(repeats):
        fn()
    sync(device)
    return (time.perf_counter() - tick) / repeats


def per_batch_split(cell: train.Cell, args: argparse.Namespace, variant: str) -> None:
    """Forward+backward of the recommendation loss alone vs the KDSR losses alone, same batch."""
    inputs, targets = one_batch(cell, args)

    def rec() -> None:
        with train.autocast(cell):
            hidden = cell.model(inputs)
            logits = cell.model.scores(hidden[targets > 0])
        torch.nn.functional.cross_entropy(logits.float(), targets[targets > 0] - 1).backward()

    def kdsr() -> None:
        with train.autocast(cell):
            out = cell.kdsr.losses(cell.model.items, inputs)
        out["total"].backward()

    r, k = time_call(rec, cell.device, args.batch_repeats), time_call(kdsr, cell.device, args.batch_repeats)
    cell.optimizer.zero_grad(set_to_none=True)
    emit({"event": "per_batch", "variant": variant, "shape": list(inputs.shape), "rec_fwd_bwd_ms": round(1e3 * r, 2),
          "kdsr_fwd_bwd_ms": round(1e3 * k, 2), "kdsr_over_rec": round(k / r, 3)})


def teacher_signals(cell: train.Cell, args: argparse.Namespace) -> None:
    """On-the-fly teacher signals vs gathering from precomputed fp16 / uint8 N x N tables."""
    inputs, _ = one_batch(cell, args)
    teacher = next(iter(cell.kdsr.teachers.values()))
    sync(cell.device)
    tick = time.perf_counter()
    table = TeacherTable(teacher).to(cell.device)
    sync(cell.device)
    build = time.perf_counter() - tick
    table_bytes = table.scores.numel() * 2 + table.codes.numel()
    for name, seq in (("sampled", sample_positions(inputs, "sample", args.max_pairs)), ("all", inputs)):
        ids = (seq - 1).clamp_min(0)
        fly = time_call(lambda ids=ids: teacher.grid(ids), cell.device, args.batch_repeats)
        gathered = time_call(lambda ids=ids: table.grid(ids), cell.device, args.batch_repeats)
        emit({"event": "teacher_signals", "grid": name, "shape": list(ids.shape), "on_the_fly_ms": round(1e3 * fly, 3),
              "table_ms": round(1e3 * gathered, 3), "table_build_s": round(build, 2), "table_mb": round(table_bytes / 2**20, 1),
              "items": teacher.num_items})


def device_name(args: argparse.Namespace) -> str:
    device = train.resolve_device(args.device)
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu x{torch.get_num_threads()} threads"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dataset", default="ml-1m")
    p.add_argument("--model", default="sasrec")
    p.add_argument("--encoder", default="minilm-l6")
    p.add_argument("--max-len", type=int, default=200)
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--max-pairs", type=int, default=64)
    p.add_argument("--variants", default="off,sample", help="comma list of off, sample, all")
    p.add_argument("--repeats", type=int, default=3, help="timed epochs per variant (median reported)")
    p.add_argument("--batches", type=int, default=0, help="batches per timed epoch; 0 = the full epoch")
    p.add_argument("--batch-repeats", type=int, default=5)
    p.add_argument("--device", default="auto")
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--skip", default="", help="comma list of parts to skip: epochs, per_batch, signals")
    args = p.parse_args(argv)
    args.variants = [v for v in args.variants.split(",") if v]
    bad = set(args.variants) - {"off", "sample", "all"}
    if bad:
        p.error(f"unknown variants {sorted(bad)}; valid: off, sample, all")
    args.skip = set(filter(None, args.skip.split(",")))
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    cells = build_cells(args)
    if "epochs" not in args.skip:
        compare_epochs(cells, args)
    kdsr_cells = {v: c for v, c in cells.items() if c.kdsr is not None}
    if "per_batch" not in args.skip:
        for variant, cell in kdsr_cells.items():
            per_batch_split(cell, args, variant)
    if "signals" not in args.skip and kdsr_cells:
        teacher_signals(next(iter(kdsr_cells.values())), args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
