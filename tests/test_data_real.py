"""Real datasets: paper Table 1 statistics, item text, chronology, caching, the CLI."""

from __future__ import annotations

import json
import time
import warnings

import numpy as np
import pytest

from harness.data import DatasetNoteWarning, get_spec, list_datasets, load_dataset
from harness.data.cli import main as data_main
from harness.data.stats import dataset_stats

TABLE1 = {  # users, items, interactions after iterative 5-core
    "ml-1m": (6040, 3416, 999611),
    "amazon-beauty": (22363, 12101, 198502),
    "amazon-sports": (35598, 18357, 296337),
    "ml-100k": (943, 1349, 99287),  # not in the paper; SOURCE.md
}


@pytest.mark.parametrize("name", list(TABLE1))
def test_stats_match_table1(name):
    ds = load_dataset(name)
    assert (ds.num_users, ds.num_items, ds.num_interactions) == TABLE1[name]
    flat, _ = ds.flat()
    assert flat.min() == 0 and flat.max() == ds.num_items - 1
    assert np.bincount(flat, minlength=ds.num_items).min() >= 5  # 5-core holds for items
    assert ds.lengths().min() >= 5 and len(set(ds.user_ids)) == ds.num_users
    if get_spec(name).paper_stats:
        assert get_spec(name).paper_stats == TABLE1[name]


def test_registry_lists_all_six():
    assert list_datasets() == ["amazon-beauty", "amazon-clothing", "amazon-sports", "amazon-toys", "ml-100k", "ml-1m", "synthetic"]  # six real + the generated one
    assert list_datasets("amazon-*") == ["amazon-beauty", "amazon-clothing", "amazon-sports", "amazon-toys"]


def test_ml1m_item_text_and_order(data_dir):
    ds = load_dataset("ml-1m")
    index = ds.items.index()
    assert ds.items.texts[index["1"]] == "Toy Story (1995). Genres: Animation, Children's, Comedy"
    assert ds.items.images == [""] * ds.num_items
    # user 1 starts with MovieID 3186 ("Girl, Interrupted"), its earliest rating (SOURCE.md)
    first = (data_dir / "ml-1m" / "ml-1m_sequences_original_ids.txt").read_text().split("\n", 1)[0].split()
    assert ds.user_ids[0] == "1"
    assert [ds.items.raw_ids[i] for i in ds.sequences[0][:3]] == first[1:4]
    assert ds.items.texts[ds.sequences[0][0]].startswith("Girl, Interrupted (1999)")


def test_ml100k_chronological_with_year(data_dir):
    ds = load_dataset("ml-100k")
    table = np.loadtxt(data_dir / "ml-100k" / "ml-100k.inter", skiprows=1, dtype=np.int64)
    user = ds.user_ids.index("196")
    rows = table[table[:, 0] == 196]
    rows = rows[np.argsort(rows[:, 3], kind="stable")]
    kept = set(ds.items.raw_ids)
    expected = [str(i) for i in rows[:, 1] if str(i) in kept]
    assert [ds.items.raw_ids[i] for i in ds.sequences[user]] == expected
    assert ds.items.texts[ds.items.index()["1"]] == "Toy Story (1995). Genres: Animation, Children's, Comedy"
    assert ds.items.texts[ds.items.index()["2"]] == "GoldenEye (1995). Genres: Action, Adventure, Thriller"


def test_amazon_uses_chronological_asin_file_and_s3rec_ids(data_dir):
    with pytest.warns(DatasetNoteWarning, match="no real item titles"):
        ds = load_dataset("amazon-beauty")
    folder = data_dir / "amazon-beauty"
    maps = json.loads((folder / "datamaps.json").read_text())
    assert ds.items.raw_ids[:50] == [maps["id2item"][str(i)] for i in range(1, 51)]  # item i = S3Rec id i + 1
    lines = (folder / "user_sequence_asin.txt").read_text().splitlines()
    for u in (0, 1, 777, len(lines) - 1):
        tokens = lines[u].split()
        assert ds.user_ids[u] == tokens[0]
        assert [ds.items.raw_ids[i] for i in ds.sequences[u]] == tokens[1:]
    keywords = dict(
        line.split(" ", 1) for line in (folder / "item_textual_id_idgenrec.txt").read_text().splitlines() if " " in line
    )
    assert ds.items.texts[0] == keywords[ds.items.raw_ids[0]].strip()
    assert sum(t == "" for t in ds.items.texts) == 1  # one item's keyword ID is empty in the shipped file


def test_second_load_comes_from_cache(session_cache):
    load_dataset("ml-1m")
    assert list((session_cache / "datasets" / "ml-1m").glob("*.npz"))
    start = time.perf_counter()
    ds = load_dataset("ml-1m")
    elapsed = time.perf_counter() - start
    assert ds.num_interactions == 999611
    assert elapsed < 1.0, f"cached ML-1M load took {elapsed:.2f}s"
    assert not list(session_cache.rglob("*.part"))
    fresh = load_dataset("ml-1m", use_cache=False)
    assert fresh.fingerprint() == ds.fingerprint() and fresh.items.texts == ds.items.texts


def test_cli_stats_json(capsys):
    assert data_main(["stats", "--dataset", "ml-1m", "--json"]) == 0
    stats = json.loads(capsys.readouterr().out)
    assert (stats["users"], stats["items"], stats["interactions"]) == TABLE1["ml-1m"]
    assert stats["avg_len"] == pytest.approx(999611 / 6040, abs=1e-4)
    assert stats["sparsity"] == pytest.approx(1 - 999611 / (6040 * 3416), abs=1e-6)


def test_cli_stats_text_and_list(capsys):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the CLI prints notes itself
        assert data_main(["stats", "--dataset", "amazon-sports"]) == 0
    out, err = capsys.readouterr()
    assert "35,598" in out and "exact match" in out and "no real item titles" in err
    assert data_main(["list"]) == 0
    out = capsys.readouterr().out
    assert "amazon-toys" in out and "ml-1m" in out and "present (sequences)" in out


def test_stats_of_small_dataset_by_hand():
    from harness.data import ItemTable, SequenceDataset

    ds = SequenceDataset(
        "t", ["a", "b"], [np.array([0, 1, 2]), np.array([1])], ItemTable(["x", "y", "z"], [""] * 3, [""] * 3)
    )
    assert dataset_stats(ds) == {
        "users": 2,
        "items": 3,
        "interactions": 4,
        "avg_len": 2.0,
        "sparsity": round(1 - 4 / 6, 6),
        "min_len": 1,
        "max_len": 3,
    }
