"""The encoder registry: names registered by decorator at import, looked up by name, pattern or path.

    @register_encoder("tiny-llama")
    def tiny_llama() -> EncoderSpec: ...

``list_encoders("text/*")`` matches ``<modality>/<name>`` as well as the bare name. A leaf: it imports
no backend. Local directories (``local-dir:/path``) are resolved by the factory (``encoders.factory``),
as timm parses ``hf-hub:`` names outside its registry.
"""

from __future__ import annotations

import difflib
import fnmatch
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache
from typing import Any

import torch
from torch import nn

from encoders.base import (
    MODALITIES,
    Encoder,
    EncoderInfo,
    choose_strategy,
    count_parameters,
)

RANDOM = "random"  # the ``weights`` of tiny test models: seeded random init


@dataclass(frozen=True, eq=False)
class LoadOptions:
    """How ``create_encoder`` was asked to load (device, dtype, what is allowed)."""

    device: torch.device
    dtype: torch.dtype
    trust_remote_code: bool = False
    allow_downloads: bool = False
    packing: bool | None = None  # None = the backend decides (padding-free where a varlen kernel exists)
    random_weights: bool = False  # the real architecture with seeded random init (benchmarks; no checkpoint needed)
    compile: bool = False  # torch.compile the repeated blocks (worth it on GPU for long jobs; ~20 s of compile)

    def random_init(self, spec: EncoderSpec) -> bool:
        return self.random_weights or spec.weights == RANDOM


@dataclass(frozen=True, eq=False)
class EncoderSpec(ABC):
    """A registered name: metadata fields plus how to build the network (meta or real)."""

    name: str
    modality: str
    backend: str
    family: str
    weights: str
    pooling: str
    dim: int
    layer: int = -1
    max_tokens: int | None = None
    image_size: int | None = None
    dtype: str = "bfloat16"
    extra: dict[str, Any] = field(default_factory=dict)
    revision: str | None = None  # the upstream commit the registered weights are pinned to, when known

    @abstractmethod
    def skeleton(self) -> nn.Module:
        """The network from its config, without loading weights (called under ``torch.device('meta')``)."""

    @abstractmethod
    def load(self, options: LoadOptions) -> Encoder:
        """Build the encoder with its weights (local files only unless ``options.allow_downloads``)."""

    def count_params(self) -> int:
        """Parameters of the network, counted on the meta device (no memory, no weights)."""
        with torch.device("meta"):
            return count_parameters(self.skeleton())


_FACTORIES: dict[str, Callable[[], EncoderSpec]] = {}


def register_encoder(name: str) -> Callable[[Callable[[], EncoderSpec]], Callable[[], EncoderSpec]]:
    """Decorator: register a zero-argument function returning the spec for ``name``."""

    def wrap(fn: Callable[[], EncoderSpec]) -> Callable[[], EncoderSpec]:
        if name in _FACTORIES:
            raise ValueError(f"encoder {name!r} is registered twice")
        _FACTORIES[name] = fn
        return fn

    return wrap


@cache
def _registered_spec(name: str) -> EncoderSpec:
    spec = _FACTORIES[name]()
    if spec.name != name or spec.modality not in MODALITIES:
        raise ValueError(f"encoder factory for {name!r} returned a bad spec: {spec.name!r}/{spec.modality!r}")
    return spec


def unknown_encoder(name: str) -> KeyError:
    names = sorted(_FACTORIES)
    close = difflib.get_close_matches(name, names, n=len(names), cutoff=0.0)
    return KeyError(
        f"unknown encoder {name!r}; closest: {', '.join(close[:5])}. Valid names: {', '.join(close)}. "
        "A local directory (local-dir:/path) also works."
    )


def is_registered(name: str) -> bool:
    return name in _FACTORIES


def registered_spec(name: str) -> EncoderSpec:
    """The spec of a registered name (``KeyError`` naming the closest ones otherwise)."""
    if name not in _FACTORIES:
        raise unknown_encoder(name)
    return _registered_spec(name)


def list_encoders(pattern: str = "*") -> list[str]:
    """Registered names matching ``pattern`` against ``name`` or ``<modality>/<name>``, sorted."""
    out = []
    for name in sorted(_FACTORIES):
        spec = _registered_spec(name)
        if fnmatch.fnmatchcase(name, pattern) or fnmatch.fnmatchcase(f"{spec.modality}/{name}", pattern):
            out.append(name)
    return out


@cache
def _params(spec: EncoderSpec) -> int:
    return spec.count_params()


def info_of(spec: EncoderSpec) -> EncoderInfo:
    """Metadata of a spec; the parameter count comes from the config on the meta device."""
    params = _params(spec)
    return EncoderInfo(
        name=spec.name, modality=spec.modality, backend=spec.backend, family=spec.family,
        weights=spec.weights, params=params, dim=spec.dim, pooling=spec.pooling, layer=spec.layer,
        max_tokens=spec.max_tokens, image_size=spec.image_size, dtype=spec.dtype,
        strategy=choose_strategy(params, spec.dtype), revision=spec.revision,
    )
