"""Amazon layouts supplied by a user: 2014 meta (Python-literal lines), 2023 JSONL/Parquet, reviews."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from harness.data import DataFormatError, DatasetNoteWarning, load_dataset

ASINS = ["B000TOY001", "B000TOY002", "B000TOY003", "B000TOY004", "B000TOY005"]


def write_sequences(folder: Path) -> None:
    """Six users who each bought the five toys (a 5-core), plus one rare toy that 5-core removes."""
    folder.mkdir(parents=True, exist_ok=True)
    lines = [f"U{u} " + " ".join(ASINS[u % 5 :] + ASINS[: u % 5]) for u in range(6)]
    lines[0] += " B000RARE99"
    (folder / "user_sequence_asin.txt").write_text("\n".join(lines) + "\n")


META_2014 = [
    (
        "{'asin': 'B000TOY001', 'title': 'Wooden Puzzle', 'brand': 'Melissa & Doug', 'price': 9.99, "
        "'imUrl': 'http://ecx.images-amazon.com/images/I/1.jpg', 'categories': [['Toys & Games', 'Puzzles'], ['Toys & Games']], "
        "'description': \"A 'classic' puzzle.\", 'related': {'also_bought': ['B000TOY002']}}"
    ),
    '{"asin": "B000TOY002", "title": "Kite", "categories": [["Toys & Games", "Outdoor Play"]]}',
    "{'asin': 'B000NOTUSED', 'title': 'Not in the dataset'}",
    "{'asin': 'B000TOY003', 'title': 'Yo-yo', 'salesRank': {'Toys & Games': 5}}",
    "{'asin': 'B000TOY004', 'brand': 'NoTitle Co'}",
]


def test_meta_2014_python_literal_gz(tmp_path):
    folder = tmp_path / "amazon-toys"
    write_sequences(folder)
    with gzip.open(folder / "meta_Toys_and_Games.json.gz", "wt") as f:
        f.write("\n".join(META_2014) + "\n")
    with pytest.warns(
        DatasetNoteWarning, match=r"item text from meta_Toys_and_Games\.json\.gz; 1 of 5 items have no text"
    ):
        ds = load_dataset("amazon-toys", tmp_path)
    assert ds.items.raw_ids == ASINS  # first-appearance order; the rare toy is filtered by 5-core
    assert (ds.num_users, ds.num_interactions) == (6, 30)
    assert ds.items.texts == [
        "Wooden Puzzle. Brand: Melissa & Doug. Categories: Toys & Games, Puzzles. A 'classic' puzzle.",
        "Kite. Categories: Toys & Games, Outdoor Play",
        "Yo-yo",
        "Brand: NoTitle Co",
        "",
    ]
    assert ds.items.images == ["http://ecx.images-amazon.com/images/I/1.jpg", "", "", "", ""]


def test_meta_2014_malformed_line(tmp_path):
    folder = tmp_path / "amazon-toys"
    write_sequences(folder)
    broken = META_2014[:3] + ["{'asin': 'B000TOY003', 'title': 'Yo-yo'"]
    (folder / "meta_Toys_and_Games.json").write_text("\n".join(broken) + "\n")
    with pytest.raises(
        DataFormatError, match=r"meta_Toys_and_Games\.json, line 4: not a JSON object or Python dict literal"
    ):
        load_dataset("amazon-toys", tmp_path)


RECORDS_2023 = [
    {
        "main_category": "Toys & Games",
        "title": "Wooden Puzzle",
        "store": "Melissa & Doug",
        "features": ["24 pieces"],
        "description": ["Ages 3+.", "Made of wood."],
        "categories": ["Toys & Games", "Puzzles"],
        "images": [{"thumb": "t1.jpg", "large": "l1.jpg", "variant": "MAIN", "hi_res": "h1.jpg"}],
        "details": {"Brand": "M&D"},
        "parent_asin": "B000TOY001",
    },
    {
        "main_category": "Toys & Games",
        "title": "Kite",
        "store": None,
        "features": [],
        "description": [],
        "categories": [],
        "images": [{"thumb": "t2.jpg", "large": "l2.jpg", "variant": "MAIN", "hi_res": None}],
        "details": {"Brand": "SkyCo"},
        "parent_asin": "B000TOY002",
    },
]
EXPECTED_2023 = [
    "Wooden Puzzle. Brand: Melissa & Doug. Categories: Toys & Games, Puzzles. Ages 3+. Made of wood. 24 pieces",
    "Kite. Brand: SkyCo. Categories: Toys & Games",
]


def test_meta_2023_jsonl(tmp_path):
    folder = tmp_path / "amazon-toys"
    write_sequences(folder)
    (folder / "meta_Toys_and_Games.jsonl").write_text("".join(json.dumps(r) + "\n" for r in RECORDS_2023))
    with pytest.warns(
        DatasetNoteWarning, match=r"item text from meta_Toys_and_Games\.jsonl; 3 of 5 items have no text"
    ):
        ds = load_dataset("amazon-toys", tmp_path)
    assert ds.items.texts[:2] == EXPECTED_2023 and ds.items.texts[2:] == ["", "", ""]
    assert ds.items.images[:2] == ["h1.jpg", "l2.jpg"]


def test_meta_2023_parquet_through_datasets(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    folder = tmp_path / "amazon-toys"
    write_sequences(folder)
    rows = []
    for r in RECORDS_2023:  # the hub's Parquet form: images as a dict of lists, details as a JSON string
        images = {k: [img[k] for img in r["images"]] for k in ("thumb", "large", "variant", "hi_res")}
        rows.append({**r, "images": images, "details": json.dumps(r["details"])})
    pq.write_table(pa.Table.from_pylist(rows), folder / "meta_Toys_and_Games.parquet")
    with pytest.warns(DatasetNoteWarning):
        ds = load_dataset("amazon-toys", tmp_path)
    assert ds.items.texts[:2] == EXPECTED_2023
    assert ds.items.images[:2] == ["h1.jpg", "l2.jpg"]


def test_official_reviews_sorted_by_time_with_keyword_fallback(tmp_path):
    folder = tmp_path / "amazon-clothing"
    folder.mkdir()
    reviews = []
    for u in range(6):
        for rank, asin in enumerate(ASINS):
            time = 1_400_000_000 + 1000 * ((rank * 7 + u) % 5)  # a per-user permutation of the items
            reviews.append({"reviewerID": f"U{u}", "asin": asin, "unixReviewTime": time, "overall": 5.0})
    reviews.reverse()  # file order is not chronological
    with gzip.open(folder / "reviews_Clothing_Shoes_and_Jewelry_5.json.gz", "wt") as f:
        f.write("".join(json.dumps(r) + "\n" for r in reviews))
    (folder / "item_textual_id_idgenrec.txt").write_text("".join(f"{a} keyword text {a[-1]}\n" for a in ASINS))
    with pytest.warns(DatasetNoteWarning, match="no real item titles"):
        ds = load_dataset("amazon-clothing", tmp_path)
    assert ds.source["layout"] == "reviews-2014" and ds.num_interactions == 30
    by_user = {}
    for r in reviews:
        by_user.setdefault(r["reviewerID"], []).append((r["unixReviewTime"], r["asin"]))
    for u, seq in zip(ds.user_ids, ds.sequences):
        assert [ds.items.raw_ids[i] for i in seq] == [a for _, a in sorted(by_user[u])]
    assert ds.items.texts[ds.items.index()["B000TOY003"]] == "keyword text 3"


def test_amazon_sequence_line_too_short(tmp_path):
    folder = tmp_path / "amazon-toys"
    write_sequences(folder)
    with open(folder / "user_sequence_asin.txt", "a") as f:
        f.write("ULONELY\n")
    with pytest.raises(DataFormatError, match=r"user_sequence_asin\.txt, line 7: expected 'reviewerID ASIN ASIN"):
        load_dataset("amazon-toys", tmp_path)
