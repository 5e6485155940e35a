"""Image decoding for image encoders: a picklable callable run inside DataLoader workers.

A raw image is a local path (str / Path), raw bytes, or a PIL image. A missing, unreadable or
corrupt image never raises: its row is zeros and ``valid=False``.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from PIL import Image

_DECODE_ERRORS = (OSError, ValueError, SyntaxError, TypeError, Image.DecompressionBombError)


def open_image(raw: Any) -> Image.Image | None:
    """An RGB image, or None when ``raw`` cannot be read as one."""
    try:
        if isinstance(raw, Image.Image):
            img = raw
        elif isinstance(raw, (bytes, bytearray)):
            img = Image.open(io.BytesIO(raw))
        elif isinstance(raw, (str, Path)) and str(raw) and Path(raw).is_file():
            img = Image.open(raw)
        else:
            return None
        img.load()  # decode now, so truncated files fail here and not later
        return img.convert("RGB")
    except _DECODE_ERRORS:
        return None


@dataclass
class ImagePreprocessor:
    """Decode + the encoder's own transform (resize / crop / normalise) -> ``pixel_values`` [N, 3, S, S]."""

    transform: Callable[[Image.Image], torch.Tensor]
    image_size: int

    def lengths(self, raws: list[Any]) -> list[int]:
        return [1] * len(raws)

    def __call__(self, raws: list[Any]) -> dict[str, torch.Tensor]:
        pixels = torch.zeros(len(raws), 3, self.image_size, self.image_size)
        valid = torch.zeros(len(raws), dtype=torch.bool)
        for i, raw in enumerate(raws):
            img = open_image(raw)
            if img is not None:
                pixels[i] = self.transform(img)
                valid[i] = True
        return {"pixel_values": pixels, "valid": valid}


class ImageEncoderMixin:
    """Forward for image towers that map pixels [N, 3, S, S] straight to pooled features."""

    def _forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        pixels = batch["pixel_values"].to(self.device, self.dtype, non_blocking=True)
        if self.device.type == "cuda":
            pixels = pixels.contiguous(memory_format=torch.channels_last)
        return self.module(pixels)
