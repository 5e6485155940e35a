"""Encode cost curve: the real encode job on synthetic catalogues of 10k / 100k / 1M items (JSON lines).

    python benchmarks/encode_scaling.py --sizes 10000,100000,1000000 --max-s 900 --out docs/scaling/encode.jsonl

Each size gets a freshly generated catalogue (``harness.data.synthetic``, 2 interactions per item) and a
fresh cache folder, and runs ``python -m harness.encode --encoder tiny-bert --cpu`` as a subprocess.
Reported: wall and CPU seconds per item (the job's own encode seconds from its manifest, and the whole
process), peak RSS of the process (``os.wait4``; the job's own high-water mark from the manifest). The
reference is the smallest size: ``ratio`` = per-item encode seconds at N / at the smallest N, which should
stay ~1, and peak RSS should not grow with N. A run that passes ``--max-s`` is stopped and reported as
``partial``: per-item cost from the shards finished so far (plan.json mtime -> newest shard), RSS sampled
from /proc while it ran; its merge is not measured.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from harness.data.synthetic import generate  # noqa: E402


def machine() -> str:
    model = next((ln.split(":", 1)[1].strip() for ln in open("/proc/cpuinfo") if ln.startswith("model name")), platform.machine())
    return f"{model}; {os.cpu_count()} cores"


def emit(line: dict, out: Path | None) -> None:
    text = json.dumps(line)
    print(text, flush=True)
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        with open(out, "a") as fh:
            fh.write(text + "\n")


def _rss_kb(pid: int) -> int:
    try:
        for line in open(f"/proc/{pid}/status"):
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def run_job(data_root: Path, cache: Path, encoder: str, max_s: float) -> dict:
    """One encode subprocess; wall, CPU, peak RSS, and whether it finished within ``max_s``."""
    cmd = [sys.executable, "-m", "harness.encode", "--encoder", encoder, "--dataset", "synthetic", "--cpu",
           "--data-dir", str(data_root), "--cache-dir", str(cache), "--no-progress"]
    env = {**os.environ, "PYTHONPATH": str(REPO), "HARNESS_CACHE_DIR": str(cache), "HF_HUB_OFFLINE": "1"}
    start, sampled = time.perf_counter(), 0
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    while True:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            break
        sampled = max(sampled, _rss_kb(proc.pid))
        if time.perf_counter() - start > max_s:
            proc.send_signal(signal.SIGTERM)
            pid, status, usage = os.wait4(proc.pid, 0)
            break
        time.sleep(1.0)
    wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    err = proc.stderr.read()[-2000:]
    return {"wall_s": wall, "cpu_s": usage.ru_utime + usage.ru_stime, "peak_rss_mb": usage.ru_maxrss / 1024,
            "sampled_rss_mb": sampled / 1024, "rc": proc.returncode, "stderr_tail": err if proc.returncode else ""}


def encode_figures(folder: Path, finished: bool, n_items: int) -> dict:
    """Items and encode seconds: the manifest when complete, else the finished shards."""
    if finished:
        m = json.loads((folder / "manifest.json").read_text())
        return {"items": m["throughput"]["items"], "encode_s": m["throughput"]["seconds"],
                "job_peak_rss_mb": m["peak_memory"]["rss_bytes_max_rank"] / 2**20, "chunk_size": m["chunk_size"],
                "cpu_threads": m.get("cpu_threads")}
    plan = folder / "shards" / "plan.json"
    shards = sorted((folder / "shards").glob("*.safetensors"), key=lambda p: p.stat().st_mtime)
    if not plan.is_file() or not shards:
        return {"items": 0, "encode_s": None}
    size = json.loads(plan.read_text())["chunk_size"]
    return {"items": min(len(shards) * size, n_items), "encode_s": shards[-1].stat().st_mtime - plan.stat().st_mtime, "chunk_size": size}


def measure(n: int, work: Path, encoder: str, max_s: float, seed: int) -> dict:
    data_root, load_start = work / f"data-{n}", [round(x, 2) for x in os.getloadavg()]
    tick = time.perf_counter()
    generate(data_root / "synthetic", n, 2 * n, seed, n_users=max(1, 2 * n // 5))
    gen_s = time.perf_counter() - tick
    cache = work / f"cache-{n}"
    job = run_job(data_root, cache, encoder, max_s)
    finished = job["rc"] == 0
    figures = encode_figures(cache / "features" / "synthetic" / encoder / "text", finished, n)
    per_item = figures["encode_s"] / figures["items"] if figures.get("items") else None
    return {"items_catalogue": n, "load_start": load_start, "generate_s": round(gen_s, 2), **job, **figures, "finished": finished,
            "encode_s_per_item": per_item, "cpu_s_per_item_process": job["cpu_s"] / n if finished else None}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", default="10000,100000,1000000")
    p.add_argument("--encoder", default="tiny-bert")
    p.add_argument("--max-s", type=float, default=900.0, help="stop a size's job after this many seconds (partial)")
    p.add_argument("--work", default="/tmp/encode-scaling", help="datasets and caches (fresh per size)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path)
    a = p.parse_args(argv)
    work = Path(a.work)
    reference = None
    for n in (int(s) for s in a.sizes.split(",")):
        subprocess.run(["rm", "-rf", str(work / f"cache-{n}"), str(work / f"data-{n}")], check=True)
        row = measure(n, work, a.encoder, a.max_s, a.seed)
        if reference is None and row["encode_s_per_item"]:
            reference = row["encode_s_per_item"]
        ratio = row["encode_s_per_item"] / reference if reference and row["encode_s_per_item"] else None
        emit({"what": f"encode_scaling/{a.encoder}/{n}", "ours": row["encode_s_per_item"], "reference": reference,
              "ratio": ratio, "unit": "encode s/item (ref: smallest catalogue)", "machine": machine(),
              "load": [round(x, 2) for x in os.getloadavg()], **row}, a.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
