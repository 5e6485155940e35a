"""The cache manifest (``manifest.json``) and the job plan (``shards/plan.json``).

The manifest is written last, after the merged matrix: its presence marks a complete cache. The plan
is written before any shard: a rerun whose plan differs (other inputs, encoder, dtype or chunking)
must not mix its shards with the old ones.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import platform
from pathlib import Path

from harness.atomic import write_text

# What a complete cache must agree on to be reused as it is.
COMPLETE_KEYS = ("encoder", "revision", "modality", "pooling", "layer", "dtype", "dim", "n_items", "fingerprint")
# What unfinished shards must agree on to be resumed: the above plus how the items were cut into chunks.
PLAN_KEYS = (*COMPLETE_KEYS, "chunk_size", "chunk_order")

_LIBRARIES = ("torch", "transformers", "numpy", "safetensors", "accelerate", "deepspeed", "timm",
              "open_clip_torch", "sentence-transformers", "tokenizers", "pillow")


def write_json_atomic(path: Path, data: dict) -> None:
    """Write ``data`` as indented JSON, atomically (``harness.atomic``)."""
    write_text(path, json.dumps(data, indent=2, sort_keys=False) + "\n")


def read_json(path: Path) -> dict:
    return json.loads(Path(path).read_text())


def library_versions() -> dict[str, str]:
    """Versions of Python and of the libraries that can change the features."""
    out = {"python": platform.python_version()}
    for name in _LIBRARIES:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return out


class PlanMismatch(RuntimeError):
    """Unfinished shards in the cache folder were made by a different job."""


def check_plan(old: dict, new: dict, folder: Path, keys: tuple[str, ...] = PLAN_KEYS) -> None:
    """Raise ``PlanMismatch`` naming every key on which a previous job differs."""
    diffs = [f"{k}: cached {old.get(k)!r} vs now {new.get(k)!r}" for k in keys if old.get(k) != new.get(k)]
    if diffs:
        raise PlanMismatch(
            f"{folder} holds shards of a different encode job ({'; '.join(diffs)}). "
            "Rerun with the same settings to resume it, or pass --overwrite to discard those shards."
        )


def _dir_revision(path: Path) -> str:
    """Content id of a local checkpoint folder: its config plus the names and sizes of its files."""
    h = hashlib.sha256()
    for f in sorted(p for p in path.rglob("*") if p.is_file()):
        h.update(f"{f.relative_to(path)}:{f.stat().st_size}\n".encode())
        if f.suffix == ".json" and f.stat().st_size < 1 << 20:
            h.update(f.read_bytes())
    return "dir-sha256:" + h.hexdigest()[:16]


def weights_revision(weights: str) -> str:
    """Which weights an encoder used: random init, a local folder's content id, a package version,
    or the Hugging Face snapshot commit found in the local cache (never a download)."""
    if weights == "random":
        return "random-init (seeded)"
    path = Path(weights).expanduser()
    if path.is_dir():
        return _dir_revision(path)
    try:
        return f"{weights}=={importlib.metadata.version(weights)}"
    except (importlib.metadata.PackageNotFoundError, ValueError):
        pass
    try:
        from huggingface_hub import snapshot_download

        return f"{weights}@{Path(snapshot_download(weights, local_files_only=True)).name}"
    except Exception:  # noqa: BLE001 - not cached here: the revision is unknown, not an error
        return f"{weights}@unknown"
