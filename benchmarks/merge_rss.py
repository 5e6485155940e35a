"""Peak RSS of the encode job's merge (``merge_shards``) as the merged matrix grows (JSON lines).

    python benchmarks/merge_rss.py --sizes 25000x1024,100000x1024,200000x2048 --out docs/scaling/merge.jsonl

Per size: synthetic shards (seeded random float32 rows; each chunk a random slice of the items, so its
rows land all over the file, as length-sorted chunks do) written with ``write_shard``, then the merge in
a fresh subprocess whose peak RSS (``ru_maxrss``) is reported with the merged files' sha256, which must
not depend on how the merge writes them. ``ratio`` = peak RSS / merged matrix bytes: it stays small
when RSS does not grow with N x dim.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.encode_scaling import emit, machine  # noqa: E402
from harness.encoding.shards import Shard, write_shard  # noqa: E402

CHILD = """
import json, resource, sys, time
from pathlib import Path
from harness.encoding.merge import merge_shards
start = time.perf_counter()
r = merge_shards(Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]))
print(json.dumps({"merge_s": time.perf_counter() - start, "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "features_sha256": r.merged["features.npy"]["sha256"], "n_valid": r.n_valid}))
"""


def make_shards(folder: Path, n: int, dim: int, chunk: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    order = rng.permutation(n)
    (folder / "shards").mkdir(parents=True)
    for c, lo in enumerate(range(0, n, chunk)):
        index = np.sort(order[lo : lo + chunk])
        feats = rng.standard_normal((len(index), dim), dtype=np.float32)
        write_shard(folder / "shards", 0, Shard(c, index, feats, np.ones(len(index), dtype=bool)))


def measure(n: int, dim: int, work: Path, chunk: int, seed: int) -> dict:
    folder = work / f"merge-{n}x{dim}"
    shutil.rmtree(folder, ignore_errors=True)
    tick = time.perf_counter()
    make_shards(folder, n, dim, chunk, seed)
    made = time.perf_counter() - tick
    load = [round(x, 2) for x in os.getloadavg()]
    proc = subprocess.run([sys.executable, "-c", CHILD, str(folder), str(n), str(dim)], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(REPO)}, check=True)
    row = json.loads(proc.stdout.strip().splitlines()[-1])
    shutil.rmtree(folder)
    matrix_mb = n * dim * 4 / 2**20
    return {"what": f"merge_rss/{n}x{dim}", "ours": row["peak_rss_mb"], "reference": matrix_mb,
            "ratio": row["peak_rss_mb"] / matrix_mb, "unit": "peak RSS MB (ref: merged matrix MB)", "machine": machine(),
            "items": n, "dim": dim, "chunk": chunk, "shards_s": round(made, 2), "load_start": load,
            "load": [round(x, 2) for x in os.getloadavg()], **row}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", default="25000x1024,100000x1024,200000x2048", help="items x dim, comma-separated")
    p.add_argument("--chunk", type=int, default=8192, help="rows per shard")
    p.add_argument("--work", default="/tmp/merge-rss")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path)
    a = p.parse_args(argv)
    for size in a.sizes.split(","):
        n, dim = (int(x) for x in size.split("x"))
        emit(measure(n, dim, Path(a.work), a.chunk, a.seed), a.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
