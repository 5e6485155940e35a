"""glibc malloc settings for CPU training: keep freed memory in the process instead of unmapping it.

Every training step allocates and frees a full-catalogue score matrix (batch x window x items floats: about
350 MB for SASRec on ML-1M). glibc serves blocks over 32 MB with their own ``mmap`` and unmaps them on
``free``, so the next step faults in and zeroes every page again: measured on the 2-core box, a third of a
training process's CPU time was kernel time and an ML-1M epoch took 78-83 s; with these settings, 45-54 s.
Nothing numerical changes (the same arithmetic on differently placed memory). The cost is memory: the heap
settles after a few steps at a few of the largest blocks' worth and is never returned (that ML-1M cell: peak
RSS 1.9 -> 3.7 GB). ``benchmarks/bench_allocator.py`` measures it side by side.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os

M_TRIM_THRESHOLD, M_MMAP_MAX = -1, -4  # glibc <malloc.h>
KEEP_BYTES = 2**31 - 1  # free memory at the top of the heap kept up to this much (mallopt takes an int)
USER_KNOBS = ("MALLOC_MMAP_MAX_", "MALLOC_TRIM_THRESHOLD_")  # glibc's own variables: a user's choice wins


def keep_freed_memory() -> bool:
    """Serve large blocks from the heap and never trim it; False (nothing changed) without glibc or when the
    user set glibc's MALLOC_MMAP_MAX_ / MALLOC_TRIM_THRESHOLD_ themselves."""
    if any(name in os.environ for name in USER_KNOBS):
        return False
    try:
        mallopt = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").mallopt
    except (OSError, AttributeError):  # not glibc (musl, macOS): leave the allocator alone
        return False
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    # trim first: with mmap off and the default 128 KB threshold, each free of a big block would shrink the heap
    return bool(mallopt(M_TRIM_THRESHOLD, KEEP_BYTES)) and bool(mallopt(M_MMAP_MAX, 0))
