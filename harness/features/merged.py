"""The merged files of a complete cache and the checksums its manifest records for them.

``features.npy`` (float32 [N, dim], row i = item i) and ``valid.npy`` (bool [N]) are written by the
encode job's merge (``harness.encoding.merge``); readers call ``verify_merged`` before trusting them.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

MERGED = ("features.npy", "valid.npy")


def file_record(path: Path) -> dict:
    """sha256 and size of one file (read in 16 MiB blocks)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(1 << 24):
            h.update(block)
    return {"sha256": h.hexdigest(), "bytes": path.stat().st_size}


def verify_merged(folder: Path, manifest: dict) -> str | None:
    """Why the merged files in ``folder`` are not the ones ``manifest`` records, or None when they are."""
    records = manifest.get("merged")
    if not records:
        return f"the manifest of {folder} records no checksums of its merged files"
    for name in MERGED:
        path, want = folder / name, records.get(name) or {}
        if not path.is_file():
            return f"{path} is missing"
        if path.stat().st_size != want.get("bytes"):
            return f"{path} has {path.stat().st_size} bytes, the manifest records {want.get('bytes')}"
        if file_record(path)["sha256"] != want.get("sha256"):
            return f"{path} does not match the sha256 its manifest records (damaged)"
    return None
