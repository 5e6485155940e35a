"""Bad inputs never stop the job; foreign caches are refused with a clear message.

Small real catalogues built in the test (tiny encoders, one process, in-process ``ensure_features``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from harness.data import ItemTable, SequenceDataset
from harness.encoding import encode_dataset, ensure_features
from harness.features import (
    CacheMissing,
    FingerprintMismatch,
    feature_dir,
    load_features,
)
from harness.features.manifest import PlanMismatch


def _dataset(name: str, texts: list[str] | None = None, images: list[str] | None = None) -> SequenceDataset:
    n = len(texts if texts is not None else images)
    items = ItemTable(raw_ids=[f"i{k}" for k in range(n)], texts=texts or [""] * n, images=images or [""] * n)
    return SequenceDataset(name=name, user_ids=["u0"], sequences=[np.arange(n, dtype=np.int64)], items=items)


def _images(tmp_path) -> list[str]:
    paths = []
    for k, color in enumerate([(255, 0, 0), (0, 128, 255), (20, 200, 20)]):
        p = tmp_path / f"ok{k}.png"
        Image.new("RGB", (40, 30), color).save(p)
        paths.append(str(p))
    corrupt = tmp_path / "corrupt.jpg"
    corrupt.write_bytes(b"\xff\xd8\xff\xe0 definitely not a jpeg")
    truncated = tmp_path / "truncated.png"
    truncated.write_bytes(Path(paths[0]).read_bytes()[:40])
    # items: ok, corrupt, ok, missing file, no image, truncated, ok
    return [paths[0], str(corrupt), paths[1], str(tmp_path / "missing.png"), "", str(truncated), paths[2]]


def test_corrupt_missing_and_absent_images_are_recorded_not_fatal(tmp_path):
    ds = _dataset("imgs", images=_images(tmp_path))
    feats = ensure_features(ds, "tiny-resnet", "image", cache_root=tmp_path / "cache")
    bad = [1, 3, 4, 5]
    assert feats.valid.tolist() == [i not in bad for i in range(7)]
    assert not feats.matrix[bad].any() and np.abs(feats.matrix[[0, 2, 6]]).sum(1).min() > 0
    reasons = {f["item"]: f["reason"] for f in feats.manifest["failures"]}
    assert sorted(reasons) == bad and feats.manifest["n_valid"] == 3
    assert reasons[1].startswith("corrupt image") and reasons[5].startswith("corrupt image")
    assert reasons[3].startswith("image file not found") and reasons[4] == "no image"

    from encoders import (
        create_encoder,  # each valid row is what the encoder gives that image alone
    )

    enc = create_encoder("tiny-resnet")
    for i in (0, 2, 6):
        alone = enc.encode(enc.preprocess([ds.items.images[i]]))[0].numpy()
        np.testing.assert_allclose(feats.matrix[i], alone, rtol=1e-5, atol=1e-6)


def test_empty_texts_are_recorded_and_zero(tmp_path):
    ds = _dataset("texts", texts=["Toy Story (1995)", "", "   ", "Heat (1995). Genres: Action"])
    feats = ensure_features(ds, "tiny-bert", "text", cache_root=tmp_path)
    assert feats.valid.tolist() == [True, False, False, True]
    assert [f["item"] for f in feats.manifest["failures"]] == [1, 2]
    assert {f["reason"] for f in feats.manifest["failures"]} == {"empty text"}
    assert not feats.matrix[[1, 2]].any() and np.abs(feats.matrix[[0, 3]]).sum(1).min() > 0


def test_ensure_features_encodes_once_then_loads(tmp_path):
    ds = _dataset("once", texts=["a", "b c", "d e f"])
    with pytest.raises(CacheMissing, match="harness encode --dataset once --encoder tiny-t5 --modality text"):
        load_features(ds, "tiny-t5", "text", cache_root=tmp_path)
    first = ensure_features(ds, "tiny-t5", "text", cache_root=tmp_path)
    manifest = feature_dir("once", "tiny-t5", "text", tmp_path) / "manifest.json"
    stamp = manifest.stat().st_mtime_ns
    second = ensure_features(ds, "tiny-t5", "text", cache_root=tmp_path)
    assert manifest.stat().st_mtime_ns == stamp and np.array_equal(first.matrix, second.matrix)


def test_fingerprint_mismatch_is_refused(tmp_path):
    ds = _dataset("fp", texts=["Toy Story (1995)", "Heat (1995)", "Fargo (1996)"])
    ensure_features(ds, "tiny-bert", "text", cache_root=tmp_path)
    changed = _dataset("fp", texts=["Toy Story (1995)", "Heat (1995)", "Fargo (1997)"])
    with pytest.raises(FingerprintMismatch, match=r"other item inputs.*3 items.*--overwrite"):
        load_features(changed, "tiny-bert", "text", cache_root=tmp_path)
    with pytest.raises(FingerprintMismatch):
        ensure_features(changed, "tiny-bert", "text", cache_root=tmp_path)  # never silently re-encoded
    with pytest.raises(PlanMismatch, match="fingerprint: cached"):
        encode_dataset(changed, "tiny-bert", cache_root=tmp_path, cpu=True, progress=False)
    encode_dataset(changed, "tiny-bert", cache_root=tmp_path, cpu=True, progress=False, overwrite=True)
    assert load_features(changed, "tiny-bert", "text", cache_root=tmp_path).manifest["n_items"] == 3


def test_partial_cache_of_another_plan_is_not_mixed(tmp_path):
    ds = _dataset("plan", texts=[f"movie {k}" for k in range(10)])
    encode_dataset(ds, "tiny-bert", cache_root=tmp_path, cpu=True, progress=False, chunk_size=4)
    folder = feature_dir("plan", "tiny-bert", "text", tmp_path)
    (folder / "manifest.json").unlink()  # as if the job had died before merging
    with pytest.raises(PlanMismatch, match=r"chunk_size: cached 4 vs now 3.*--overwrite"):
        encode_dataset(ds, "tiny-bert", cache_root=tmp_path, cpu=True, progress=False, chunk_size=3)
    encode_dataset(ds, "tiny-bert", cache_root=tmp_path, cpu=True, progress=False, chunk_size=4)  # resumes: merge only
    assert load_features(ds, "tiny-bert", "text", cache_root=tmp_path).manifest["chunks"]["reused"] == 3


def test_bad_dtype_names_valid_options(tmp_path):
    ds = _dataset("dtype", texts=["a"])
    with pytest.raises(ValueError, match="float32, bfloat16, float16"):
        encode_dataset(ds, "tiny-bert", cache_root=tmp_path, cpu=True, dtype="fp8")
