"""Amazon 2014 5-core datasets: readers for the shipped and official layouts, registry entries."""

from __future__ import annotations

import json
from functools import partial
from pathlib import Path

import numpy as np

from harness.data.errors import DataFormatError
from harness.data.files import numbered_lines, stream_lines
from harness.data.interactions import code_by_order, group_chronologically
from harness.data.metadata import parse_record, read_item_metadata, read_keyword_text
from harness.data.registry import DatasetSpec, Layout, RawData, Source, register_dataset

SNAP = "http://snap.stanford.edu/data/amazon/productGraph/categoryFiles"
KEYWORDS = "item_textual_id_idgenrec.txt"
META_2023 = ("meta_*.jsonl", "meta_*.jsonl.gz", "meta_*.parquet")
KEYWORD_NOTE = (
    "no real item titles in this folder: item text is IDGenRec's generated keyword ID "
    f"({KEYWORDS}), a weak proxy for the title; add meta_<Category>.json.gz (2014) or an "
    "Amazon-Reviews-2023 meta_*.jsonl/.parquet to the folder for titles, descriptions and images"
)


# ---- sequences ---------------------------------------------------------------------------------


def read_asin_sequences(path: Path) -> tuple[list[str], np.ndarray, list[str]]:
    """``reviewerID asin asin ...`` per line (chronological) -> users, lengths, flat ASINs."""
    users, lengths, items = [], [], []
    for number, line in numbered_lines(path):
        tokens = line.split()
        if len(tokens) < 2:
            raise DataFormatError(path, number, f"expected 'reviewerID ASIN ASIN ...', got {line!r}")
        users.append(tokens[0])
        lengths.append(len(tokens) - 1)
        items.extend(tokens[1:])
    return users, np.asarray(lengths, dtype=np.int64), items


def read_datamaps(path: Path) -> dict:
    try:
        maps = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise DataFormatError(path, e.lineno, f"invalid JSON: {e.msg}") from None
    for forward, inverse in (("item2id", "id2item"), ("user2id", "id2user")):
        if forward not in maps and inverse not in maps:
            raise DataFormatError(path, None, f"missing both the {forward!r} and the {inverse!r} map")
        for have, want in ((forward, inverse), (inverse, forward)):
            if want not in maps and have in maps:  # some P5 folders ship only id2item / id2user
                maps[want] = {str(v): str(k) for k, v in maps[have].items()}
                if len(maps[want]) != len(maps[have]):
                    raise DataFormatError(path, None, f"the {have!r} map is not one-to-one: cannot derive {want!r}")
    return maps


def item_rank(files: dict[str, Path]) -> dict[str, int] | None:
    """P5/S3Rec item ids (datamaps.json item2id) as the item order, so item i is S3Rec item i + 1."""
    if "datamaps.json" not in files:
        return None
    return {asin: int(i) for asin, i in read_datamaps(files["datamaps.json"])["item2id"].items()}


def read_p5_sequences(files: dict[str, Path]) -> tuple[list[str], np.ndarray, list[str]]:
    """``sequential_data.txt`` (P5/S3Rec integer ids) mapped back to reviewerIDs and ASINs."""
    path, maps = files["sequential_data.txt"], read_datamaps(files["datamaps.json"])
    users, lengths, items = [], [], []
    for number, line in numbered_lines(path):
        tokens = line.split()
        try:
            users.append(maps["id2user"][tokens[0]])
            items.extend(maps["id2item"][t] for t in tokens[1:])
        except (KeyError, IndexError):
            raise DataFormatError(path, number, f"ids not in {files['datamaps.json'].name}: {line[:80]!r}") from None
        lengths.append(len(tokens) - 1)
    return users, np.asarray(lengths, dtype=np.int64), items


def read_reviews(path: Path) -> tuple[list[str], np.ndarray, list[str]]:
    """Official ``reviews_<Category>_5.json.gz``: group by reviewerID, sort by unixReviewTime (stable)."""
    users, items, times = [], [], []
    for number, line in stream_lines(path):
        record = parse_record(line, path, number)
        try:
            users.append(str(record["reviewerID"]))
            items.append(str(record["asin"]))
            times.append(int(record["unixReviewTime"]))
        except (KeyError, TypeError, ValueError):
            raise DataFormatError(path, number, "review needs reviewerID, asin and integer unixReviewTime") from None
    user_codes, user_ids = code_by_order(users)
    perm, uniq, counts = group_chronologically(user_codes, np.asarray(times, dtype=np.int64))
    return [user_ids[u] for u in uniq], counts, [items[i] for i in perm]


# ---- item text ---------------------------------------------------------------------------------


def item_metadata(files: dict[str, Path], item_ids: list[str], category: str) -> tuple[list[str], list[str], list[str]]:
    """Texts, images and notes from the best metadata present: 2014 meta > 2023 meta > keywords."""
    wanted = set(item_ids)
    for pattern in (f"meta_{category}.json.gz", f"meta_{category}.json", *META_2023):
        if pattern in files:
            meta = read_item_metadata(files[pattern], wanted)
            notes = [f"item text from {files[pattern].name}"]
            if not any(m.image for m in meta.values()):
                notes.append(f"no image URLs in {files[pattern].name}")
            return (
                [meta[i].text() if i in meta else "" for i in item_ids],
                [meta[i].image if i in meta else "" for i in item_ids],
                notes,
            )
    if KEYWORDS in files:
        words = read_keyword_text(files[KEYWORDS])
        notes = [KEYWORD_NOTE, "no image URLs (no item metadata in the folder)"]
        return [words.get(i, "") for i in item_ids], [""] * len(item_ids), notes
    return (
        [""] * len(item_ids),
        [""] * len(item_ids),
        ["no item metadata in the folder: item texts and images are empty"],
    )


