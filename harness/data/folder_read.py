"""Read a folder dataset (see ``harness.data.folder``) into ``RawData``: interactions, splits, item text and images."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from harness.data.images import is_url
from harness.data.interactions import code_by_order
from harness.data.registry import RawData
from harness.data.tabular import Table, read_table

IMAGE_COLUMNS = ("image", "image_path", "image_url", "img_url", "imUrl", "img")


def _times(table: Table, column: str) -> np.ndarray:
    """Timestamps as float64; an absent column means file order."""
    if column not in table.columns:
        return np.arange(len(table), dtype=np.float64)
    out = np.empty(len(table), dtype=np.float64)
    for row, value in enumerate(table.columns[column]):
        try:
            out[row] = float(value)
        except ValueError:
            raise table.fail(row, f"{column} must be a number, got {value!r}") from None
    if np.isnan(out).any():
        raise table.fail(int(np.flatnonzero(np.isnan(out))[0]), f"{column} is empty")
    return out


def _ids(table: Table, column: str, role: str) -> list[str]:
    values = [str(v).strip() for v in table.column(column, role)]
    empty = next((r for r, v in enumerate(values) if not v), None)
    if empty is not None:
        raise table.fail(empty, f"empty {role} id")
    return values


def _bounds(tables: list[Table], users: list[str], user_codes: np.ndarray, parts: np.ndarray, n_users: int) -> np.ndarray:
    """Per user [valid_start, test_start]: its train count, then train + valid; every user needs a train item."""
    counts = np.zeros((n_users, 3), dtype=np.int64)
    np.add.at(counts, (user_codes, parts), 1)
    orphan = np.flatnonzero(counts[:, 0] == 0)
    if len(orphan):
        row = int(np.flatnonzero(user_codes == orphan[0])[0])
        part = int(parts[row])
        local = row - sum(len(t) for t in tables[:part])
        raise tables[part].fail(local, f"user {users[row]!r} has no interaction in {tables[0].path.name}: "
                                       "a sequential split needs a training history")
    return np.stack([counts[:, 0], counts[:, 0] + counts[:, 1]], axis=1)


def read_interactions(tables: list[Table], form: Any) -> tuple[RawData, np.ndarray | None]:
    """One table (or train/valid/test tables) -> chronological per-user sequences, and split bounds."""
    users = [u for t in tables for u in _ids(t, form.user, "user")]
    items = [i for t in tables for i in _ids(t, form.item, "item")]
    times = np.concatenate([_times(t, form.time) for t in tables])
    parts = np.repeat(np.arange(len(tables)), [len(t) for t in tables])
    user_codes, user_ids = code_by_order(users)
    order = np.lexsort((np.arange(len(users)), times, parts, user_codes))  # user, then part, then time, then file
    item_codes, item_ids = code_by_order([items[i] for i in order])
    lengths = np.bincount(user_codes, minlength=len(user_ids)).astype(np.int64)
    bounds = _bounds(tables, users, user_codes, parts, len(user_ids)) if len(tables) == 3 else None
    notes = [] if form.time in tables[0].columns else [f"no {form.time!r} column: interactions kept in file order"]
    return RawData(user_ids, lengths, item_codes, item_ids, [], [], notes), bounds


def _image_column(table: Table, form: Any) -> str:
    if form.image:
        table.column(form.image, "image")  # a named column must exist
        return form.image
    return next((c for c in IMAGE_COLUMNS if c in table.columns), "")


def _image_ref(value: str, folder: Path) -> str:
    """URLs stay URLs (``harness data images`` fetches them); paths are taken relative to the folder."""
    value = str(value).strip()
    return value if not value or is_url(value) else str((folder / value).resolve())


def read_items(table: Table, form: Any, folder: Path) -> dict[str, tuple[str, str]]:
    """Item id -> (text, image) from the item file: the ``text`` columns joined with '. '."""
    ids = _ids(table, form.item, "item")
    image = _image_column(table, form)
    text_columns = list(form.text) or [c for c in table.columns if c not in (form.item, image)]
    texts = [table.column(c, "text") for c in text_columns]
    images = table.columns[image] if image else [""] * len(ids)
    out = {}
    for row, item in enumerate(ids):
        if item in out:
            raise table.fail(row, f"item {item!r} appears twice")
        text = ". ".join(s for s in (str(col[row]).strip() for col in texts) if s and s != "nan")
        out[item] = (text, _image_ref(images[row], folder))
    return out


def read_folder(files: dict[str, Path], form: Any, folder: Path) -> RawData:
    """The layout reader of a folder dataset (``files`` as resolved by its ``Layout``)."""
    names = form.splits or (form.interactions,)
    tables = [read_table(files[n], form.format, form.separator) for n in names]
    raw, bounds = read_interactions(tables, form)
    meta = read_items(read_table(files[form.items], form.format, form.separator), form, folder) if form.items in files else {}
    raw.texts = [meta.get(i, ("", ""))[0] for i in raw.item_ids]
    raw.images = [meta.get(i, ("", ""))[1] for i in raw.item_ids]
    if not meta:
        raw.notes.append(f"no item file ({form.items}): item texts and images are empty")
    raw.split = bounds
    return raw
