"""Backbone registry and ``build_model``: the one place that turns a config into constructor calls.

Backbones take flat arguments (``SASRec(items, max_len=50, layers=2, ...)``); a builder registered
under the backbone's name translates ``Config`` into that call. Registration happens at import.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import nn

from harness.config import Config
from harness.models.items import ItemRepresentation

Builder = Callable[[Config, ItemRepresentation, Mapping[str, Any]], nn.Module]
_BACKBONES: dict[str, Builder] = {}


def register_backbone(name: str) -> Callable[[Builder], Builder]:
    """Decorator: register ``builder(cfg, items, features) -> backbone`` under ``name``."""

    def wrap(builder: Builder) -> Builder:
        if name in _BACKBONES:
            raise ValueError(f"backbone {name!r} is registered twice")
        _BACKBONES[name] = builder
        return builder

    return wrap


def list_backbones() -> list[str]:
    """Registered backbone names, in registration order (the default, ``sasrec``, first)."""
    return list(_BACKBONES)


def get_builder(name: str) -> Builder:
    """The builder of backbone ``name``; unknown names raise ``KeyError`` listing valid ones (closest first)."""
    if name not in _BACKBONES:
        close = difflib.get_close_matches(name, list(_BACKBONES), n=len(_BACKBONES), cutoff=0.0)
        raise KeyError(f"unknown backbone {name!r}; valid: {', '.join(close)}")
    return _BACKBONES[name]


class SequentialRecommender(nn.Module):
    """A backbone plus the scoring head shared by all backbones (dot product with item vectors).

    ``forward(item_seq [B, L]) -> hidden [B, L, D]``; ``scores(hidden_last [B, D]) -> [B, N]``
    with column j = item j (0-based; the padding column is removed). ``items`` and ``causal``
    come from the backbone.
    """

    def __init__(self, backbone: nn.Module):
        super().__init__()
        self.backbone = backbone

    @property
    def items(self) -> ItemRepresentation:
        return self.backbone.items

    @property
    def causal(self) -> bool:
        return bool(self.backbone.causal)

    def forward(self, item_seq: torch.Tensor) -> torch.Tensor:
        return self.backbone(item_seq)

    def scores(self, hidden_last: torch.Tensor) -> torch.Tensor:
        return hidden_last @ self.items.all_items()[1:].T


def build_items(
    cfg: Config, num_items: int, features: Mapping[str, Any] | None, init: Mapping[str, Any] | None = None
) -> ItemRepresentation:
    """The item representation of ``cfg.model.items`` over the given modality features."""
    return ItemRepresentation(num_items, cfg.model.dim, cfg.model.items, features, init)


def build_model(
    cfg: Config, num_items: int, features: Mapping[str, Any] | None = None, init: Mapping[str, Any] | None = None
) -> SequentialRecommender:
    """``cfg.model`` -> a ``SequentialRecommender``.

    ``features``: modality name (``"text"``, ``"image"``) -> ``Features`` (``.matrix [N, F]``,
    ``.valid [N]``) or a bare ``[N, F]`` array. ``init``: optional modality -> ``[N, d]`` start
    values of the ``finetune`` tables (e.g. the KDSR autoencoder latent; default: PCA of the
    features). Unknown backbone names raise ``KeyError`` listing the valid ones.
    """
    builder = get_builder(cfg.model.name)
    features = dict(features or {})
    items = build_items(cfg, num_items, features, init)
    return SequentialRecommender(builder(cfg, items, features))
