"""Intra-op threads of a CPU encode: one per process unless asked, so the bytes never depend on the box.

The thread count can change a feature's last bit (measured: tiny LLaMA on ML-1M, 3 threads vs 1: one row
of 3,416 differs by 1 ulp), so it is fixed rather than taken from the machine: a resumed cache then
never mixes shards of several counts, and one process equals N torchrun processes (which run one
thread each) by construction. One thread is also the fast choice on a shared box: with two nice'd
training processes on the 2-core machine, torch's default 2 threads encoded 20k items with tiny-bert
2.5-7x slower (``linear`` 26x slower), each OpenMP region waiting at its barrier for a thread the
scheduler had given to another process (docs/SCALING.md). More CPU: more processes (torchrun), or
``--threads`` / ``OMP_NUM_THREADS`` (recorded in the manifest as ``cpu_threads``).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

import torch


@contextmanager
def cpu_threads(requested: int | None, device: torch.device) -> Iterator[int | None]:
    """Run the job with ``requested`` threads on CPU, else ``OMP_NUM_THREADS`` when set, else 1; the caller's
    count is restored after (an in-process encode must not change a training run's threads)."""
    if device.type != "cpu":
        yield None
        return
    before = torch.get_num_threads()
    n = requested if requested is not None else (before if os.environ.get("OMP_NUM_THREADS") else 1)
    if n < 1:
        raise ValueError(f"--threads must be >= 1, got {n}")
    torch.set_num_threads(n)
    try:
        yield n
    finally:
        torch.set_num_threads(before)
