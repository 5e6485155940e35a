"""The encode job as real processes: 1 process in-process, torchrun and accelerate launch (gloo, CPU).

Features must be bitwise equal whatever the number of processes (CPU, float32): chunk boundaries and
batches do not depend on the world size.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from harness.encode import main
from harness.features import load_features
from harness.encoding.shards import finished_chunks, read_shard

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
N_ML1M = 3416
COMMON = ["--dataset", "ml-1m", "--cpu", "--no-progress", "--chunk-size", "256"]


def _env() -> dict:
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_launcher(cmd: list[str], timeout: int = 240) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, cwd=REPO, env=_env(), capture_output=True, text=True, check=False, timeout=timeout)
    assert proc.returncode == 0, f"{' '.join(cmd)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}"
    return proc


def torchrun(args: list[str], nproc: int = 2) -> subprocess.CompletedProcess:
    return run_launcher([str(BIN / "torchrun"), "--standalone", f"--nproc_per_node={nproc}", "harness/encode.py", *args])


def folder(root: Path, encoder: str = "tiny-llama", dataset: str = "ml-1m") -> Path:
    return root / "features" / dataset / encoder / "text"


@pytest.fixture(scope="module")
def one_process(tmp_path_factory) -> Path:
    """The reference: one process, in-process ``main``, full ML-1M item texts."""
    root = tmp_path_factory.mktemp("one")
    assert main(["--encoder", "tiny-llama", "--cache-dir", str(root), *COMMON]) == 0
    return root


def test_one_process_cache_is_complete(one_process, data_dir):
    from harness.data import load_dataset

    feats = load_features(load_dataset("ml-1m"), "tiny-llama", "text", cache_root=one_process)
    m = feats.manifest
    assert feats.matrix.shape == (N_ML1M, 32) and feats.matrix.dtype == np.float32
    assert isinstance(feats.matrix, np.memmap)  # memory-mapped, not read into RAM
    assert feats.valid.all() and m["n_valid"] == N_ML1M and m["failures"] == []
    assert m["encoder"] == "tiny-llama" and m["dim"] == 32 and m["pooling"] == "last" and m["dtype"] == "float32"
    assert m["revision"] == "random-init (seeded)" and m["versions"]["torch"]
    assert m["throughput"]["items"] == N_ML1M and m["throughput"]["items_per_s"] > 0 and m["throughput"]["tokens_per_s"] > 0
    assert m["throughput"]["padded_tokens"] >= m["throughput"]["tokens"] > N_ML1M
    assert m["peak_memory"]["rss_bytes_max_rank"] > 0
    assert m["chunks"] == {"total": 14, "encoded_this_run": 14, "reused": 0}
    assert np.abs(feats.matrix).sum(1).min() > 0  # every row really encoded


def test_rerun_of_complete_cache_does_nothing(one_process, capfd):
    before = (folder(one_process) / "manifest.json").stat().st_mtime_ns
    assert main(["--encoder", "tiny-llama", "--cache-dir", str(one_process), *COMMON]) == 0
    assert "already complete" in capfd.readouterr().err
    assert (folder(one_process) / "manifest.json").stat().st_mtime_ns == before


def test_torchrun_two_processes_equal_one_process(one_process, tmp_path):
    torchrun(["--encoder", "tiny-llama", "--cache-dir", str(tmp_path), *COMMON])
    shards = [read_shard(p) for p in finished_chunks(folder(tmp_path) / "shards").values()]
    index = np.concatenate([s.index for s in shards])
    assert np.array_equal(np.sort(index), np.arange(N_ML1M))  # every item exactly once
    writers = {s.stats["rank"] for s in shards}
    assert writers == {0, 1}
    two = np.load(folder(tmp_path) / "features.npy")
    one = np.load(folder(one_process) / "features.npy")
    assert np.array_equal(two, one)  # bitwise: same chunks, same batches, whatever the world size
    manifest = json.loads((folder(tmp_path) / "manifest.json").read_text())
    assert manifest["world_size"] == 2 and manifest["fingerprint"] == json.loads(
        (folder(one_process) / "manifest.json").read_text())["fingerprint"]
    assert sorted(r["rank"] for r in manifest["ranks"]) == [0, 1]
    assert sum(r["items"] for r in manifest["ranks"]) == N_ML1M


def test_accelerate_launch_two_processes(one_process, tmp_path):
    """``accelerate launch`` with the shipped config (bf16 applies to GPUs only; ``--cpu`` keeps float32)
    on the first 512 items: bitwise equal to one process on the same 512, and equal to float tolerance to
    the full run's rows (same items, other batch companions)."""
    args = ["--encoder", "tiny-llama", "--limit", "512", *COMMON]
    run_launcher([str(BIN / "accelerate"), "launch", "--config_file", "accelerate_config.yaml", "--num_processes", "2",
                  "--main_process_port", str(_port()), "harness/encode.py", "--cache-dir", str(tmp_path / "two"), *args])
    assert main(["--cache-dir", str(tmp_path / "one"), *args]) == 0
    two = folder(tmp_path / "two", dataset="ml-1m.first512")
    manifest = json.loads((two / "manifest.json").read_text())
    assert manifest["world_size"] == 2 and manifest["n_items"] == 512
    feats = np.load(two / "features.npy")
    assert np.array_equal(feats, np.load(folder(tmp_path / "one", dataset="ml-1m.first512") / "features.npy"))
    np.testing.assert_allclose(feats, np.load(folder(one_process) / "features.npy")[:512], rtol=1e-4, atol=1e-5)


def test_threads_one_by_default_or_as_asked_and_the_callers_count_is_kept(one_process, tmp_path, monkeypatch):
    """One intra-op thread per CPU process unless asked (harness.encoding.threads: the count can change a last bit,
    so it never comes from the machine); an in-process encode restores the caller's count."""
    assert json.loads((folder(one_process) / "manifest.json").read_text())["cpu_threads"] == 1
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    before = torch.get_num_threads()
    assert main(["--encoder", "tiny-llama", "--threads", "3", "--cache-dir", str(tmp_path), *COMMON]) == 0
    assert torch.get_num_threads() == before
    assert json.loads((folder(tmp_path) / "manifest.json").read_text())["cpu_threads"] == 3
    np.testing.assert_allclose(np.load(folder(tmp_path) / "features.npy"), np.load(folder(one_process) / "features.npy"),
                               rtol=0, atol=1e-6)


def test_unknown_encoder_is_a_clear_error(tmp_path):
    with pytest.raises(KeyError, match="unknown encoder 'tiny-lama'.*tiny-llama"):
        main(["--encoder", "tiny-lama", "--cache-dir", str(tmp_path), *COMMON])


def test_wrong_modality_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="encodes text, not image"):
        main(["--encoder", "tiny-llama", "--modality", "image", "--cache-dir", str(tmp_path), *COMMON])


def test_bad_flag_values_name_valid_options(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["--encoder", "tiny-llama", "--strategy", "fsdp", "--cache-dir", str(tmp_path), *COMMON])
    assert "choose from 'ddp', 'zero3'" in capsys.readouterr().err
