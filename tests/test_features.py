"""Feature cache pieces: sharding, token-budget batching, fingerprint, atomic verified shards, merge, locks."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from harness.encoding.dist import shard
from harness.encoding.lock import FolderLock, FolderLocked
from harness.encoding.merge import NONFINITE, merge_shards
from harness.encoding.shards import (
    CorruptShard,
    Shard,
    finished_chunks,
    read_shard,
    remove_stale_tmp,
    set_aside,
    verified_chunks,
    write_shard,
)
from harness.encoding.token_batches import (
    chunk_batches,
    length_sorted_chunks,
    token_budget_groups,
)
from harness.features.fingerprint import fingerprint
from harness.features.layout import encoder_key, feature_dir
from harness.features.merged import file_record, verify_merged

REPO = Path(__file__).resolve().parents[1]

# ----------------------------------------------------------------------------- shard()


def test_shard_hand_computed():
    assert [list(shard(10, r, 3)) for r in range(3)] == [[0, 3, 6, 9], [1, 4, 7], [2, 5, 8]]
    assert [list(shard(2, r, 4)) for r in range(4)] == [[0], [1], [], []]


@pytest.mark.parametrize("n", [0, 1, 7, 100, 3416])
@pytest.mark.parametrize("world", [1, 2, 3, 8])
def test_shard_disjoint_covering_balanced(n, world):
    parts = [shard(n, r, world) for r in range(world)]
    flat = sorted(i for p in parts for i in p)
    assert flat == list(range(n))  # every item exactly once
    sizes = [len(p) for p in parts]
    assert max(sizes) - min(sizes) <= 1


def test_shard_rejects_bad_rank():
    with pytest.raises(ValueError, match="rank 2 is outside world size 2"):
        shard(10, 2, 2)


# ----------------------------------------------------------------------------- batching


def _lists(arrays) -> list[list[int]]:
    return [a.tolist() for a in arrays]


def _sorted_by_python(lengths: list[int]) -> list[int]:
    """The planning order as it was before numpy (Python ``sorted``): longest first, ties by index."""
    return sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))


def _groups_by_python(lengths: list[int], budget: int) -> list[list[int]]:
    """Token-budget groups as they were cut before numpy: one Python step per item."""
    groups: list[list[int]] = []
    for pos in _sorted_by_python(lengths):
        if groups and (len(groups[-1]) + 1) * lengths[groups[-1][0]] <= budget:
            groups[-1].append(pos)
        else:
            groups.append([pos])
    return groups


@pytest.mark.parametrize("seed", range(6))
def test_numpy_plan_equals_the_python_plan(seed):
    """Same chunks and batches as the Python planning had (so old shards and plans stay valid): random
    lengths with many ties (few distinct values), lengths over the budget, chunk sizes that do not divide."""
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 3000))
    lengths = rng.integers(1, [4, 40, 600][seed % 3], size=n).tolist()
    chunk_size, budget = int(rng.integers(1, 700)), int(rng.choice([1, 7, 64, 512, 4096]))
    order = _sorted_by_python(lengths)
    assert _lists(length_sorted_chunks(lengths, chunk_size)) == [order[s : s + chunk_size] for s in range(0, n, chunk_size)]
    assert _lists(token_budget_groups(lengths, budget)) == _groups_by_python(lengths, budget)
    items = rng.permutation(n).tolist()
    expected = [(tuple(items[p] for p in g), sum(lengths[p] for p in g), len(g) * max(lengths[p] for p in g))
                for g in _groups_by_python(lengths, budget)]
    assert [(b.items, b.tokens, b.padded) for b in chunk_batches(0, items, lengths, budget)] == expected


def test_token_budget_groups_hand_computed():
    # sorted longest first: pos1 (10), pos2 (5), pos3 (5), pos0 (3), pos4 (1); budget 12 padded tokens
    assert _lists(token_budget_groups([3, 10, 5, 5, 1], 12)) == [[1], [2, 3], [0, 4]]
    # an input longer than the budget still gets encoded, alone
    assert _lists(token_budget_groups([50, 2, 2], 8)) == [[0], [1, 2]]


def test_token_budget_never_exceeds_budget_and_keeps_every_item():
    rng = np.random.default_rng(0)
    lengths = rng.integers(1, 60, size=500).tolist()
    groups = token_budget_groups(lengths, 256)
    assert sorted(p for g in groups for p in g) == list(range(500))
    for g in groups:
        assert len(g) * max(lengths[p] for p in g) <= 256
        assert [lengths[p] for p in g] == sorted((lengths[p] for p in g), reverse=True)


def test_chunk_batches_count_real_and_padded_tokens():
    batches = chunk_batches(3, [10, 11, 12, 13, 14], [3, 10, 5, 5, 1], 12)
    assert [b.items for b in batches] == [(11,), (12, 13), (10, 14)]
    assert [(b.tokens, b.padded) for b in batches] == [(10, 10), (10, 10), (4, 6)]
    assert {b.chunk for b in batches} == {3}


def test_length_sorted_chunks_hand_computed():
    # lengths by item: 0:3 1:10 2:5 3:5 4:1 5:7 -> sorted longest first, ties by index: 1 5 2 3 0 4
    assert _lists(length_sorted_chunks([3, 10, 5, 5, 1, 7], 4)) == [[1, 5, 2, 3], [0, 4]]
    assert length_sorted_chunks([], 4) == []
    with pytest.raises(ValueError):
        length_sorted_chunks([1], 0)


def test_length_sorted_chunks_cut_less_padding_than_index_ranges():
    rng = np.random.default_rng(1)
    lengths = np.clip(rng.lognormal(np.log(20), 0.6, 2000), 2, 200).astype(int).tolist()

    def padded(chunks):
        return sum(b.padded for c, items in enumerate(chunks) for b in chunk_batches(c, items, [lengths[i] for i in items], 1024))

    by_index = [list(range(s, min(s + 256, 2000))) for s in range(0, 2000, 256)]
    assert padded(length_sorted_chunks(lengths, 256)) < 0.9 * padded(by_index)


# ----------------------------------------------------------------------------- fingerprint / layout


def test_fingerprint_is_sha256_of_length_prefixed_texts():
    h = hashlib.sha256(b"text\n2\n")
    for t in ("ab", ""):
        h.update(len(t.encode()).to_bytes(8, "little") + t.encode())
    assert fingerprint(["ab", ""], "text") == h.hexdigest()


def test_fingerprint_sees_content_order_and_boundaries():
    base = fingerprint(["a", "bc"], "text")
    assert fingerprint(["bc", "a"], "text") != base
    assert fingerprint(["ab", "c"], "text") != base  # same concatenation, other items
    assert fingerprint(["a", "bc", ""], "text") != base


def test_image_fingerprint_hashes_file_bytes(tmp_path):
    img = tmp_path / "a.jpg"
    img.write_bytes(b"\xff\xd8one")
    first = fingerprint([str(img), ""], "image")
    img.write_bytes(b"\xff\xd8two")  # same path, other bytes
    assert fingerprint([str(img), ""], "image") != first


def test_layout(tmp_path):
    assert feature_dir("ml-1m", "minilm-l6", "text", tmp_path) == tmp_path / "features/ml-1m/minilm-l6/text"
    key = encoder_key(str(tmp_path))
    assert key.startswith(tmp_path.name + "-") and len(key) == len(tmp_path.name) + 9
    assert encoder_key(f"local-dir:{tmp_path}") == key == encoder_key(str(tmp_path / "." ))
    with pytest.raises(ValueError, match="text, image"):
        feature_dir("ml-1m", "minilm-l6", "audio", tmp_path)


def test_default_cache_root_follows_env(tmp_path, monkeypatch):
    monkeypatch.setenv("HARNESS_CACHE_DIR", str(tmp_path))
    assert feature_dir("d", "e", "text") == tmp_path / "features/d/e/text"


# ----------------------------------------------------------------------------- shards and merge


def _shard(chunk: int, items: list[int], dim: int = 3) -> Shard:
    idx = np.array(items, dtype=np.int64)
    feats = np.stack([np.full(dim, i, np.float32) for i in items])
    valid = np.array([i % 5 != 0 for i in items])
    feats[~valid] = 0
    return Shard(chunk, idx, feats, valid, [{"item": i, "reason": "empty text"} for i in items if i % 5 == 0], {"seconds": 0.1})


def test_shard_roundtrip_and_atomic_names(tmp_path):
    path = write_shard(tmp_path, rank=1, shard=_shard(4, [8, 9, 10]))
    assert path.name == "00001-0000004.safetensors"
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temporary left behind
    back = read_shard(path)
    assert back.chunk == 4 and back.index.tolist() == [8, 9, 10]
    assert back.features[:, 0].tolist() == [8.0, 9.0, 0.0] and back.valid.tolist() == [True, True, False]
    assert back.failures == [{"item": 10, "reason": "empty text"}] and back.stats == {"seconds": 0.1}


def test_half_written_shard_is_not_finished_and_is_cleaned(tmp_path):
    write_shard(tmp_path, 0, _shard(0, [0, 1]))
    (tmp_path / ".00001-0000001.safetensors.999.tmp").write_bytes(b"half a shard")  # a killed writer
    assert list(finished_chunks(tmp_path)) == [0]
    remove_stale_tmp(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["00000-0000000.safetensors"]


def test_merge_puts_row_i_at_item_i(tmp_path):
    (tmp_path / "shards").mkdir()
    write_shard(tmp_path / "shards", 1, _shard(1, [4, 3, 5]))  # rows out of order inside a shard
    write_shard(tmp_path / "shards", 0, _shard(0, [0, 1, 2]))
    result = merge_shards(tmp_path, 6, 3)
    matrix = np.load(tmp_path / "features.npy", mmap_mode="r")
    assert matrix.dtype == np.float32 and matrix[:, 0].tolist() == [0, 1, 2, 3, 4, 0]
    assert np.load(tmp_path / "valid.npy").tolist() == [False, True, True, True, True, False]
    assert result.n_valid == 4 and [f["item"] for f in result.failures] == [0, 5]


def test_merge_refuses_missing_or_repeated_items(tmp_path):
    (tmp_path / "shards").mkdir()
    write_shard(tmp_path / "shards", 0, _shard(0, [0, 1, 2]))
    with pytest.raises(RuntimeError, match="2 missing"):
        merge_shards(tmp_path, 5, 3)
    write_shard(tmp_path / "shards", 0, _shard(1, [2, 3, 4]))
    with pytest.raises(RuntimeError, match="1 repeated"):
        merge_shards(tmp_path, 5, 3)
    assert not (tmp_path / "features.npy").exists()  # nothing half-merged is published
    assert [p.name for p in tmp_path.iterdir()] == ["shards"]


_MERGE_CHILD = """
import json, sys
from pathlib import Path
from harness.encoding.merge import merge_shards

