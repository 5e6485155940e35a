"""Amazon item metadata: the 2014 ``meta_*.json(.gz)`` form and the Amazon-Reviews-2023 form.

Both become ``ItemMeta`` (title, description, categories, brand, image) and then one item text.
"""

from __future__ import annotations

import ast
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from harness.data.errors import DataFormatError
from harness.data.files import stream_lines
from harness.data.paths import cache_root
from harness.progress import progress

_ASIN = re.compile(r"""["'](?:parent_asin|asin)["']\s*:\s*["']([^"']+)["']""")


@dataclass
class ItemMeta:
    """The parts of an Amazon product record that become item text and image."""

    title: str = ""
    brand: str = ""
    categories: list[str] = field(default_factory=list)
    description: str = ""
    image: str = ""

    def text(self) -> str:
        """'Title. Brand: B. Categories: a, b. Description' with empty parts left out."""
        parts = [
            self.title.strip(),
            f"Brand: {self.brand.strip()}" if self.brand.strip() else "",
            f"Categories: {', '.join(self.categories)}" if self.categories else "",
            self.description.strip(),
        ]
        return ". ".join(p for p in parts if p)


def parse_record(line: str, path: Path, number: int) -> dict:
    """One metadata line: strict JSON, else a Python literal (the 2014 files use single quotes)."""
    try:
        record = json.loads(line)
    except json.JSONDecodeError:
        try:
            record = ast.literal_eval(line)
        except (ValueError, SyntaxError, MemoryError, RecursionError):
            raise DataFormatError(path, number, "not a JSON object or Python dict literal") from None
    if not isinstance(record, dict):
        raise DataFormatError(path, number, f"expected an object per line, got {type(record).__name__}")
    return record


def _unique(values: Iterable) -> list[str]:
    out: list[str] = []
    for v in values:
        if isinstance(v, str) and v.strip() and v.strip() not in out:
            out.append(v.strip())
    return out


def _flatten(value) -> list:
    if isinstance(value, (list, tuple)):
        return [x for v in value for x in _flatten(v)]
    return [value]


def _text(value) -> str:
    """A description that may be a string or a list of strings (2023)."""
    return " ".join(_unique(_flatten(value))) if value is not None else ""


def meta_2014(record: dict) -> ItemMeta:
    """2014 fields: title, brand, categories (list of lists), description, imUrl."""
    return ItemMeta(
        title=str(record.get("title") or ""),
        brand=str(record.get("brand") or ""),
        categories=_unique(_flatten(record.get("categories") or [])),
        description=_text(record.get("description")),
        image=str(record.get("imUrl") or ""),
    )


def _first_image(images) -> str:
    """2023 images: a list of {hi_res, large, thumb} dicts (JSONL) or a dict of lists (hub Parquet)."""
    if isinstance(images, dict):
        images = [dict(zip(images, row)) for row in zip(*images.values())] if images else []
    for image in images or []:
        for key in ("hi_res", "large", "thumb"):
            if isinstance(image, dict) and image.get(key):
                return str(image[key])
    return ""


def meta_2023(record: dict) -> ItemMeta:
    """2023 fields: title, store/details.Brand, main_category + categories, description + features, images."""
    details = record.get("details") or {}
    if isinstance(details, str):
        try:
            details = json.loads(details)
        except json.JSONDecodeError:
            details = {}
    brand = record.get("store") or (details.get("Brand") if isinstance(details, dict) else "") or ""
    return ItemMeta(
        title=str(record.get("title") or ""),
        brand=str(brand),
        categories=_unique([record.get("main_category")] + _flatten(record.get("categories") or [])),
        description=_text([record.get("description") or [], record.get("features") or []]),
        image=_first_image(record.get("images")),
    )


def _ids(record: dict) -> list[str]:
    return [str(record[k]) for k in ("asin", "parent_asin") if record.get(k)]


def read_meta_lines(path: Path, wanted: set[str], form: str) -> dict[str, ItemMeta]:
    """Stream a 2014 (``form="2014"``) or 2023 JSONL metadata file, keeping only ``wanted`` ids.

    Lines whose id is not wanted are skipped before parsing (the files hold millions of products).
    """
    convert = meta_2014 if form == "2014" else meta_2023
    out: dict[str, ItemMeta] = {}
    for number, line in progress(stream_lines(path), desc=f"reading {path.name}", unit=" lines", leave=False):
        ids = _ASIN.findall(line)
        if ids and not wanted.intersection(ids):
            continue
        record = parse_record(line, path, number)
        if not _ids(record):
            raise DataFormatError(path, number, "record has no 'asin' or 'parent_asin'")
        meta = convert(record)
        for item in _ids(record):
            if item in wanted:
                out[item] = meta
    return out


def read_meta_parquet(path: Path, wanted: set[str]) -> dict[str, ItemMeta]:
    """Amazon-Reviews-2023 metadata in Parquet, read through the ``datasets`` library."""
    import datasets  # heavy import, only needed for this form

    table = datasets.load_dataset(
        "parquet", data_files=str(path), split="train", cache_dir=str(cache_root() / "hf-datasets")
    )
    out: dict[str, ItemMeta] = {}
    for record in progress(table, desc=f"reading {path.name}", unit=" items", leave=False):
        ids = [i for i in _ids(record) if i in wanted]
        if ids:
            meta = meta_2023(record)
            out.update({i: meta for i in ids})
    return out


def read_item_metadata(path: Path, wanted: set[str]) -> dict[str, ItemMeta]:
    """Dispatch on the file name: ``*.parquet`` and ``*.jsonl(.gz)`` are 2023, ``*.json(.gz)`` 2014."""
    name = path.name
    if name.endswith(".parquet"):
        return read_meta_parquet(path, wanted)
    if name.endswith((".jsonl", ".jsonl.gz")):
        return read_meta_lines(path, wanted, "2023")
    if name.endswith((".json", ".json.gz")):
        return read_meta_lines(path, wanted, "2014")
    raise DataFormatError(
        path, None, "unknown metadata format; expected .json(.gz) (2014), .jsonl(.gz) or .parquet (2023)"
    )


def read_keyword_text(path: Path) -> dict[str, str]:
    """IDGenRec's ``asin word word ...`` generated keyword IDs -> asin -> keyword text."""
    out = {}
    for number, line in stream_lines(path):
        asin, _, words = line.strip().partition(" ")
        if asin in out:
            raise DataFormatError(path, number, f"ASIN {asin} appears twice")
        out[asin] = words.strip()  # a few items have an empty keyword ID
    return out
