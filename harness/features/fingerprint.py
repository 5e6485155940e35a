"""Fingerprint of an encode job's inputs: sha256 over the item texts or image bytes, in item order.

A cache made from other inputs (another dataset version, another 5-core filter, a different item
order) has another fingerprint and is refused by ``load_features``.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from harness.features.layout import check_modality


def item_raws(items: Any, modality: str) -> list[str]:
    """The raw input per item: its text, or its image path / URL ("" when it has none)."""
    check_modality(modality)
    return list(items.texts if modality == "text" else items.images)


def _image_bytes(ref: str) -> bytes:
    """The image's bytes for a readable local file; otherwise the reference itself (URL, missing file)."""
    path = Path(ref)
    if ref and not ref.startswith(("http://", "https://")) and path.is_file():
        return path.read_bytes()
    return ref.encode()


def fingerprint(raws: list[str], modality: str) -> str:
    """sha256 over (modality, count, each item's length-prefixed text or image bytes), in order."""
    check_modality(modality)
    h = hashlib.sha256(f"{modality}\n{len(raws)}\n".encode())
    for raw in raws:
        data = raw.encode() if modality == "text" else _image_bytes(raw)
        h.update(len(data).to_bytes(8, "little"))
        h.update(data)
    return h.hexdigest()
