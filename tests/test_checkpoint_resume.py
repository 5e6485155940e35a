"""A cell killed (SIGKILL) after an epoch's checkpoint resumes from it: bitwise the same metrics as an uninterrupted
run, in the same MLflow run, no epoch logged twice. Real processes, ML-100K, CPU, one thread."""

from __future__ import annotations

import random
import subprocess
import sys
import time

import numpy as np
import torch
from mlflow import MlflowClient
from services import REPO, base_env

from harness import archive, checkpoint
from harness.config import load
from harness.run_schema import EPOCH_SECONDS
from harness.tracking import MemoryLogger
from harness.train import fit, run, setup

EPOCHS = 3
CKPT = "train.checkpoint_dir"
KEYS = ("valid/hr_at_20", "valid/ndcg_at_10", "train/loss")


def test_rng_states_round_trip_through_weights_only_load(tmp_path):
    random.seed(3), np.random.seed(3), torch.manual_seed(3)
    checkpoint.save(tmp_path, {"rng": checkpoint.rng_state()})
    expected = (random.random(), np.random.rand(), torch.rand(1).item())
    checkpoint.set_rng_state(checkpoint.load(tmp_path)["rng"])  # load uses weights_only=True
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == expected
    checkpoint.remove(tmp_path)
    assert checkpoint.load(tmp_path) is None


def cell_cmd(ckpt_root) -> list[str]:
    return [sys.executable, "-m", "harness.sweep", str(REPO / "sweeps" / "ci.yaml"), "--set", f"train.epochs={EPOCHS}",
            "--set", "train.patience=0", "--set", f"train.checkpoint_dir={ckpt_root}", "--index", "0"]


def cell_run(uri: str):
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name("ci").experiment_id
    runs = [r for r in client.search_runs([exp]) if r.data.tags.get("harness.role") == "cell"]
    assert len(runs) == 1, f"expected one cell run, got {len(runs)}"
    history = {k: [(m.step, m.value) for m in client.get_metric_history(runs[0].info.run_id, k)] for k in KEYS}
    return runs[0], history


def kill_after_first_checkpoint(cmd: list[str], env: dict[str, str], root) -> dict:
    """Start the cell, SIGKILL it once its first epoch checkpoint exists (during the second), return that checkpoint."""
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        end = time.monotonic() + 600
        while not list(root.rglob(checkpoint.FILE)):
            assert proc.poll() is None and time.monotonic() < end, "the cell ended before its first checkpoint"
            time.sleep(0.05)
        proc.kill()
    finally:
        proc.wait()
    saved = torch.load(next(root.rglob(checkpoint.FILE)), weights_only=True)
    assert 1 <= saved["epochs"] < EPOCHS
    return saved


def resume(cmd: list[str], env: dict[str, str], saved: dict) -> None:
    resumed = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stdout[-3000:]
    assert f"after {saved['epochs']} epochs" in resumed.stdout


def test_killed_cell_resumes_from_its_checkpoint_bitwise(tmp_path, data_dir, session_cache):
    env = base_env(data_dir, session_cache)
    clean_uri, killed_uri = f"sqlite:///{tmp_path}/clean.db", f"sqlite:///{tmp_path}/killed.db"
    subprocess.run(cell_cmd(tmp_path / "ckpt-clean"), env={**env, "MLFLOW_TRACKING_URI": clean_uri}, check=True,
                   capture_output=True, timeout=600)
    assert not any((tmp_path / "ckpt-clean").rglob(checkpoint.FILE)), "a finished cell leaves no checkpoint"

    root, killed_env = tmp_path / "ckpt-killed", {**env, "MLFLOW_TRACKING_URI": killed_uri}
    resume(cell_cmd(root), killed_env, kill_after_first_checkpoint(cell_cmd(root), killed_env, root))

    clean, clean_history = cell_run(clean_uri)
    killed, killed_history = cell_run(killed_uri)
    assert killed.info.status == "FINISHED" and "error" not in killed.data.tags
    assert killed_history == clean_history  # every epoch once, bitwise equal
    assert [s for s, _ in killed_history["train/loss"]] == list(range(EPOCHS))
    tests = {k: v for k, v in clean.data.metrics.items() if k.startswith("test/")}
    assert tests and {k: killed.data.metrics[k] for k in tests} == tests
    assert not list(root.rglob(checkpoint.FILE))


