"""Builders that translate ``Config`` into each backbone's flat constructor arguments."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import nn

from harness.config import Config
from harness.models.build import register_backbone
from harness.models.clusters import cluster_items
from harness.models.gru4rec import GRU4Rec
from harness.models.items import ItemRepresentation
from harness.models.mmsr import MMSR
from harness.models.sasrec import SASRec


@register_backbone("sasrec")
def sasrec(cfg: Config, items: ItemRepresentation, features: Mapping[str, Any]) -> nn.Module:
    m = cfg.model
    return SASRec(items, max_len=cfg.dataset.max_len, layers=m.layers, heads=m.heads, dropout=m.dropout)


@register_backbone("gru4rec")
def gru4rec(cfg: Config, items: ItemRepresentation, features: Mapping[str, Any]) -> nn.Module:
    return GRU4Rec(items, layers=cfg.model.layers, dropout=cfg.model.dropout)


@register_backbone("mmsr")
def mmsr(cfg: Config, items: ItemRepresentation, features: Mapping[str, Any]) -> nn.Module:
    """MMSR over the modalities present in ``features`` (k-means clusters computed here, once)."""
    m = cfg.model
    clusters = {name: cluster_items(f, m.clusters, m.cluster_links, m.dim, cfg.train.seed) for name, f in features.items()}
    return MMSR(
        items,
        links={name: c.links for name, c in clusters.items()},
        cluster_init={name: c.init for name, c in clusters.items()},
        max_len=cfg.dataset.max_len,
        layers=m.layers,
        dropout=m.dropout,
    )
