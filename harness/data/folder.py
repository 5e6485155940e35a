"""Datasets without code: a folder of RecBole atomic files, CSV or Parquet, described by ``dataset.yaml``.

An unregistered dataset name is looked up as ``<data_dir>/<name>/``. Its ``dataset.yaml`` (optional)
picks the format and names the files and columns; without it the format is detected from the files:
``<name>.inter`` (RecBole), ``interactions.csv``, ``interactions.parquet``. Predefined splits are
read from ``<name>.train.inter`` / ``.valid.inter`` / ``.test.inter`` (RecBole's benchmark files) or
``train`` / ``valid`` / ``test`` ``.csv`` / ``.parquet``; each user's sequence is then its train
interactions, then valid, then test, and ``dataset.protocol=predefined`` uses exactly that split.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, fields, replace
from functools import partial
from pathlib import Path

import yaml

from harness.data.errors import DataFormatError
from harness.data.folder_read import read_folder
from harness.data.registry import DatasetSpec, Layout

DESCRIPTOR = "dataset.yaml"
FORMATS = ("recbole", "csv", "parquet")


@dataclass(frozen=True)
class FolderFormat:
    """What ``dataset.yaml`` may say; every key is optional."""

    format: str = ""
    interactions: str = ""  # default <name>.inter / interactions.csv / interactions.parquet
    items: str = ""  # default <name>.item / items.csv / items.parquet (optional file)
    splits: tuple[str, ...] = ()  # train, valid, test files; default the benchmark names when present
    user: str = "user_id"
    item: str = "item_id"
    time: str = "timestamp"  # absent column: file order
    text: tuple[str, ...] = ()  # item columns joined into the item text; default all but id and image
    image: str = ""  # item column with an image path (relative to the folder) or URL; default found by name
    separator: str = ","  # CSV only
    k_core: int | None = None  # default 5, or 0 (no filtering) with predefined splits

    def defaults(self, name: str, folder: Path) -> FolderFormat:
        """Fill in the file names of the format, and the split files that exist."""
        parts = ("train", "valid", "test")
        if self.format == "recbole":
            inter, items, split_names = f"{name}.inter", f"{name}.item", tuple(f"{name}.{p}.inter" for p in parts)
        else:
            ext = self.format
            inter, items, split_names = f"interactions.{ext}", f"items.{ext}", tuple(f"{p}.{ext}" for p in parts)
        splits = self.splits or (split_names if all((folder / s).is_file() for s in split_names) else ())
        k = self.k_core if self.k_core is not None else (0 if splits else 5)
        if splits and k > 1:
            raise DataFormatError(folder / DESCRIPTOR, None, "k_core > 1 would break the predefined splits; drop it")
        return replace(self, interactions=self.interactions or inter, items=self.items or items,
                       splits=tuple(splits), k_core=k)


def _detect(name: str, folder: Path) -> str:
    for form, probe in (("recbole", f"{name}.inter"), ("recbole", f"{name}.train.inter"),
                        ("csv", "interactions.csv"), ("csv", "train.csv"),
                        ("parquet", "interactions.parquet"), ("parquet", "train.parquet")):
        if (folder / probe).is_file():
            return form
    return ""


def read_descriptor(path: Path) -> FolderFormat:
    """``dataset.yaml`` -> ``FolderFormat``; unknown keys and bad values name the file."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        raise DataFormatError(path, mark.line + 1 if mark else None, f"invalid YAML: {e}") from None
    if not isinstance(data, dict):
        raise DataFormatError(path, None, "expected a mapping of keys")
    valid = [f.name for f in fields(FolderFormat)]
    for key in data:
        if key not in valid:
            close = difflib.get_close_matches(str(key), valid, n=1)
            raise DataFormatError(path, None, f"unknown key {key!r}" + (f"; did you mean {close[0]!r}?" if close else "")
                                  + f"; valid keys: {', '.join(valid)}")
    if "format" in data and data["format"] not in FORMATS:
        raise DataFormatError(path, None, f"format {data['format']!r} is not one of {', '.join(FORMATS)}")
    for key in ("splits", "text"):
        if key in data:
            value = data[key]
            data[key] = tuple([value] if isinstance(value, str) else value)
    if "splits" in data and len(data["splits"]) != 3:
        raise DataFormatError(path, None, "splits needs three files: train, valid, test")
    return FolderFormat(**data)


def folder_spec(name: str, folder: Path) -> DatasetSpec | None:
    """A spec for the files in ``folder``, or None when it holds no descriptor and no known layout."""
    descriptor = folder / DESCRIPTOR
    form = read_descriptor(descriptor) if descriptor.is_file() else FolderFormat()
    if not form.format:
        detected = _detect(name, folder)
        if not detected:
            if descriptor.is_file():
                raise DataFormatError(descriptor, None, f"no 'format' key and no known files in {folder}; "
                                      f"set format to one of {', '.join(FORMATS)}")
            return None
        form = replace(form, format=detected)
    form = form.defaults(name, folder)
    required = form.splits or (form.interactions,)
    layout = Layout(form.format, tuple(required), partial(read_folder, form=form, folder=folder),
                    (DESCRIPTOR, form.items), f"{form.format} files" + (" with predefined splits" if form.splits else ""))
    return DatasetSpec(name, f"{form.format} files in {folder}", (layout,), form.text, k_core=form.k_core)
