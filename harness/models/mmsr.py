"""MMSR (Hu et al., CIKM 2023; the KDSR paper's default backbone), trained on every position at once.

Graph: ``mmsr_graph.build_graph`` (items plus per-modality k-means cluster nodes; sequential
transitions out/in/both, item-modality and modality-modality links), built causally so that the
state at position t depends on items <= t only. Each ``GraphLayer``:
- homogeneous attention per relation: ``e_ij = LeakyReLU((v_i * a_r) . v_j / sqrt(D))`` over the
  SELF/OUT/IN/BOTH neighbours (``a_r`` one vector per relation),
- typed cross-attention: per-node-type Q, K and V projections (proper K and V, unlike the
  authors' code which reuses Q), softmax over the SELF/CROSS neighbours,
- gated fusion: softmax over an MLP energy of the two outputs, then residual + LayerNorm.
Readout (KDSR eq. 6) at every position t over the item nodes: long-term interest = mean of the
states <= t; short-term = attention over the last ``short_window`` items with weights
``q^T sigmoid(W1 h_j + W2 long_t)``; output = ``W3 [long_t ; short_t]``.
See docs/MODELS.md for the mapping from the paper to this code and the deviations.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch
from torch import nn

from harness.models.items import ID_INIT_STD, ItemRepresentation
from harness.models.layers import Dropout, compaction, gather_rows, positions
from harness.models.mmsr_graph import BOTH, CROSS, IN, OUT, SELF, build_graph

HOMOGENEOUS = (SELF, OUT, IN, BOTH)


def _cluster_count(links: np.ndarray, init: np.ndarray | None) -> int:
    """Number of clusters of a modality: rows of its init, else the largest linked id + 1."""
    links = np.asarray(links)
    count = int(links.max()) + 1 if (links >= 0).any() else 0
    if init is not None:
        if len(init) < count:
            raise ValueError(f"cluster links reach id {count - 1} but only {len(init)} cluster vectors were given")
        count = len(init)
    return count


class TypedLinear(nn.Module):
    """One bias-free ``D -> D`` linear map per node type, applied to nodes laid out ``[B, L, G, D]``."""

    def __init__(self, types: int, dim: int):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(types, dim, dim))
        nn.init.xavier_uniform_(self.weight)

    def forward(self, x: torch.Tensor, slot_type: torch.Tensor) -> torch.Tensor:
        b, length, g, d = x.shape
        y = torch.bmm(x.transpose(0, 2).reshape(g, length * b, d), self.weight[slot_type])  # [G, L*B, D]
        return y.view(g, length, b, -1).transpose(0, 2)


def type_ranges(slot_type: list[int]) -> list[tuple[int, int]]:
    """``[(start, stop)]`` slot ranges of each node type; slots of one type must be contiguous."""
    ranges: list[tuple[int, int]] = []
    for s, t in enumerate(slot_type):
        if ranges and slot_type[ranges[-1][0]] == t:
            ranges[-1] = (ranges[-1][0], s + 1)
        elif any(slot_type[a] == t for a, _ in ranges):
            raise ValueError(f"slots of node type {t} are not contiguous: {slot_type}")
        else:
            ranges.append((s, s + 1))
    return ranges


class GraphLayer(nn.Module):
    """Relation-wise homogeneous attention + typed cross-attention, gated fusion, residual.

    Args:
        dim: D. ``slot_type``: node type of each of the G slots of a position (contiguous per type).
        dropout: on the fused update.
    """

    def __init__(self, dim: int, slot_type: list[int], dropout: float):
        super().__init__()
        types = max(slot_type) + 1
        self.ranges = type_ranges(list(slot_type))
        self.q, self.k, self.v = TypedLinear(types, dim), TypedLinear(types, dim), TypedLinear(types, dim)
        self.relation = nn.Parameter(torch.ones(len(HOMOGENEOUS), dim))
        self.gate = nn.Linear(dim, dim)
        self.gate_score = nn.Parameter(torch.randn(dim) * dim**-0.5)
        self.drop = Dropout(dropout)
        self.norm = nn.LayerNorm(dim)

    def _relation_attention(self, v: torch.Tensor, relation: torch.Tensor) -> torch.Tensor:
        """``v [B, T, D]`` nodes of one type, ``relation [B, T, T]``: softmax over SELF/OUT/IN/BOTH neighbours."""
        # relation-major layout [R, B, T, *]: the reductions of the backward pass stay contiguous
        query = v.unsqueeze(0) * (self.relation * v.shape[-1] ** -0.5)[:, None, None, :]  # [R, B, T, D]
        scores = query @ v.transpose(-1, -2).unsqueeze(0)  # [R, B, T, T]: one score per relation type
        rel = (relation.long() - SELF).clamp(0, len(HOMOGENEOUS) - 1).unsqueeze(0)
        scores = nn.functional.leaky_relu(scores.gather(0, rel).squeeze(0), 0.2)
        eye = torch.eye(v.shape[1], dtype=torch.bool, device=v.device)
        mask = ((relation >= SELF) & (relation <= BOTH)) | eye
        return torch.softmax(scores.masked_fill(~mask, float("-inf")), -1) @ v

    def homogeneous(self, v: torch.Tensor, relation: torch.Tensor) -> torch.Tensor:
        """``v [B, L, G, D]``: relation attention within each node type's block (edges never cross types)."""
        b, length, g, d = v.shape
        rel = relation.view(b, length, g, length, g)
        out = []
        for start, stop in self.ranges:
            k = stop - start
            block = rel[:, :, start:stop, :, start:stop].reshape(b, length * k, length * k)
            out.append(self._relation_attention(v[:, :, start:stop].reshape(b, length * k, d), block).view(b, length, k, d))
        return torch.cat(out, 2)

    def forward(self, x: torch.Tensor, slot_type: torch.Tensor, relation: torch.Tensor) -> torch.Tensor:
        b, length, g, d = x.shape
        flat = lambda y: y.reshape(b, length * g, d)
        q, k, v = (f(x, slot_type) for f in (self.q, self.k, self.v))
        homo = flat(self.homogeneous(v, relation))
        eye = torch.eye(length * g, dtype=torch.bool, device=x.device)
        cross_mask = (relation == SELF) | (relation == CROSS) | eye
        cross = nn.functional.scaled_dot_product_attention(flat(q), flat(k), flat(v), cross_mask)
        both = torch.stack([homo, cross], dim=2)  # [B, T, 2, D]
        energy = (torch.relu(self.gate(both)) * self.gate_score).sum(-1, keepdim=True)  # MLP -> 1 (elementwise: fast backward)
        fused = (torch.softmax(energy, dim=2) * both).sum(2)
        return self.norm(flat(x) + self.drop(fused)).view(b, length, g, d)


