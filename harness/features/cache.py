"""Reading the feature cache: ``load_features`` (refuses foreign inputs) and ``ensure_features``."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from harness.features.fingerprint import fingerprint, item_raws
from harness.features.layout import feature_dir
from harness.features.manifest import read_json


@dataclass
class Features:
    """A cached feature matrix (row i = item i, zeros where ``valid`` is False) and its manifest."""

    matrix: np.ndarray  # float32 [N, dim], memory-mapped read-only
    valid: np.ndarray  # bool [N]
    manifest: dict


class FingerprintMismatch(ValueError):
    """The cache was built from other item inputs than the dataset it is loaded for."""


class CacheMissing(FileNotFoundError):
    """No complete cache (no manifest) for this (dataset, encoder, modality)."""


def _encode_hint(dataset: str, encoder: str, modality: str) -> str:
    return f"harness encode --dataset {dataset} --encoder {encoder} --modality {modality}"


def read_cache(folder: Path, raws: list[str], modality: str, hint: str = "") -> Features:
    """Load a complete cache folder, checking it was built from exactly ``raws``."""
    manifest_path = folder / "manifest.json"
    if not manifest_path.is_file():
        raise CacheMissing(f"no complete feature cache at {folder} (manifest.json missing); build it with: {hint}")
    manifest = read_json(manifest_path)
    expected = fingerprint(raws, modality)
    if manifest.get("fingerprint") != expected:
        raise FingerprintMismatch(
            f"feature cache {folder} was built from other item inputs: it holds {manifest.get('n_items')} items "
            f"with fingerprint {str(manifest.get('fingerprint'))[:12]}..., the dataset has {len(raws)} items with "
            f"fingerprint {expected[:12]}... (dataset changed, other filtering or item order). "
            f"Re-encode with: {hint} --overwrite"
        )
    matrix = np.load(folder / "features.npy", mmap_mode="r")
    valid = np.load(folder / "valid.npy")
    if matrix.shape != (len(raws), manifest["dim"]) or valid.shape != (len(raws),):
        raise RuntimeError(f"{folder}: features {matrix.shape} / valid {valid.shape} disagree with the manifest")
    return Features(matrix=matrix, valid=valid, manifest=manifest)


def load_features(dataset: Any, encoder: str, modality: str, cache_root: str | Path | None = None) -> Features:
    """The cached features of ``dataset``'s items under ``encoder``; refuses a fingerprint mismatch."""
    folder = feature_dir(dataset.name, encoder, modality, cache_root)
    raws = item_raws(dataset.items, modality)
    return read_cache(folder, raws, modality, _encode_hint(dataset.name, encoder, modality))


def ensure_features(dataset: Any, encoder: str, modality: str, cache_root: str | Path | None = None) -> Features:
    """Load the cache, encoding in this process first (same code as the encode job) when it is missing."""
    try:
        return load_features(dataset, encoder, modality, cache_root)
    except CacheMissing:
        from harness.encode import encode_dataset  # the encode job imports this package

        encode_dataset(dataset, encoder, modality, cache_root=cache_root)
        return load_features(dataset, encoder, modality, cache_root)