def archived(folder) -> dict:
    records = [r for r in map(archive.load_record, folder.rglob("*.json")) if "cell_key" in r]
    assert len(records) == 1, f"expected one cell record, got {len(records)}"
    return records[0]


def test_killed_archive_cell_continues_its_record_bitwise(tmp_path, data_dir, session_cache):
    """The same with ``--archive``: the checkpoint carries the record so far, the resumed cell finishes it."""
    env = base_env(data_dir, session_cache)
    clean = cell_cmd(tmp_path / "ckpt-clean") + ["--archive", str(tmp_path / "clean")]
    subprocess.run(clean, env=env, check=True, capture_output=True, timeout=600)
    root = tmp_path / "ckpt-killed"
    killed = cell_cmd(root) + ["--archive", str(tmp_path / "killed")]
    saved = kill_after_first_checkpoint(killed, env, root)
    assert saved["log"]["run_id"] == saved["run_id"]
    assert not [p for p in (tmp_path / "killed").rglob("*.json") if p.name != archive.SWEEP_FILE]  # SIGKILL: no record
    local = killed[:killed.index("--index")] + ["--local", "--where", "dim=16", "--where", "seed=1", "--logs", str(tmp_path)]
    resumed = subprocess.run(local + ["--archive", str(tmp_path / "killed")], env=env, capture_output=True, text=True,
                             timeout=600)
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    assert "1 cells, 1 to run (1 from an epoch checkpoint) into" in resumed.stdout
    assert f"after {saved['epochs']} epochs" in (tmp_path / "cell-0000.log").read_text()

    whole, continued = archived(tmp_path / "clean"), archived(tmp_path / "killed")
    assert continued["status"] == "FINISHED" and continued["run_id"] == saved["run_id"]
    assert continued["start_time"] == saved["log"]["start_time"]
    assert continued["params"] | {CKPT: ""} == whole["params"] | {CKPT: ""}  # the roots differ
    assert {k: continued["history"][k] for k in KEYS} == {k: whole["history"][k] for k in KEYS}  # bitwise
    assert [s for s, _ in continued["history"][EPOCH_SECONDS]] == list(range(EPOCHS))  # every epoch once
    tests = {k: v for k, v in whole["metrics"].items() if k.startswith("test/")}
    assert tests and {k: continued["metrics"][k] for k in tests} == tests and continued["ranks"] == whole["ranks"]
    assert not list(root.rglob(checkpoint.FILE))


def test_kdsr_run_resumed_from_an_epoch_checkpoint_equals_one_run(tmp_path, monkeypatch):
    """In process, KDSR (student heads, asynchronous LR, monitor) on MiniLM features: 1 epoch + a resumed run to 3
    gives the per-epoch history and test metrics of one 3-epoch run, bitwise."""
    monkeypatch.setenv("TQDM_DISABLE", "1")
    base = ["dataset=ml-100k", "dataset.protocol=leave-one-out", "dataset.max_len=20", "model.dim=16", "model.layers=1",
            "train.device=cpu", "train.batch_size=256", "train.threads=1", "train.patience=0", "model.items=finetune",
            "features.text_encoder=minilm-l6", "kdsr.enabled=true", "kdsr.async_epochs=3"]
    setup(load(overrides=base))  # features and teacher cached first: a run that builds them starts from other RNG states
    whole = MemoryLogger()
    final = run(load(overrides=base + ["train.epochs=3"]), whole)
    ckpt = f"train.checkpoint_dir={tmp_path}"
    first = MemoryLogger()
    fit(setup(load(overrides=base + ["train.epochs=1", ckpt])), first)
    rest = MemoryLogger()
    resumed = run(load(overrides=base + ["train.epochs=3", ckpt]), rest)
    per_epoch = lambda log: [m for m in log.metrics if m[2] is not None and "time" not in m[0] and "/" in m[0]
                             and not m[0].startswith(("test/", "best_"))]
    assert per_epoch(first) + per_epoch(rest) == per_epoch(whole)
    assert {k: v for k, v in resumed.items() if k.startswith("test/")} == {k: v for k, v in final.items() if k.startswith("test/")}
    assert not rest.params  # the header is in the run already
