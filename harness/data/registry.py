"""Dataset registry: each dataset is a spec registered by decorator at import (timm style)."""

from __future__ import annotations

import fnmatch
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from harness.data.errors import MissingDataError, UnknownDatasetError


@dataclass
class RawData:
    """What a reader returns: chronological interactions before k-core filtering."""

    user_ids: list[str]  # one per user, in output order
    lengths: np.ndarray  # int64 [U], interactions per user
    items: np.ndarray  # int64 flat item codes, grouped by user, chronological within a user
    item_ids: list[str]  # code -> raw item id, in output order
    texts: list[str]  # code -> item text ("" when none)
    images: list[str]  # code -> image path or URL ("" when none)
    notes: list[str] = field(default_factory=list)
    split: np.ndarray | None = None  # int64 [U, 2] valid_start, test_start of predefined splits


Reader = Callable[[dict[str, Path]], RawData]


@dataclass(frozen=True)
class Layout:
    """One way a dataset's files can look on disk; ``files`` are required, ``optional`` may be globs."""

    name: str
    files: tuple[str, ...]
    reader: Reader
    optional: tuple[str, ...] = ()
    description: str = ""
    checksums: dict[str, str] = field(default_factory=dict)  # file name -> sha256 of fixed-content files

    def missing(self, folder: Path) -> list[str]:
        return [f for f in self.files if not (folder / f).is_file()]

    def resolve(self, folder: Path) -> dict[str, Path]:
        """Required files plus the optional ones that exist (first sorted match of a glob)."""
        found = {f: folder / f for f in self.files}
        names = sorted(p.name for p in folder.iterdir() if p.is_file()) if folder.is_dir() else []
        for pattern in self.optional:
            match = next((n for n in names if fnmatch.fnmatchcase(n, pattern)), None)
            if match is not None:
                found[pattern] = folder / match
        return found


@dataclass(frozen=True)
class Source:
    """An official online file: where it lives and how to check it."""

    url: str
    filename: str
    sha256: str | None = None
    md5: str | None = None  # GroupLens publishes md5 sidecars (<zip>.md5)
    extract: dict[str, str] | None = None  # zip member -> file name in the dataset folder


@dataclass(frozen=True)
class DatasetSpec:
    """Everything the harness knows about one dataset."""

    name: str
    description: str
    layouts: tuple[Layout, ...]
    text_fields: tuple[str, ...]
    sources: tuple[Source, ...] = ()
    paper_stats: tuple[int, int, int] | None = None  # users, items, interactions (paper Table 1)
    k_core: int = 5
    notes: str = ""

    def find_layout(self, folder: Path) -> tuple[Layout, dict[str, Path]]:
        """The first layout whose required files are all in ``folder``; else a clear error."""
        for layout in self.layouts:
            if not layout.missing(folder):
                return layout, layout.resolve(folder)
        wanted = "; or ".join(f"{' + '.join(lay.files)} ({lay.name})" for lay in self.layouts)
        closest = min(self.layouts, key=lambda lay: len(lay.missing(folder)))
        where = folder if folder.is_dir() else f"{folder} (folder does not exist)"
        raise MissingDataError(
            f"{self.name}: missing file(s) {', '.join(str(folder / f) for f in closest.missing(folder))} "
            f"in {where}; expected {wanted}."
            + (f" Fetch the official files with: harness data fetch --dataset {self.name}" if self.sources else "")
        )


_REGISTRY: dict[str, DatasetSpec] = {}


def register_dataset(fn: Callable[[], DatasetSpec]) -> Callable[[], DatasetSpec]:
    """Decorator: call ``fn`` once at import and register the spec it returns under its name."""
    spec = fn()
    if spec.name in _REGISTRY:
        raise ValueError(f"dataset {spec.name!r} registered twice")
    _REGISTRY[spec.name] = spec
    return fn


def list_datasets(pattern: str = "*") -> list[str]:
    """Registered dataset names matching a glob pattern, sorted."""
    return sorted(n for n in _REGISTRY if fnmatch.fnmatchcase(n, pattern))


def get_spec(name: str) -> DatasetSpec:
    """The spec of ``name``; unknown names raise ``UnknownDatasetError`` (a ``KeyError``)."""
    try:
        return _REGISTRY[name]
    except KeyError:
        raise UnknownDatasetError(name, list_datasets()) from None
