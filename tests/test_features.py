"""Feature cache pieces: sharding, token-budget batching, fingerprint, atomic shards, merge, loading."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from harness.encode import shard
from harness.features.batching import (
    chunk_batches,
    length_sorted_chunks,
    token_budget_groups,
)
from harness.features.fingerprint import fingerprint
from harness.features.layout import encoder_key, feature_dir
from harness.features.merge import merge_shards
from harness.features.shards import (
    Shard,
    finished_chunks,
    read_shard,
    remove_stale_tmp,
    write_shard,
)

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


def test_token_budget_groups_hand_computed():
    # sorted longest first: pos1 (10), pos2 (5), pos3 (5), pos0 (3), pos4 (1); budget 12 padded tokens
    assert token_budget_groups([3, 10, 5, 5, 1], 12) == [[1], [2, 3], [0, 4]]
    # an input longer than the budget still gets encoded, alone
    assert token_budget_groups([50, 2, 2], 8) == [[0], [1, 2]]


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
    assert length_sorted_chunks([3, 10, 5, 5, 1, 7], 4) == [[1, 5, 2, 3], [0, 4]]
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