class InterestReadout(nn.Module):
    """KDSR eq. 6 at every position: long-term mean and short-term attention over the last items."""

    def __init__(self, dim: int, window: int):
        super().__init__()
        self.window = window
        self.w1, self.w2 = nn.Linear(dim, dim), nn.Linear(dim, dim, bias=False)
        self.q = nn.Parameter(torch.randn(dim) * dim**-0.5)
        self.w3 = nn.Linear(2 * dim, dim)

    def forward(self, h: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        order, inverse = compaction(mask)
        h = gather_rows(h * mask.unsqueeze(-1), order)  # real items first, in order
        count = positions(mask).gather(1, order).clamp_min(1).unsqueeze(-1)
        long = h.cumsum(1) / count
        recent = torch.stack([nn.functional.pad(h, (0, 0, w, 0))[:, : h.shape[1]] for w in range(self.window)], 2)
        lag = torch.arange(self.window, device=h.device)
        ok = lag < count  # lag w exists once w + 1 items are seen
        energy = (torch.sigmoid(self.w1(recent) + self.w2(long).unsqueeze(2)) * self.q).sum(-1)
        alpha = torch.softmax(energy.masked_fill(~ok, float("-inf")), -1)
        short = (alpha.unsqueeze(-1) * recent).sum(2)
        return gather_rows(self.w3(torch.cat([long, short], -1)), inverse)


class MMSR(nn.Module):
    """``forward(item_seq [B, L]) -> hidden [B, L, D]``; hidden[:, t] is the sequence representation at t.

    Args:
        items: the item representation (item nodes start from ``items.embed``; D = ``items.dim``).
        links: modality -> ``[N, k]`` cluster ids per item (nearest first, -1 = no link).
        cluster_init: modality -> ``[C, D]`` initial cluster-node vectors (default random).
        max_len, layers, dropout: longest sequence, graph layers, dropout rate.
        short_window: how many recent items the short-term interest attends to.
    """

    causal = True

    def __init__(
        self,
        items: ItemRepresentation,
        links: Mapping[str, np.ndarray] | None = None,
        cluster_init: Mapping[str, np.ndarray] | None = None,
        max_len: int = 50,
        layers: int = 2,
        dropout: float = 0.2,
        short_window: int = 3,
    ):
        super().__init__()
        dim, links, cluster_init = items.dim, dict(links or {}), dict(cluster_init or {})
        self.items, self.max_len, self.modalities = items, max_len, sorted(links)
        counts = {n: _cluster_count(links[n], cluster_init.get(n)) for n in self.modalities}
        slot_ident, slot_type = self._slots(items.num_items, links, counts)
        self.register_buffer("slot_ident", slot_ident, persistent=False)
        self.register_buffer("slot_type", slot_type, persistent=False)
        self.register_buffer("slot_row", (slot_ident - items.num_items).clamp_min(0)[:, 1:], persistent=False)
        self.clusters = nn.Embedding(1 + sum(counts.values()), dim, padding_idx=0)
        self._init_clusters(counts, cluster_init)
        self.node_type = nn.Embedding(1 + len(self.modalities), dim)
        self.position = nn.Embedding(max_len + 1, dim, padding_idx=0)
        for table in (self.node_type.weight, self.position.weight[1:]):  # at the item vectors' scale
            nn.init.normal_(table, std=ID_INIT_STD)
        self.drop = Dropout(dropout)
        self.layers = nn.ModuleList(GraphLayer(dim, slot_type.tolist(), dropout) for _ in range(layers))
        self.readout = InterestReadout(dim, short_window)

    def _slots(self, num_items: int, links: dict[str, np.ndarray], counts: dict[str, int]) -> tuple[torch.Tensor, torch.Tensor]:
        """Identity of every node slot per item: the item id, or num_items + cluster row (rows from 1)."""
        columns, types, base = [torch.arange(num_items + 1)], [0], 1
        for m, name in enumerate(self.modalities):
            link = torch.as_tensor(np.asarray(links[name]), dtype=torch.long)
            if link.ndim != 2 or link.shape[0] != num_items:
                raise ValueError(f"{name} cluster links must be [{num_items}, k], got {tuple(link.shape)}")
            rows = torch.where(link >= 0, link + base + num_items, -1)
            columns.extend(torch.cat([torch.full((1,), -1), rows[:, r]]) for r in range(link.shape[1]))
            types.extend([1 + m] * link.shape[1])
            base += counts[name]
        slot_ident = torch.stack(columns, 1)
        slot_ident[0] = -1
        return slot_ident, torch.tensor(types)

    def _init_clusters(self, counts: dict[str, int], init: dict[str, np.ndarray]) -> None:
        nn.init.normal_(self.clusters.weight, std=0.02)
        with torch.no_grad():
            self.clusters.weight[0].zero_()
            base = 1
            for name in self.modalities:
                if name in init:
                    self.clusters.weight[base : base + counts[name]] = torch.as_tensor(np.asarray(init[name]), dtype=torch.float32)
                base += counts[name]

    def nodes(self, item_seq: torch.Tensor) -> torch.Tensor:
        """Initial node states ``[B, L, G, D]``: item / cluster vectors + node type + position."""
        mask = item_seq > 0
        pos = positions(mask)
        if int(pos.max()) > self.max_len:
            raise ValueError(f"sequence has {int(pos.max())} items; this MMSR was built for max_len={self.max_len}")
        item = self.items.embed(item_seq).unsqueeze(2)
        x = torch.cat([item, self.clusters(self.slot_row[item_seq])], 2)
        x = x + self.node_type(self.slot_type) + self.position(pos).unsqueeze(2)
        return self.drop(x) * (self.slot_ident[item_seq] >= 0).unsqueeze(-1).to(x.dtype)

    def forward(self, item_seq: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            graph = build_graph(item_seq, self.slot_ident, self.slot_type)
        x = self.nodes(item_seq)
        valid = graph.valid.view(x.shape[:3]).unsqueeze(-1).to(x.dtype)
        for layer in self.layers:
            x = layer(x, self.slot_type, graph.relation) * valid
        mask = item_seq > 0
        return self.readout(x[:, :, 0], mask) * mask.unsqueeze(-1).to(x.dtype)
