"""Reading the feature cache: ``load_features`` (``harness.encoding.ensure_features`` encodes a missing one).

A cache is loaded only when its merged files match the checksums its manifest records, it was built
from exactly the dataset's item inputs, and at least one of its rows is valid.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from harness.features.fingerprint import fingerprint, item_raws
from harness.features.layout import feature_dir
from harness.features.manifest import read_json
from harness.features.merged import verify_merged


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


class CacheCorrupt(CacheMissing):
    """The merged files are missing or do not match the manifest; ``harness encode`` re-merges them
    from the shards (``harness.encoding.ensure_features`` does so by itself)."""


class NoValidFeatures(ValueError):
    """The encoder produced no valid row for any item (e.g. an image encoder on a dataset without images)."""


_ADD = {"image": "add image paths/URLs to the dataset or drop features.image_encoder",
        "text": "add item texts (titles, descriptions) to the dataset or drop features.text_encoder"}


def _no_valid_message(dataset: str, encoder: str, modality: str, manifest: dict, n: int) -> str:
    first = (manifest.get("failures") or [{}])[0]
    example = f" (e.g. item {first['item']}: {first.get('reason')})" if "item" in first else ""
    return (f"{dataset} has no usable item {modality}s: the {modality} encoder {encoder} produced 0 valid rows "
            f"for its {n} items{example}; {_ADD[modality]}")


def _encode_hint(dataset: str, encoder: str, modality: str) -> str:
    return f"harness encode --dataset {dataset} --encoder {encoder} --modality {modality}"


def read_cache(folder: Path, raws: list[str], modality: str, hint: str = "",
               dataset: str | None = None, encoder: str | None = None) -> Features:
    """Load a complete cache folder, checking its merged files against the manifest's checksums, that it
    was built from exactly ``raws``, and that it has a valid row."""
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
    problem = verify_merged(folder, manifest)
    if problem is not None:
        raise CacheCorrupt(f"feature cache {folder} is not intact: {problem}. "
                           f"Rerun the encode to re-merge it from its shards: {hint}")
    matrix = np.load(folder / "features.npy", mmap_mode="r")
    valid = np.load(folder / "valid.npy")
    if matrix.shape != (len(raws), manifest["dim"]) or valid.shape != (len(raws),):
        raise RuntimeError(f"{folder}: features {matrix.shape} / valid {valid.shape} disagree with the manifest")
    if not valid.any():
        raise NoValidFeatures(_no_valid_message(dataset or manifest.get("dataset", "?"), encoder or manifest.get("encoder", "?"),
                                                modality, manifest, len(raws)))
    return Features(matrix=matrix, valid=valid, manifest=manifest)


def load_features(dataset: Any, encoder: str, modality: str, cache_root: str | Path | None = None) -> Features:
    """The cached features of ``dataset``'s items under ``encoder``; refuses a fingerprint mismatch."""
    folder = feature_dir(dataset.name, encoder, modality, cache_root)
    raws = item_raws(dataset.items, modality)
    return read_cache(folder, raws, modality, _encode_hint(dataset.name, encoder, modality), dataset.name, encoder)
