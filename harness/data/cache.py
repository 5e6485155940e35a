"""Atomic npz cache for processed datasets and splits (no pickles: strings are stored as JSON bytes)."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np

from harness.atomic import atomic_path


def pack_json(value: object) -> np.ndarray:
    return np.frombuffer(json.dumps(value).encode("utf-8"), dtype=np.uint8)


def unpack_json(array: np.ndarray) -> object:
    return json.loads(array.tobytes().decode("utf-8"))


def save_npz(path: Path, **arrays: np.ndarray) -> None:
    """Write arrays to ``path`` atomically (temp file + rename): readers never see half a file."""
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.savez(f, **arrays)


def load_npz(path: Path) -> dict[str, np.ndarray] | None:
    """The arrays in ``path``, or None when it is absent or unreadable (then it is rebuilt)."""
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as data:
            return {k: data[k] for k in data.files}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError):
        return None
