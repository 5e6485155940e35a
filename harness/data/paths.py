"""Where datasets and caches live (HARNESS_DATA_DIR, HARNESS_CACHE_DIR)."""

from __future__ import annotations

import os
from pathlib import Path

_REPO = Path(__file__).resolve().parents[2]


def data_root(data_dir: str | Path | None = None) -> Path:
    """``data_dir``, else $HARNESS_DATA_DIR, else ./data, else ../shared/datasets when it exists."""
    if data_dir is not None:
        return Path(data_dir).expanduser()
    env = os.environ.get("HARNESS_DATA_DIR")
    if env:
        return Path(env).expanduser()
    for candidate in (
        Path.cwd() / "data",
        _REPO.parent / "shared" / "datasets",
        Path.cwd().parent / "shared" / "datasets",
    ):
        if candidate.is_dir():
            return candidate
    return Path.cwd() / "data"


def cache_root(cache_dir: str | Path | None = None) -> Path:
    """The one cache root (datasets, splits, features, teachers, HF datasets), absolute with ``~`` expanded:
    ``cache_dir`` if given, else $HARNESS_CACHE_DIR, else ./.cache/harness."""
    root = cache_dir if cache_dir is not None else os.environ.get("HARNESS_CACHE_DIR") or ".cache/harness"
    return Path(root).expanduser().absolute()


def dataset_folder(name: str, data_dir: str | Path | None = None) -> Path:
    """The folder of one dataset: ``<root>/<name>``; ``data_dir`` may also be that folder itself."""
    root = data_root(data_dir)
    return root if root.name == name and not (root / name).is_dir() else root / name
