"""Encoder registry: ``create_encoder``, ``list_encoders``, ``get_info`` (see docs/ENCODERS.md).

Importing this package registers every backend's names (one module per backend); the registry
(``encoders.registry``) is a leaf, names and local directories are resolved by ``encoders.factory``.
"""

from __future__ import annotations

from encoders import (  # noqa: F401  (register names)
    hf_text,
    open_clip_backend,
    sentence_transformers_backend,
    timm_backend,
)
from encoders.base import Encoder, EncoderInfo
from encoders.factory import create_encoder, get_info, get_spec
from encoders.registry import EncoderSpec, LoadOptions, list_encoders, register_encoder
from encoders.weights import WeightsNotFoundError

__all__ = [
    "Encoder", "EncoderInfo", "EncoderSpec", "LoadOptions", "WeightsNotFoundError",
    "create_encoder", "get_info", "get_spec", "list_encoders", "register_encoder",
]
