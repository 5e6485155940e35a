"""Encoder registry: ``create_encoder``, ``list_encoders``, ``get_info`` (see docs/ENCODERS.md).

Importing this package registers every backend's names (one module per backend).
"""

from __future__ import annotations

import dataclasses

import torch

from encoders import (  # noqa: F401  (register names)
    hf_text,
    open_clip_backend,
    sentence_transformers_backend,
    timm_backend,
)
from encoders.base import Encoder, EncoderInfo, compile_blocks
from encoders.registry import (
    RANDOM,
    EncoderSpec,
    LoadOptions,
    get_info,
    get_spec,
    list_encoders,
    register_encoder,
)
from encoders.weights import WeightsNotFoundError

__all__ = [
    "Encoder", "EncoderInfo", "EncoderSpec", "LoadOptions", "WeightsNotFoundError",
    "create_encoder", "get_info", "list_encoders", "register_encoder",
]


def create_encoder(name_or_path: str, device: str | torch.device = "cpu", dtype: str | torch.dtype | None = None,
                   trust_remote_code: bool = False, allow_downloads: bool = False,
                   packing: bool | None = None, random_weights: bool = False, compile: bool = False) -> Encoder:
    """Load an encoder by registered name or local directory, ready for ``preprocess`` / ``encode``.

    ``dtype=None`` picks float32 on CPU and the encoder's preferred dtype on an accelerator.
    Weights come from local files only unless ``allow_downloads=True``. ``packing`` forces the
    padding-free path on (decoder text models) or off; ``None`` packs where a varlen kernel runs.
    ``random_weights=True`` builds the real architecture with seeded random weights (throughput
    benchmarks; text models then use the offline MiniLM tokenizer) and reports ``weights="random"``.
    ``compile=True`` compiles the model's repeated blocks with dynamic shapes (see ``compile_blocks``).
    """
    from encoders.base import resolve_dtype

    spec = get_spec(name_or_path, trust_remote_code=trust_remote_code)
    device = torch.device(device)
    options = LoadOptions(device=device, dtype=resolve_dtype(dtype, device, spec.dtype),
                          trust_remote_code=trust_remote_code, allow_downloads=allow_downloads, packing=packing,
                          random_weights=random_weights, compile=compile)
    encoder = spec.load(options)
    if compile:
        compile_blocks(encoder.module)
    if random_weights:
        encoder.info = dataclasses.replace(encoder.info, weights=RANDOM)
    return encoder
