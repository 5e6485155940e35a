"""The encode job at scale, as real processes (gloo on CPU): every present dataset in one run, the
design card's launch commands on a machine without GPUs, two torchrun node agents (a two-node job on
one machine), a killed rank, and the Slurm scripts' argument handling (run with bash, no Slurm)."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import numpy as np
from node_agents import PY, REPO, env, finish, free_port, kill_node1_rank_after_its_first_shard, start_agents, stop

from harness.encode import main
from harness.encoding.shards import finished_chunks

SMALL = ["--encoder", "tiny-llama", "--cpu", "--chunk-size", "64", "--batch-tokens", "256"]


def _folder(root: Path, dataset: str) -> Path:
    return root / "features" / dataset / "tiny-llama" / "text"


def _same_cache(a: Path, b: Path) -> None:
    for name in ("features.npy", "valid.npy"):
        assert (a / name).read_bytes() == (b / name).read_bytes(), name


# ----------------------------------------------------------------------------- A: every present dataset


def test_without_dataset_every_present_dataset_is_encoded(tmp_path, data_dir, capfd):
    data = tmp_path / "data"
    data.mkdir()
    for name in ("ml-100k", "ml-1m"):
        (data / name).symlink_to(data_dir / name)
    (data / "broken").mkdir()  # a RecBole folder dataset that is present but cannot be read
    (data / "broken" / "broken.inter").write_text("not a header\n\x00\x01garbage\n")
    (data / "amazon-beauty").mkdir()  # registered but its files are missing: not present, not tried
    args = [*SMALL, "--no-progress", "--limit", "48", "--data-dir", str(data), "--cache-dir", str(tmp_path / "c")]

    assert main(args) == 1  # one dataset failed: non-zero, after the others ran
    err = capfd.readouterr().err
    summary = err[err.index("encode summary"):]
    assert "3 target(s)" in summary and "2 ok, 1 failed" in summary, summary
    assert "ml-100k / tiny-llama: encoded" in summary and "ml-1m / tiny-llama: encoded" in summary
    assert "broken / tiny-llama: FAILED" in summary and "amazon-beauty" not in summary
    for key in ("ml-100k.first48", "ml-1m.first48"):
        assert np.load(_folder(tmp_path / "c", key) / "features.npy").shape == (48, 32)

    assert main(args) == 1  # finished ones are skipped
    summary = capfd.readouterr().err
    assert summary.count("already complete") >= 2 and "ml-1m / tiny-llama: already complete" in summary


# ----------------------------------------------------------------------------- A: no GPUs, one clear error


def test_multi_gpu_launch_without_gpus_is_one_clear_error(tmp_path):
    cmd = [str(Path(PY).parent / "accelerate"), "launch", "--config_file", "accelerate_config.yaml", "--num_processes", "2",
           "--main_process_port", str(free_port()), "harness/encode.py", "--encoder", "tiny-llama", "--dataset", "ml-1m",
           "--cache-dir", str(tmp_path)]
    start = time.monotonic()
    proc = subprocess.run(cmd, cwd=REPO, env=env(CUDA_VISIBLE_DEVICES=""), capture_output=True, text=True, timeout=240)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert out.count("has 0 CUDA GPU(s) but the launcher started 2 processes") == 1, out[-4000:]
    assert 'harness/encode.py", line' not in out and "harness/encoding" not in out  # no traceback of ours
    assert not (tmp_path / "features").exists()
    print(f"one clear error in {time.monotonic() - start:.1f}s")


def test_node_launcher_without_gpu_stops_before_launching(tmp_path):
    """slurm/encode.sh's launcher (``harness encode-node``) on a node without GPUs: one clear line, nothing started."""
    environ = env(CUDA_VISIBLE_DEVICES="")
    for key in ("SLURM_JOB_ID", "SLURM_GPUS_ON_NODE", "SLURM_JOB_NUM_NODES", "SLURM_JOB_NODELIST"):
        environ.pop(key, None)
    proc = subprocess.run([PY, "-m", "harness.cli", "encode-node", "--encoder", "llama-7b", "--cache-dir", str(tmp_path)],
                          cwd=REPO, env=environ, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1 and proc.stdout == ""
    assert proc.stderr.count("\n") == 1 and "no GPU on" in proc.stderr and "--cpu" in proc.stderr
    assert not any(tmp_path.iterdir())


# ----------------------------------------------------------------------------- B, C: two node agents


def test_two_node_agents_give_the_one_process_cache(tmp_path):
    args = [*SMALL, "--dataset", "ml-1m", "--limit", "640"]
    assert main([*args, "--no-progress", "--cache-dir", str(tmp_path / "one")]) == 0
    results = finish(start_agents([*args, "--cache-dir", str(tmp_path / "two")], env()))
    for rc, text in results:
        assert rc == 0, text[-5000:]
    one, two = _folder(tmp_path / "one", "ml-1m.first640"), _folder(tmp_path / "two", "ml-1m.first640")
    _same_cache(one, two)
    writers = {int(p.name.split("-")[0]) for p in finished_chunks(two / "shards").values()}
    assert writers == {0, 1}  # chunks were dealt over both nodes' ranks
    log = "".join(text for _, text in results)
    assert "\r" not in log and "items (" in log and "all ranks)" in log  # progress for the whole job, plain lines in logs


def test_a_killed_rank_ends_the_job_in_bounded_time_and_a_rerun_resumes(tmp_path):
    args = [*SMALL, "--dataset", "ml-1m", "--limit", "640", "--no-progress", "--collective-timeout", "60"]
    root = tmp_path / "killed"
    shards = _folder(root, "ml-1m.first640") / "shards"
    procs = start_agents([*args, "--cache-dir", str(root)], env(HARNESS_ENCODE_SLOW_S="0.3"))
    try:
        killed, _ = kill_node1_rank_after_its_first_shard(procs, shards)
        results = finish(procs, timeout=120)
        took = time.monotonic() - killed
    finally:
        stop(procs)
    assert all(rc != 0 for rc, _ in results)
    log = "".join(text for _, text in results)
    assert "collective failed" in log and "rerun the same command to resume" in log, log[-5000:]
    assert took < 90, took
    assert not (shards.parent / "manifest.json").exists()
    done = len(finished_chunks(shards))
    assert 0 < done < 10

    assert main([*args, "--cache-dir", str(root)]) == 0  # resume in one process
    assert main([*args, "--cache-dir", str(tmp_path / "clean")]) == 0
    _same_cache(_folder(root, "ml-1m.first640"), _folder(tmp_path / "clean", "ml-1m.first640"))
    print(f"survivor exited {took:.1f}s after the kill; {done} of 10 shards kept")


# ----------------------------------------------------------------------------- trust_remote_code


def test_remote_code_encoder_fails_alone_and_the_config_key_is_off_by_default(tmp_path):
    from harness import config as C
    from harness.encoding import EncodeOptions, encode_many

    cfg = C.load(overrides=["features.text_encoder=chatglm3-6b"])
    assert cfg.features.trust_remote_code is False
    on = C.load(overrides=["features.text_encoder=chatglm3-6b", "features.trust_remote_code=true"])
    assert on.features.trust_remote_code is True and C.cell_key(on) == C.cell_key(cfg)  # a permission, not identity

    cache = str(tmp_path)
    outcomes = encode_many([("ml-100k", None, EncodeOptions("chatglm3-6b", cache_dir=cache, cpu=True, limit=16)),
                            ("ml-100k", None, EncodeOptions("tiny-llama", cache_dir=cache, cpu=True, limit=16, progress=False))])
    assert [o.state for o in outcomes] == ["failed", "encoded"]  # one failing encoder does not stop the next
    assert "trust_remote_code" in outcomes[0].error and "--trust-remote-code" in outcomes[0].error
