"""DeepSpeed ZeRO-3 inference with 2 CPU processes (gloo) gives the plain path's features.

The checkpoint is a saved tiny LLaMA folder, so ``from_pretrained`` runs under ``HfDeepSpeedConfig``
and partitions the parameters while loading. Three chunks over two ranks give the ranks different
numbers of batches: the dummy batches that keep ZeRO-3's collective gathers in step are exercised
(without them the job would hang and the subprocess would time out).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

from harness.encode import main
from harness.features.layout import encoder_key

REPO = Path(__file__).resolve().parents[1]
ARGS = ["--dataset", "ml-1m", "--cpu", "--no-progress", "--limit", "768", "--chunk-size", "256"]


def _save_tiny_llama(path: Path) -> Path:
    from encoders import create_encoder
    from encoders.tokenizers import tiny_tokenizer

    create_encoder("tiny-llama").module.save_pretrained(path)
    tiny_tokenizer().save_pretrained(path)
    return path


def test_zero3_two_cpu_processes_equal_plain_path(tmp_path):
    ckpt = _save_tiny_llama(tmp_path / "tiny-llama-ckpt")
    plain_root, zero_root = tmp_path / "plain", tmp_path / "zero3"
    assert main(["--encoder", str(ckpt), "--cache-dir", str(plain_root), *ARGS]) == 0

    cmd = [str(Path(sys.executable).parent / "torchrun"), "--standalone", "--nproc_per_node=2", "harness/encode.py",
           "--encoder", str(ckpt), "--strategy", "zero3", "--cache-dir", str(zero_root), *ARGS]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, check=False, timeout=400)
    assert proc.returncode == 0, proc.stderr[-6000:]

    sub = Path("features") / "ml-1m.first768" / encoder_key(str(ckpt)) / "text"
    plain = np.load(plain_root / sub / "features.npy")
    zero = np.load(zero_root / sub / "features.npy")
    assert plain.shape == (768, 32) and np.abs(plain).sum(1).min() > 0
    np.testing.assert_allclose(zero, plain, rtol=0, atol=1e-6)

    manifest = json.loads((zero_root / sub / "manifest.json").read_text())
    assert manifest["strategy"] == "zero3" and manifest["world_size"] == 2
    z = manifest["zero3"]
    assert z["partitioned_at_load"] is True  # HfDeepSpeedConfig was alive during from_pretrained
    assert z["rank0_param_numel"] < z["total_param_numel"] == manifest["params"]
    steps = sorted(r["batches"] for r in manifest["ranks"])
    assert steps[0] < steps[1]  # uneven real work: the short rank ran dummy batches
