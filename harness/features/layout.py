"""Where cached features live: one folder per (dataset, encoder, modality).

    <cache_root>/features/<dataset>/<encoder>/<modality>/
        manifest.json   features.npy   valid.npy   shards/<rank>-<chunk>.safetensors   shards/plan.json
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

from harness.data import paths

MODALITIES = ("text", "image")


def check_modality(modality: str) -> str:
    if modality not in MODALITIES:
        raise ValueError(f"modality {modality!r} is not one of {', '.join(MODALITIES)}")
    return modality


def encoder_key(encoder: str) -> str:
    """A folder name for an encoder: the registered name, or ``<basename>-<hash8>`` for a local path.

    Two different checkpoints that share a folder name must not share a cache, hence the hash of the
    absolute path.
    """
    if "/" not in encoder and os.sep not in encoder and not Path(encoder).exists():
        return encoder
    path = Path(encoder.removeprefix("local-dir:")).expanduser().resolve()
    digest = hashlib.sha256(str(path).encode()).hexdigest()[:8]
    return f"{re.sub(r'[^A-Za-z0-9_.-]', '_', path.name) or 'model'}-{digest}"


def feature_dir(dataset: str, encoder: str, modality: str, cache_root: str | Path | None = None) -> Path:
    """The cache folder for one (dataset, encoder, modality)."""
    check_modality(modality)
    return paths.cache_root(cache_root) / "features" / dataset / encoder_key(encoder) / modality


def shard_name(rank: int, chunk: int) -> str:
    """``<rank>-<chunk>.safetensors``: the rank that wrote it and the world-size-independent chunk id."""
    return f"{rank:05d}-{chunk:07d}.safetensors"


def chunk_of(shard_path: Path) -> int:
    """The chunk id in a shard file name (whatever rank wrote it)."""
    return int(shard_path.name.split(".")[0].split("-")[1])