def hwm():
    return next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM")) * 1024

before = hwm()
merge_shards(Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]))
print(json.dumps({"grew": hwm() - before}))
"""


def test_merge_writes_np_save_bytes_and_its_memory_does_not_grow_with_the_matrix(tmp_path):
    """Chunks of rows scattered over the whole file (as length-sorted chunks are), one of consecutive items,
    a NaN row: ``features.npy`` is byte for byte what ``np.save`` writes for the assembled matrix. The merge
    (a fresh process) grows its peak RSS by less than a third of the 123 MB matrix: written through a memory
    map, the file's pages counted in its RSS (the whole matrix and more, measured; benchmarks/merge_rss.py)."""
    n, dim, rng = 60_000, 512, np.random.default_rng(0)
    expected = rng.standard_normal((n, dim), dtype=np.float32)
    expected[7] = np.nan
    order = np.concatenate([np.arange(2048), 2048 + rng.permutation(n - 2048)])
    (tmp_path / "shards").mkdir()
    for c, lo in enumerate(range(0, n, 2048)):
        index = np.sort(order[lo : lo + 2048])
        write_shard(tmp_path / "shards", c % 2, Shard(c, index, expected[index], np.ones(len(index), dtype=bool)))
    expected[7] = 0  # a non-finite row is merged as a zero row, not valid
    proc = subprocess.run([sys.executable, "-c", _MERGE_CHILD, str(tmp_path), str(n), str(dim)], cwd=REPO,
                          capture_output=True, text=True, check=True)
    assert json.loads(proc.stdout)["grew"] < expected.nbytes / 3
    np.save(tmp_path / "expected.npy", expected)
    assert file_record(tmp_path / "features.npy")["sha256"] == file_record(tmp_path / "expected.npy")["sha256"]
    assert np.flatnonzero(~np.load(tmp_path / "valid.npy")).tolist() == [7]


