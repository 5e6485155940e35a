"""Fault injection on the feature cache: every fault is repaired or refused, nothing is lost.

- a truncated / bit-flipped / emptied shard is set aside as ``*.corrupt`` and its chunk encoded again;
- deleted or damaged merged files are re-merged from the shards (never reported complete);
- two real encode processes on one folder: the second waits, ``--overwrite`` and ``--no-wait`` are refused;
- a stale merge temporary is removed, a merge that cannot fit on disk is refused before it starts;
- NaN / inf rows from the encoder are per-item failures; a modality with no valid row is refused at load.

Each repaired cache is compared byte for byte with a clean run. See docs/RELIABILITY.md.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import psutil
import pytest
import torch

from harness.data import ItemTable, SequenceDataset
from harness.encode import main
from harness.encoding import FolderLocked, encode_dataset, ensure_features
from harness.encoding.merge import NONFINITE, MergeError
from harness.encoding.shards import finished_chunks
from harness.features import (
    CacheCorrupt,
    NoValidFeatures,
    feature_dir,
    load_features,
)

REPO = Path(__file__).resolve().parents[1]
N, CHUNKS = 640, 10
ARGS = ["--encoder", "tiny-llama", "--dataset", "ml-1m", "--cpu", "--no-progress", "--limit", str(N), "--chunk-size", "64"]
SUB = Path("features") / f"ml-1m.first{N}" / "tiny-llama" / "text"


def _env() -> dict:
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    """A clean, uninterrupted run: what every repaired cache must equal byte for byte."""
    root = tmp_path_factory.mktemp("clean")
    assert main(["--cache-dir", str(root), *ARGS]) == 0
    return root / SUB


def _copy(reference: Path, root: Path, complete: bool = True) -> Path:
    """The reference cache copied under ``root``; ``complete=False``: as a job killed before its merge left it."""
    folder = root / SUB
    shutil.copytree(reference, folder)
    if not complete:
        for name in ("manifest.json", "features.npy", "valid.npy"):
            (folder / name).unlink()
    return folder


def _assert_equal_to(folder: Path, reference: Path) -> None:
    for name in ("features.npy", "valid.npy"):
        assert (folder / name).read_bytes() == (reference / name).read_bytes(), name
    ref_manifest = json.loads((reference / "manifest.json").read_text())
    assert json.loads((folder / "manifest.json").read_text())["merged"] == ref_manifest["merged"]


def _flip(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x40
    path.write_bytes(bytes(data))


def _damage_shard(path: Path, how: str) -> None:
    size = path.stat().st_size
    if how == "truncate":
        os.truncate(path, size // 2)
    elif how == "empty":
        os.truncate(path, 0)
    elif how == "flip-data":
        _flip(path, size - 3000)  # inside the float32 feature rows
    elif how == "flip-header":
        _flip(path, 40)  # inside the safetensors JSON header
    else:
        raise ValueError(how)


# ----------------------------------------------------------------------------- corrupt shards


@pytest.mark.parametrize("how", ["truncate", "empty", "flip-data", "flip-header"])
def test_corrupt_shard_is_set_aside_and_encoded_again(reference, tmp_path, capfd, how):
    folder = _copy(reference, tmp_path, complete=False)  # a killed job's shards, one of them damaged
    victim = finished_chunks(folder / "shards")[3]
    _damage_shard(victim, how)
    damaged = victim.read_bytes()

    assert main(["--cache-dir", str(tmp_path), *ARGS]) == 0
    err = capfd.readouterr().err
    assert f"shard {victim} is corrupt" in err and f"set aside as {victim.name}.corrupt" in err
    assert (folder / "shards" / f"{victim.name}.corrupt").read_bytes() == damaged  # kept, not deleted
    assert len(finished_chunks(folder / "shards")) == CHUNKS
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["chunks"] == {"total": CHUNKS, "encoded_this_run": 1, "reused": CHUNKS - 1}
    _assert_equal_to(folder, reference)


def test_every_shard_is_verified_before_the_merge_and_by_it(reference, tmp_path):
    """All shards present, one damaged: the scan before the merge sets it aside and the run encodes that
    chunk alone; a shard damaged after the scan is refused by the merge itself, named and set aside."""
    folder = _copy(reference, tmp_path, complete=False)
    victim = finished_chunks(folder / "shards")[7]
    _damage_shard(victim, "flip-data")
    assert main(["--cache-dir", str(tmp_path), *ARGS]) == 0  # the resume scan catches it before the merge
    assert (folder / "shards" / f"{victim.name}.corrupt").is_file()
    _assert_equal_to(folder, reference)

    from harness.encoding.merge import merge_shards  # damage after the scan: the merge itself refuses it

    again = finished_chunks(folder / "shards")[7]
    _damage_shard(again, "truncate")
    with pytest.raises(MergeError, match=rf"shard {again} is corrupt.*set aside as {again.name}\.corrupt"):
        merge_shards(folder, N, 32)
    assert (folder / "shards" / f"{again.name}.corrupt").is_file() and not again.exists()
    _assert_equal_to(folder, reference)  # the failed merge published nothing


# ----------------------------------------------------------------------------- merged files


@pytest.mark.parametrize(("name", "how"), [("features.npy", "delete"), ("features.npy", "flip"),
                                           ("valid.npy", "delete"), ("valid.npy", "truncate")])
def test_damaged_merged_files_are_merged_again(reference, tmp_path, capfd, name, how):
    folder = _copy(reference, tmp_path)
    path = folder / name
    if how == "delete":
        path.unlink()
    elif how == "flip":
        _flip(path, path.stat().st_size - 5)
    else:
        os.truncate(path, path.stat().st_size - 1)
    with pytest.raises(CacheCorrupt, match=rf"{name}.*(missing|bytes|sha256).*harness encode"):
        load_features(_first(), "tiny-llama", "text", cache_root=tmp_path)  # never loaded as it is

    assert main(["--cache-dir", str(tmp_path), *ARGS]) == 0
    err = capfd.readouterr().err
    assert "already complete" not in err and "merging it again from its shards" in err
    assert f"all {CHUNKS} shards are there and verified" in err  # merged without loading the encoder
    _assert_equal_to(folder, reference)


def test_ensure_features_repairs_a_damaged_cache_by_itself(reference, tmp_path):
    folder = _copy(reference, tmp_path)
    (folder / "features.npy").unlink()
    feats = ensure_features(_first(), "tiny-llama", "text", cache_root=tmp_path)
    assert feats.matrix.shape == (N, 32)
    _assert_equal_to(folder, reference)


def _first() -> SequenceDataset:
    """The first N ML-1M items as the dataset the ``--limit N`` cache was built from."""
    from harness.data import load_dataset

    items = load_dataset("ml-1m").items
    table = ItemTable(raw_ids=items.raw_ids[:N], texts=items.texts[:N], images=items.images[:N])
    return SequenceDataset(name=f"ml-1m.first{N}", user_ids=[], sequences=[], items=table)


def test_cache_from_before_checksums_is_adopted(reference, tmp_path, capfd):
    folder = _copy(reference, tmp_path)
    manifest = json.loads((folder / "manifest.json").read_text())
    recorded = manifest.pop("merged")
    (folder / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(CacheCorrupt, match="records no checksums"):
        load_features(_first(), "tiny-llama", "text", cache_root=tmp_path)
    assert main(["--cache-dir", str(tmp_path), *ARGS]) == 0
    assert "recorded the checksums of its merged files" in capfd.readouterr().err
    assert json.loads((folder / "manifest.json").read_text())["merged"] == recorded


def test_stale_merge_temporary_is_removed(reference, tmp_path, capfd):
    """What a merge SIGKILLed part-way leaves: shards, no manifest, a half-written temporary matrix."""
    folder = _copy(reference, tmp_path, complete=False)
    stale = folder / ".features.npy.deadhost.99999.tmp.npy"
    stale.write_bytes(b"\x93NUMPY half a matrix")
    assert main(["--cache-dir", str(tmp_path), *ARGS]) == 0
    assert f"removed {stale.name}" in capfd.readouterr().err
    assert not stale.exists() and not list(folder.glob(".*.tmp*"))
    _assert_equal_to(folder, reference)


def test_merge_checks_free_disk_space_first(reference, tmp_path, monkeypatch):
    folder = _copy(reference, tmp_path, complete=False)
    shards = {p.name: p.read_bytes() for p in finished_chunks(folder / "shards").values()}
    real = shutil.disk_usage
    monkeypatch.setattr("harness.encoding.merge.shutil.disk_usage",
                        lambda p: real(p)._replace(free=1000))  # a nearly full disk
    with pytest.raises(MergeError, match=r"not enough free disk space to merge .*need 82,816 bytes.*1,000 bytes are free"):
        main(["--cache-dir", str(tmp_path), *ARGS])
    assert not (folder / "features.npy").exists() and not (folder / "manifest.json").exists()
    assert not list(folder.glob(".*.tmp*"))
    assert {p.name: p.read_bytes() for p in finished_chunks(folder / "shards").values()} == shards
    monkeypatch.setattr("harness.encoding.merge.shutil.disk_usage", real)
    assert main(["--cache-dir", str(tmp_path), *ARGS]) == 0
    _assert_equal_to(folder, reference)


# ----------------------------------------------------------------------------- one writer per folder


def _tree(pid: int) -> list[psutil.Process]:
    parent = psutil.Process(pid)
    return [parent, *parent.children(recursive=True)]


def _wait_for(predicate, what: str, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def test_two_concurrent_encodes_one_waits(reference, tmp_path):
    """Job A (torchrun, 2 processes) is frozen (SIGSTOP) part-way, holding the folder. Job B (a second
    real process) waits for it; --overwrite and --no-wait are refused; nothing of A's is touched. When A
    resumes it finishes, B then finds the cache complete, and the cache equals one clean run."""
    folder = tmp_path / SUB
    cmd_a = [str(Path(sys.executable).parent / "torchrun"), "--standalone", "--nproc_per_node=2", "harness/encode.py",
             "--cache-dir", str(tmp_path), *ARGS]
    a_err, b_err = tmp_path / "a.stderr", tmp_path / "b.stderr"
    with open(a_err, "w") as fh:
        a = subprocess.Popen(cmd_a, cwd=REPO, env=_env(), stdout=subprocess.DEVNULL, stderr=fh)
    b = None
    try:
        _wait_for(lambda: a.poll() is not None or len(finished_chunks(folder / "shards")) >= 1, "A's first shard")
        assert a.poll() is None, a_err.read_text()[-4000:]
        procs = _tree(a.pid)
        for p in procs:
            p.send_signal(signal.SIGSTOP)
        holder = (folder / ".lock").read_text()
        assert holder.startswith("encode job pid ") and "harness/encode.py" in holder
        frozen = {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in (folder / "shards").iterdir()}

        with open(b_err, "w") as fh:
            b = subprocess.Popen([sys.executable, "-m", "harness.encode", "--cache-dir", str(tmp_path), *ARGS],
                                 cwd=REPO, env=_env(), stdout=subprocess.DEVNULL, stderr=fh)
        _wait_for(lambda: "waiting for it to finish" in b_err.read_text(), "B to wait")
        assert f"{folder} is in use: encode job pid" in b_err.read_text()

        with pytest.raises(FolderLocked, match=r"in use: encode job pid \d+.*--overwrite refused"):
            main(["--cache-dir", str(tmp_path), *ARGS, "--overwrite"])
        with pytest.raises(FolderLocked, match=r"in use: encode job pid \d+.*rerun without --no-wait"):
            main(["--cache-dir", str(tmp_path), *ARGS, "--no-wait"])
        time.sleep(0.5)
        assert b.poll() is None  # still waiting
        now = {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in (folder / "shards").iterdir()}
        assert now == frozen  # A's shards and in-flight temporaries untouched by B, --overwrite, --no-wait

        for p in procs:
            p.send_signal(signal.SIGCONT)
        assert a.wait(timeout=240) == 0, a_err.read_text()[-4000:]
        assert b.wait(timeout=240) == 0, b_err.read_text()[-4000:]
    finally:
        for proc in (a, b):
            if proc is not None and proc.poll() is None:
                for p in _tree(proc.pid):
                    p.send_signal(signal.SIGCONT)
                    p.kill()
                proc.wait()
    assert "already complete" in b_err.read_text()
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["world_size"] == 2 and manifest["chunks"]["encoded_this_run"] == CHUNKS
    _assert_equal_to(folder, reference)


# ----------------------------------------------------------------------------- NaN rows, empty modalities


class _Poisoned:
    """A real tiny encoder whose rows come out NaN (or inf) for items whose text starts with POISON."""

    def __init__(self, inner):
        self.inner, self.info = inner, inner.info

    def lengths(self, raws):
        return self.inner.lengths(raws)

    def preprocess(self, raws):
        return {**self.inner.preprocess(raws), "poison": torch.tensor([r.startswith("POISON") for r in raws])}

    def encode(self, batch):
        out = self.inner.encode({k: v for k, v in batch.items() if k != "poison"}).clone()
        rows = batch["poison"].nonzero().flatten()
        out[rows[::2]] = float("nan")
        out[rows[1::2], 0] = float("inf")
        return out


def _texts_dataset(name: str, texts: list[str]) -> SequenceDataset:
    n = len(texts)
    items = ItemTable(raw_ids=[f"i{k}" for k in range(n)], texts=texts, images=[""] * n)
    return SequenceDataset(name=name, user_ids=["u0"], sequences=[np.arange(n, dtype=np.int64)], items=items)


def test_nonfinite_rows_are_failures_not_features(tmp_path, monkeypatch):
    texts = [f"Movie number {k} (199{k % 10})" for k in range(12)]
    poisoned = [2, 5, 9]
    for k in poisoned:
        texts[k] = "POISON " + texts[k]
    ds = _texts_dataset("nan", texts)
    encode_dataset(ds, "tiny-bert", cache_root=tmp_path / "clean", cpu=True, progress=False, chunk_size=4)
    clean = load_features(ds, "tiny-bert", "text", cache_root=tmp_path / "clean")
    assert clean.valid.all() and np.isfinite(clean.matrix).all()

    import encoders

    real = encoders.create_encoder
    monkeypatch.setattr(encoders, "create_encoder", lambda *a, **k: _Poisoned(real(*a, **k)))
    encode_dataset(ds, "tiny-bert", cache_root=tmp_path / "nan", cpu=True, progress=False, chunk_size=4)
    feats = load_features(ds, "tiny-bert", "text", cache_root=tmp_path / "nan")

    assert feats.valid.tolist() == [k not in poisoned for k in range(12)]
    assert feats.manifest["n_valid"] == 9
    assert feats.manifest["failures"] == [{"item": k, "reason": NONFINITE} for k in poisoned]
    assert np.isfinite(feats.matrix).all() and not feats.matrix[poisoned].any()
    rest = [k for k in range(12) if k not in poisoned]
    assert np.array_equal(feats.matrix[rest], clean.matrix[rest])  # the other rows are untouched
    table = np.asarray(feats.matrix[feats.valid])
    assert np.isfinite((table - table.mean(0)) / (table.std(0) + 1e-8)).all()  # a normalised table stays finite


def test_modality_with_no_valid_row_is_refused_at_load(tmp_path):
    n = 5
    items = ItemTable(raw_ids=[f"i{k}" for k in range(n)], texts=[f"t{k}" for k in range(n)], images=[""] * n)
    ds = SequenceDataset(name="no-images", user_ids=["u0"], sequences=[np.arange(n, dtype=np.int64)], items=items)
    message = (r"no-images has no usable item images: the image encoder tiny-resnet produced 0 valid rows for its 5 "
               r"items \(e\.g\. item 0: no image\); add image paths/URLs to the dataset or drop features\.image_encoder")
    with pytest.raises(NoValidFeatures, match=message):
        ensure_features(ds, "tiny-resnet", "image", cache_root=tmp_path)
    manifest = json.loads((feature_dir("no-images", "tiny-resnet", "image", tmp_path) / "manifest.json").read_text())
    assert manifest["n_valid"] == 0 and len(manifest["failures"]) == n  # the job itself completed and said so
    with pytest.raises(NoValidFeatures, match=message):
        load_features(ds, "tiny-resnet", "image", cache_root=tmp_path)
