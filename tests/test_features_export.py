"""``harness features export``: a tiny real cache (tiny-llama on a folder dataset) read back by each consumer."""

from __future__ import annotations

import json

import datasets
import numpy as np
import pyarrow.parquet as pq
import pytest

from harness.cli import main as harness_main
from harness.data import load_dataset
from harness.encoding import ensure_features

pytestmark = pytest.mark.filterwarnings("ignore::harness.data.DatasetNoteWarning")


@pytest.fixture(scope="module")
def cached(tmp_path_factory):
    """A RecBole-format dataset (item i5 has no text, so its row is invalid) and its tiny-llama text cache."""
    root = tmp_path_factory.mktemp("export")
    folder = root / "data" / "toy"
    folder.mkdir(parents=True)
    rows = [f"u{u}\ti{i}\t{10 * u + i}" for u in range(6) for i in range(6) if i != u]
    (folder / "toy.inter").write_text("user_id:token\titem_id:token\ttimestamp:float\n" + "\n".join(rows) + "\n")
    titles = [f"i{k}\tgadget number {k}" for k in range(5)]
    (folder / "toy.item").write_text("item_id:token\ttitle:token_seq\n" + "\n".join(titles) + "\n")
    ds = load_dataset("toy", root / "data")
    feats = ensure_features(ds, "tiny-llama", "text", cache_root=root / "cache")
    assert feats.valid.tolist() == [raw != "i5" for raw in ds.items.raw_ids]
    return root, ds, feats


def _export(root, fmt: str, tmp_path) -> None:
    args = ["features", "export", "--dataset", "toy", "--encoder", "tiny-llama", "--to", fmt, "--out", str(tmp_path),
            "--data-dir", str(root / "data"), "--cache-dir", str(root / "cache")]
    assert harness_main(args) == 0


def test_parquet_export_loads_with_datasets_and_keeps_the_manifest(cached, tmp_path):
    root, ds, feats = cached
    _export(root, "parquet", tmp_path)
    table = pq.read_table(tmp_path / "text.parquet")
    assert json.loads(table.schema.metadata[b"harness.manifest"]) == feats.manifest
    hf = datasets.load_dataset("parquet", data_files=str(tmp_path / "text.parquet"), split="train",
                               cache_dir=str(tmp_path / "hf-cache"))
    assert hf["item_id"] == ds.items.raw_ids and hf["valid"] == feats.valid.tolist()
    np.testing.assert_array_equal(np.asarray(hf["vector"], dtype=np.float32), feats.matrix)
    assert json.loads((tmp_path / "text-manifest.json").read_text()) == feats.manifest


def test_hf_export_is_a_saved_dataset(cached, tmp_path):
    root, ds, feats = cached
    _export(root, "hf", tmp_path)
    hf = datasets.load_from_disk(str(tmp_path / "text-hf"))
    assert hf.column_names == ["item_id", "item_index", "vector", "valid"] and len(hf) == 6
    np.testing.assert_array_equal(np.asarray(hf.with_format("numpy")["vector"]), feats.matrix)
    assert json.loads(hf.info.description)["fingerprint"] == feats.manifest["fingerprint"]


def test_recbole_export_follows_the_pretrained_embedding_atomic_format(cached, tmp_path):
    root, ds, feats = cached
    _export(root, "recbole", tmp_path)
    lines = (tmp_path / "toy.textemb").read_text().splitlines()
    assert lines[0] == "iid:token\ttext_emb:float_seq" and len(lines) == 1 + 5  # invalid rows are left out
    for line, k in zip(lines[1:], np.flatnonzero(feats.valid)):
        item, vector = line.split("\t")
        assert item == ds.items.raw_ids[k]
        np.testing.assert_allclose(np.array(vector.split(" "), dtype=np.float32), feats.matrix[k], rtol=1e-6)
    config = json.loads((tmp_path / "toy-textemb.yaml").read_text())
    assert config["preload_weight"] == {"iid": "text_emb"} and config["alias_of_item_id"] == ["iid"]


def test_mmrec_export_rows_are_item_indices(cached, tmp_path):
    root, ds, feats = cached
    _export(root, "mmrec", tmp_path)
    matrix = np.load(tmp_path / "text_feat.npy")
    assert matrix.dtype == np.float32 and np.array_equal(matrix, feats.matrix) and not matrix[ds.items.index()["i5"]].any()
    mapping = [line.split("\t") for line in (tmp_path / "i_id_mapping.csv").read_text().splitlines()[1:]]
    assert mapping == [[raw, str(k)] for k, raw in enumerate(ds.items.raw_ids)]


def test_export_without_a_cache_is_one_clear_line(cached, tmp_path, capsys):
    root, _, _ = cached
    args = ["features", "export", "--dataset", "toy", "--encoder", "tiny-bert", "--to", "parquet",
            "--data-dir", str(root / "data"), "--cache-dir", str(root / "cache")]
    assert harness_main(args) == 1
    assert "no cached features for toy / tiny-bert" in capsys.readouterr().err