# ----------------------------------------------------------------------------- verified shards


def test_shard_records_rows_and_digest_and_detects_any_damage(tmp_path):
    path = write_shard(tmp_path, 0, _shard(2, [4, 5, 6, 7]))
    good = path.read_bytes()
    back = read_shard(path)
    assert len(back.sha256) == 64 and back.index.tolist() == [4, 5, 6, 7]
    for offset in range(0, len(good), 7):  # every 7th byte: length prefix, header and data, one at a time
        damaged = bytearray(good)
        damaged[offset] ^= 0x01
        path.write_bytes(bytes(damaged))
        with pytest.raises(CorruptShard, match=str(path)):
            read_shard(path)
    for size in (0, 7, len(good) // 2, len(good) - 1):
        path.write_bytes(good[:size])
        with pytest.raises(CorruptShard, match="unreadable"):
            read_shard(path)
    path.write_bytes(good)
    assert read_shard(path).sha256 == back.sha256


def test_shard_without_digest_is_checked_for_shape_only(tmp_path):
    """Shards written before digests existed are still read (their structure is checked)."""
    from safetensors.numpy import save_file

    path = tmp_path / "00000-0000001.safetensors"
    save_file({"index": np.arange(3), "features": np.ones((3, 2), np.float32), "valid": np.ones(3, bool)},
              str(path), metadata={"chunk": "1", "failures": "[]", "stats": "{}"})
    assert read_shard(path).sha256 is None
    save_file({"index": np.arange(3), "features": np.ones((2, 2), np.float32), "valid": np.ones(3, bool)},
              str(path), metadata={"chunk": "1"})
    with pytest.raises(CorruptShard, match="inconsistent shapes"):
        read_shard(path)


def test_corrupt_shards_are_set_aside_never_deleted(tmp_path):
    for chunk in range(3):
        write_shard(tmp_path, 0, _shard(chunk, [2 * chunk, 2 * chunk + 1]))
    bad = finished_chunks(tmp_path)[1]
    bad.write_bytes(bad.read_bytes()[:-4])
    said = []
    ok = verified_chunks(tmp_path, said.append)
    assert sorted(ok) == [0, 2] and ok[2].index.tolist() == [4, 5] and ok[2].features.size == 0
    assert len(said) == 1 and str(bad) in said[0] and "set aside as 00000-0000001.safetensors.corrupt" in said[0]
    assert (tmp_path / "00000-0000001.safetensors.corrupt").is_file() and not bad.exists()
    bad.write_bytes(b"again")
    assert set_aside(bad).name == "00000-0000001.safetensors.corrupt.1"  # an earlier one is kept too
    assert sorted(finished_chunks(tmp_path)) == [0, 2]


def test_merge_records_checksums_and_drops_nonfinite_rows(tmp_path):
    (tmp_path / "shards").mkdir()
    shard = _shard(0, [0, 1, 2, 3])
    shard.features[1, 0], shard.features[2, 2] = np.nan, np.inf  # valid rows with NaN / inf (an old shard)
    write_shard(tmp_path / "shards", 0, shard)
    result = merge_shards(tmp_path, 4, 3)
    assert np.load(tmp_path / "valid.npy").tolist() == [False, False, False, True]
    assert np.isfinite(np.load(tmp_path / "features.npy")).all()
    assert result.failures == [{"item": 0, "reason": "empty text"}, {"item": 1, "reason": NONFINITE},
                               {"item": 2, "reason": NONFINITE}]
    assert result.n_valid == 1 and [s["rows"] for s in result.shards] == [4]
    manifest = {"merged": result.merged}
    assert result.merged["features.npy"] == file_record(tmp_path / "features.npy")
    assert verify_merged(tmp_path, manifest) is None
    (tmp_path / "valid.npy").write_bytes((tmp_path / "valid.npy").read_bytes()[:-1] + b"\x00")  # item 3 -> invalid
    assert "does not match the sha256" in verify_merged(tmp_path, manifest)
    (tmp_path / "features.npy").unlink()
    assert verify_merged(tmp_path, manifest).endswith("features.npy is missing")
    assert "records no checksums" in verify_merged(tmp_path, {})


# ----------------------------------------------------------------------------- folder locks


def test_job_lock_is_exclusive_and_names_its_holder(tmp_path):
    first = FolderLock(tmp_path).acquire(wait=False)
    with pytest.raises(FolderLocked, match=r"is in use: encode job pid \d+ on .* since .*\. try later"):
        FolderLock(tmp_path).acquire(wait=False, why="try later")
    first.release()
    assert (tmp_path / ".lock").read_text() == ""  # the card is wiped on release
    with FolderLock(tmp_path):
        pass


def test_writer_locks_are_shared_but_exclude_a_cleaner(tmp_path):
    a = FolderLock(tmp_path, ".writers.lock", shared=True).acquire(wait=False)
    b = FolderLock(tmp_path, ".writers.lock", shared=True).acquire(wait=False)  # ranks write side by side
    with pytest.raises(FolderLocked, match="processes of an earlier job"):
        FolderLock(tmp_path, ".writers.lock").acquire(wait=False)
    a.release()
    b.release()
    FolderLock(tmp_path, ".writers.lock").acquire(wait=False).release()


def test_lock_of_a_killed_process_is_free(tmp_path):
    code = ("import fcntl, sys, time; f = open(sys.argv[1], 'a+'); fcntl.flock(f, fcntl.LOCK_EX); "
            "f.write('encode job pid x'); f.flush(); print('locked', flush=True); time.sleep(60)")
    proc = subprocess.Popen([sys.executable, "-c", code, str(tmp_path / ".lock")], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "locked"
        with pytest.raises(FolderLocked):
            FolderLock(tmp_path).acquire(wait=False)
    finally:
        proc.kill()  # SIGKILL: no cleanup code runs
        proc.wait()
    start = time.monotonic()
    FolderLock(tmp_path).acquire(wait=False).release()  # the kernel dropped it with the process
    assert time.monotonic() - start < 1
