"""``load_dataset``: find the files, verify checksums, read, 5-core filter, cache (npz)."""

from __future__ import annotations

import hashlib
import json
import logging
import warnings
from pathlib import Path

import numpy as np

from harness.data.cache import load_npz, pack_json, save_npz, unpack_json
from harness.data.files import sha256_file, verify_sha256
from harness.data.folder import folder_spec
from harness.data.images import local_images
from harness.data.kcore import apply_kcore
from harness.data.paths import cache_root, dataset_folder
from harness.data.registry import DatasetSpec, Layout, RawData, get_spec, list_datasets
from harness.data.tables import ItemTable, SequenceDataset

log = logging.getLogger(__name__)
CACHE_VERSION = 2  # bump when readers change what they produce


class DatasetNoteWarning(UserWarning):
    """A caveat about a loaded dataset, e.g. keyword text standing in for item titles."""


def _digests(layout: Layout, files: dict[str, Path], verify: bool) -> dict[str, str]:
    """sha256 of each input file; the layout's registered checksums are enforced when ``verify``."""
    out = {}
    for path in files.values():
        expected = layout.checksums.get(path.name) if verify else None
        out[path.name] = verify_sha256(path, expected) if expected else sha256_file(path)
    return out


def _empty_text_note(raw: RawData) -> list[str]:
    """Counted after filtering, so it describes the items that are actually used."""
    empty = sum(1 for t in raw.texts if not t)
    return [f"{empty} of {len(raw.texts)} items have no text (empty string)"] if empty else []


def _cache_path(spec: DatasetSpec, layout: str, digests: dict[str, str], cache_dir: str | Path | None = None) -> Path:
    key = json.dumps({"v": CACHE_VERSION, "layout": layout, "k": spec.k_core, "files": digests}, sort_keys=True)
    return cache_root(cache_dir) / "datasets" / spec.name / f"{hashlib.sha256(key.encode()).hexdigest()[:20]}.npz"


def _to_dataset(name: str, raw: RawData, source: dict) -> SequenceDataset:
    offsets = np.cumsum(raw.lengths)[:-1]
    sequences = np.split(raw.items.astype(np.int64), offsets) if len(raw.lengths) else []
    return SequenceDataset(
        name, raw.user_ids, sequences, ItemTable(raw.item_ids, raw.texts, raw.images), raw.notes, source, raw.split
    )


def _save(path: Path, raw: RawData, source: dict) -> None:
    strings = {"users": raw.user_ids, "items": raw.item_ids, "texts": raw.texts, "images": raw.images}
    split = {} if raw.split is None else {"split": raw.split}
    save_npz(
        path,
        **split,
        lengths=raw.lengths,
        flat=raw.items,
        strings=pack_json(strings),
        meta=pack_json({"notes": raw.notes, "source": source}),
    )


def _load(path: Path) -> tuple[RawData, dict] | None:
    data = load_npz(path)
    if data is None:
        return None
    s, meta = unpack_json(data["strings"]), unpack_json(data["meta"])
    raw = RawData(
        s["users"], data["lengths"], data["flat"], s["items"], s["texts"], s["images"], meta["notes"], data.get("split")
    )
    return raw, meta["source"]


def resolve_spec(name: str, data_dir: str | Path | None = None) -> tuple[DatasetSpec, Path]:
    """A registered spec, else one for the folder's own files (``dataset.yaml`` / RecBole / CSV / Parquet)."""
    folder = dataset_folder(name, data_dir)
    if name in list_datasets():
        return get_spec(name), folder
    return folder_spec(name, folder) or get_spec(name), folder  # get_spec raises, listing valid names


def load_dataset(
    name: str,
    data_dir: str | Path | None = None,
    *,
    verify: bool = True,
    use_cache: bool = True,
    resolve_images: bool = True,
    cache_dir: str | Path | None = None,
) -> SequenceDataset:
    """Load a registered dataset: chronological per-user sequences after iterative k-core filtering.

    Reads ``<data_dir>/<name>/`` (default $HARNESS_DATA_DIR), checks registered sha256 checksums
    (``verify``), and caches the processed result under ``<cache root>/datasets`` (``cache_dir``, else
    $HARNESS_CACHE_DIR: ``harness.data.paths.cache_root``) keyed by the
    files' sha256, so a second load is a single npz read. With ``resolve_images``, image URLs that
    ``harness data images`` downloaded are replaced by their local files.
    """
    spec, folder = resolve_spec(name, data_dir)
    layout, files = spec.find_layout(folder)
    digests = _digests(layout, files, verify)
    source = {"layout": layout.name, "folder": str(folder), "files": digests}
    path = _cache_path(spec, layout.name, digests, cache_dir)
    cached = _load(path) if use_cache else None
    if cached is not None:
        raw = cached[0]  # the source of this call (folder may differ) is kept
    else:
        log.info("building %s from %s (%s layout)", name, folder, layout.name)
        raw = apply_kcore(layout.reader(files), spec.k_core)
        raw.notes += _empty_text_note(raw)
        if use_cache:
            _save(path, raw, source)
    if resolve_images:
        raw.images = local_images(folder, raw.item_ids, raw.images)
    if raw.notes:
        warnings.warn(f"{name}: {'; '.join(raw.notes)}", DatasetNoteWarning, stacklevel=2)
    return _to_dataset(name, raw, source)
