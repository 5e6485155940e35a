"""harness/allocator.py: with the harness' malloc settings a training-sized block freed and allocated again
stops costing page faults (the kernel time they replace is what benchmarks/bench_allocator.py measures)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from tests.conftest import REPO

# A fresh process (malloc settings are process-wide): 24 rounds of allocating and freeing a 64 MB tensor (over
# glibc's largest mmap threshold, 32 MB), as a training step does with its score matrix; minor page faults of
# each round.
_CHILD = """
import json, resource, sys, torch
from harness.allocator import keep_freed_memory
kept = keep_freed_memory() if sys.argv[1] == "keep" else None
faults = []
for _ in range(24):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    block = torch.ones(16 << 20)
    del block
    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
print(json.dumps({"kept": kept, "faults": faults}))
"""


def _rounds(mode: str, **env: str) -> dict:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    proc = subprocess.run([sys.executable, "-c", _CHILD, mode], cwd=REPO, env={**clean, **env},
                          capture_output=True, text=True, check=True)
    return json.loads(proc.stdout)


def test_kept_memory_ends_the_page_faults_of_a_reallocated_block():
    default, kept = _rounds("default"), _rounds("keep")
    assert kept["kept"] is True
    pages = (64 << 20) // 4096
    # glibc default: every round maps the block afresh and faults it all in (fewer faults with huge pages)
    assert all(f >= pages // 512 for f in default["faults"][-8:])
    # kept: the heap settles within a few rounds (3-8 measured: freed blocks coalesce), then the block is reused
    assert sum(kept["faults"][-8:]) < sum(default["faults"][-8:]) / 100


def test_a_users_own_malloc_settings_are_left_alone():
    run = _rounds("keep", MALLOC_MMAP_MAX_="65536")
    assert run["kept"] is False
    pages = (64 << 20) // 4096
    assert all(f >= pages // 512 for f in run["faults"][-8:])  # glibc's behaviour, as the user asked