def build_raw(files: dict[str, Path], category: str, sequences: tuple[list[str], np.ndarray, list[str]]) -> RawData:
    users, lengths, asins = sequences
    codes, item_ids = code_by_order(asins, item_rank(files))
    texts, images, notes = item_metadata(files, item_ids, category)
    return RawData(users, lengths, codes, item_ids, texts, images, notes)


def asin_layout(files: dict[str, Path], category: str) -> RawData:
    return build_raw(files, category, read_asin_sequences(files["user_sequence_asin.txt"]))


def p5_layout(files: dict[str, Path], category: str) -> RawData:
    raw = build_raw(files, category, read_p5_sequences(files))
    raw.notes.append("sequences from sequential_data.txt (P5/S3Rec order, not strictly chronological)")
    return raw


def reviews_layout(files: dict[str, Path], category: str, name: str) -> RawData:
    return build_raw(files, category, read_reviews(files[name]))


# ---- registry entries --------------------------------------------------------------------------


def amazon_spec(
    name: str, category: str, checksums: dict[str, str], paper: tuple[int, int, int], note: str
) -> DatasetSpec:
    """One Amazon 2014 5-core dataset: the shipped IDGenRec/P5 layouts or the official reviews file."""
    optional = ("datamaps.json", f"meta_{category}.json.gz", f"meta_{category}.json", *META_2023, KEYWORDS)
    reviews = (f"reviews_{category}_5.json.gz", f"reviews_{category}_5.json")
    layouts = (
        Layout(
            "asin-sequences",
            ("user_sequence_asin.txt",),
            partial(asin_layout, category=category),
            optional,
            "chronologically sorted reviewerID + ASIN sequences (IDGenRec), shipped",
            checksums,
        ),
        *(
            Layout(
                "reviews-2014",
                (r,),
                partial(reviews_layout, category=category, name=r),
                optional,
                "official 2014 5-core reviews, sorted by unixReviewTime",
                checksums,
            )
            for r in reviews
        ),
        Layout(
            "p5",
            ("sequential_data.txt", "datamaps.json"),
            partial(p5_layout, category=category),
            optional,
            "P5/S3Rec integer sequences + datamaps.json",
            checksums,
        ),
    )
    sources = (
        Source(f"{SNAP}/reviews_{category}_5.json.gz", f"reviews_{category}_5.json.gz"),
        Source(f"{SNAP}/meta_{category}.json.gz", f"meta_{category}.json.gz"),
    )
    return DatasetSpec(
        name,
        f"Amazon {category} (2014, 5-core). {note}",
        layouts,
        ("title", "brand", "categories", "description"),
        sources,
        paper,
    )


@register_dataset
def amazon_beauty() -> DatasetSpec:
    return amazon_spec(
        "amazon-beauty",
        "Beauty",
        {
            "datamaps.json": "715ab04838ff1ba21238475ed453a89e8c30aa6214b904d27a79e4168fc7b612",
            "item2attributes_s3rec.json": "129e40f67486f6877eff0f5318cfa8530ee8ac23d8b0d1de04e1bb7a2ba0b2d4",
            KEYWORDS: "1a90f934fe506747f094b181f791ece593e2f86bb15e5420d910e6de4882b456",
            "sequential_data.txt": "f85a84ab47d70e82bf0e7301804270af10fb51e127ab8f0885697d593f6f6d43",
            "user_sequence_asin.txt": "47197cbee7bdc1896926e10d96b807dce0aecb9a1f0c2ccc887c21090237c9b7",
        },
        (22363, 12101, 198502),
        "Shipped without titles: keyword text only.",
    )


@register_dataset
def amazon_sports() -> DatasetSpec:
    return amazon_spec(
        "amazon-sports",
        "Sports_and_Outdoors",
        {
            "datamaps.json": "4a4d9785ab99a89a499f25023892a647a2280086041c9c9d7169c9dc2ee0b715",
            "item2attributes_s3rec.json": "7fb10733ac4f1811384a52144cdefa7fcc7536fa80a7232c5da9bd789155c34b",
            KEYWORDS: "710b6d9b661aebcd065b861e4076f5e3cc66bdd9735e462ca2db90d5cc951593",
            "sequential_data.txt": "2a095e0648872beb9982408958290f5d655db5be2911c3756b5446de9f0b8de2",
            "user_sequence_asin.txt": "771ce98798c545aab4b48b30ecc1b7ebd045c41d287b87f07abbd773e11b6042",
        },
        (35598, 18357, 296337),
        "Shipped without titles: keyword text only.",
    )


@register_dataset
def amazon_toys() -> DatasetSpec:
    return amazon_spec("amazon-toys", "Toys_and_Games", {}, (19412, 11924, 167597), "Files supplied by the user.")


@register_dataset
def amazon_clothing() -> DatasetSpec:
    return amazon_spec(
        "amazon-clothing", "Clothing_Shoes_and_Jewelry", {}, (39387, 23033, 278677), "Files supplied by the user."
    )
