"""MMSR: graph construction (hand-made and against a plain per-prefix reference), clusters, layer maths."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from harness.config import Config
from harness.models import build_model
from harness.models.clusters import cluster_items
from harness.models.items import ItemRepresentation
from harness.models.mmsr import MMSR, GraphLayer, InterestReadout
from harness.models.mmsr_graph import (
    BOTH,
    CROSS,
    IN,
    NONE,
    OUT,
    RELATIONS,
    SELF,
    build_graph,
)


def _relations_by_name(graph, slot_type, names):
    """Row i -> {name of j: relation name} for the non-NONE entries of batch row 0."""
    out = {}
    for i in range(graph.ident.shape[1]):
        if graph.valid[0, i]:
            row = graph.relation[0, i]
            out[names(i)] = {names(j): RELATIONS[int(row[j])] for j in range(len(row)) if row[j] != NONE}
    return out


def test_hand_made_sequence_edge_types_and_cluster_links():
    # items 1..4; one text cluster per item: 1,2 -> cluster A (ident 5), 3,4 -> cluster B (ident 6)
    slot_ident = torch.tensor([[-1, -1], [1, 5], [2, 5], [3, 6], [4, 6]])
    slot_type = torch.tensor([0, 1])
    graph = build_graph(torch.tensor([[0, 1, 2, 1, 3]]), slot_ident, slot_type)
    label = {1: "i1", 2: "i2", 3: "i3", 4: "i4", 5: "A", 6: "B"}
    names = lambda n: f"{label[int(graph.ident[0, n])]}@{int(graph.time[0, n])}"
    assert graph.valid[0].tolist() == [False, False] + [True] * 8  # left padding has no node
    assert _relations_by_name(graph, slot_type, names) == {
        "i1@1": {"i1@1": "self", "A@1": "cross"},
        "A@1": {"A@1": "self", "i1@1": "cross"},
        "i2@2": {"i1@1": "in", "i2@2": "self", "A@2": "cross"},  # 1 -> 2
        "A@2": {"i1@1": "cross", "i2@2": "cross", "A@2": "self"},  # A -> A is not an edge
        "i1@3": {"i2@2": "both", "i1@3": "self", "A@3": "cross"},  # 1 -> 2 -> 1; only the latest i1
        "A@3": {"i2@2": "cross", "i1@3": "cross", "A@3": "self"},
        "i3@4": {"i1@3": "in", "i3@4": "self", "B@4": "cross"},  # i3 is not linked to A
        "B@4": {"A@3": "in", "i3@4": "cross", "B@4": "self"},  # cluster transition A -> B
    }


def _reference(items: list[int], links: dict[int, list[tuple[int, int]]]) -> dict[int, dict[int, int]]:
    """Plain per-prefix MMSR graph over unique identities (authors' construction, no tensors)."""
    nodes, edges, co = set(), set(), set()
    for q, x in enumerate(items):
        bundle = links[x]
        nodes.update([x, *(c for _, c in bundle)])
        for _, c in bundle:
            co.update([(x, c), (c, x)])
        for (ta, a) in bundle:
            co.update((a, b) for tb, b in bundle if tb != ta)
        if q:
            prev = items[q - 1]
            if prev != x:
                edges.add((prev, x))
            edges.update((a, b) for ta, a in links[prev] for tb, b in bundle if ta == tb and a != b)
    rel = {}
    for x in nodes:
        row = {x: SELF}
        for y in nodes - {x}:
            o, i = (x, y) in edges, (y, x) in edges
            if (x, y) in co:
                row[y] = CROSS
            elif o or i:
                row[y] = BOTH if o and i else OUT if o else IN
        rel[x] = row
    return rel


def test_graph_matches_per_prefix_reference_on_random_sequences():
    rng = np.random.default_rng(0)
    n_items, k = 7, 2
    text = np.stack([rng.choice(4, k, replace=False) for _ in range(n_items)])
    image = np.stack([rng.choice(3, k, replace=False) for _ in range(n_items)])
    image[2] = -1  # item 3 has no valid image: no image nodes
    model = MMSR(ItemRepresentation(n_items, 8), links={"text": text, "image": image})
    ids = model.slot_ident
    links = {x: [(int(model.slot_type[s]), int(ids[x, s])) for s in range(1, ids.shape[1]) if ids[x, s] >= 0] for x in range(1, n_items + 1)}
    seq = torch.from_numpy(rng.integers(1, n_items + 1, size=(6, 9)))
    seq[0, :3] = 0
    seq[1, 6:] = 0
    graph = build_graph(seq, model.slot_ident, model.slot_type)
    for b in range(seq.shape[0]):
        real = [int(x) for x in seq[b] if x > 0]
        for i in torch.nonzero(graph.valid[b]).flatten().tolist():
            t = int(graph.time[b, i])
            expected = _reference(real[:t], links)[int(graph.ident[b, i])]
            row = graph.relation[b, i]
            got = [(int(graph.ident[b, j]), int(row[j])) for j in torch.nonzero(row).flatten().tolist()]
            assert len({x for x, _ in got}) == len(got), "an identity is visible twice"
            assert dict(got) == expected, (b, i, real[:t])


def test_relations_never_point_to_the_future_or_to_padding():
    rng = np.random.default_rng(1)
    model = MMSR(ItemRepresentation(9, 8), links={"text": rng.integers(0, 3, size=(9, 2))})
    seq = torch.from_numpy(rng.integers(0, 10, size=(4, 11)))
    g = build_graph(seq, model.slot_ident, model.slot_type)
    linked = g.relation != NONE
    assert not (linked & (g.time[:, None, :] > g.time[:, :, None])).any()
    assert not (linked & ~g.valid[:, None, :]).any() and not (linked & ~g.valid[:, :, None]).any()


def test_cluster_items_links_nearest_clusters_and_skips_invalid():
    rng = np.random.default_rng(0)
    centres = np.array([[10.0, 0], [0, 10.0], [-10.0, -10.0]])
    matrix = np.concatenate([c + rng.normal(size=(8, 2)) for c in centres]).astype(np.float32)

    class Feat:  # the Features shape
        def __init__(self, m, v):
            self.matrix, self.valid = m, v

    valid = np.ones(24, dtype=bool)
    valid[5] = False
    out = cluster_items(Feat(matrix, valid), clusters=3, links=2, dim=4, seed=0)
    assert out.links.shape == (24, 2) and (out.links[5] == -1).all()
    first = out.links[:, 0]
    for blob in range(3):
        rows = [r for r in range(blob * 8, blob * 8 + 8) if valid[r]]
        assert len(set(first[rows])) == 1  # each blob is one cluster
    assert len(set(first[valid])) == 3
    assert (out.links[valid, 0] != out.links[valid, 1]).all()
    # second link is the nearest other centre: blobs 0 and 1 are closer to each other than to blob 2
    assert first[0] == out.links[8, 1] and first[8] == out.links[0, 1]
    assert out.init.shape == (3, 4)


def test_builder_uses_the_modalities_it_has():
    cfg = Config()
    cfg.model.name, cfg.model.dim, cfg.model.clusters, cfg.model.cluster_links = "mmsr", 8, 3, 2
    text = np.random.default_rng(0).normal(size=(12, 5)).astype(np.float32)
    model = build_model(cfg, 12, {"text": text})
    assert model.backbone.modalities == ["text"] and model.backbone.slot_ident.shape == (13, 3)
    assert model.causal
    assert build_model(cfg, 12, {}).backbone.slot_ident.shape == (13, 1)  # IDs only: item graph


def test_graph_layer_matches_hand_computation():
    torch.manual_seed(0)
    layer = GraphLayer(4, slot_type=[0, 1], dropout=0.0).eval()
    with torch.no_grad():
        layer.relation.normal_()
    x = torch.randn(1, 2, 2, 4)  # two positions x (item, cluster)
    slot_type = torch.tensor([0, 1])
    rel = torch.tensor([[[SELF, CROSS, NONE, NONE], [CROSS, SELF, NONE, NONE], [IN, NONE, SELF, CROSS], [NONE, OUT, CROSS, SELF]]], dtype=torch.int8)
    out = layer(x, slot_type, rel).view(4, 4)
    nodes, types = x.view(4, 4), slot_type.repeat(2)
    proj = lambda lin: torch.stack([nodes[n] @ lin.weight[types[n]] for n in range(4)])
    q, k, v = proj(layer.q), proj(layer.k), proj(layer.v)
    a = layer.relation  # rows: SELF, OUT, IN, BOTH
    # node 2 (item at time 2): homogeneous neighbours {2: self, 0: in}; cross neighbours {2: self, 3: cross}
    e = torch.stack([(v[2] * a[0]) @ v[2], (v[2] * a[2]) @ v[0]]) / 2.0
    homo = torch.softmax(torch.nn.functional.leaky_relu(e, 0.2), 0) @ torch.stack([v[2], v[0]])
    cross = torch.softmax(torch.stack([q[2] @ k[2], q[2] @ k[3]]) / 2.0, 0) @ torch.stack([v[2], v[3]])
    both = torch.stack([homo, cross])
    energy = torch.relu(layer.gate(both)) @ layer.gate_score
    fused = (torch.softmax(energy, 0)[:, None] * both).sum(0)
    torch.testing.assert_close(out[2], layer.norm(nodes[2] + fused), atol=1e-5, rtol=1e-5)


def test_interest_readout_matches_eq6_by_hand():
    torch.manual_seed(0)
    readout = InterestReadout(3, window=2)
    h = torch.randn(1, 4, 3)
    mask = torch.tensor([[False, True, True, True]])
    out = readout(h, mask)
    real = h[0, 1:]
    for t in range(3):
        long = real[: t + 1].mean(0)
        recent = real[max(0, t - 1) : t + 1].flip(0)
        energy = torch.sigmoid(readout.w1(recent) + readout.w2(long)) @ readout.q
        short = torch.softmax(energy, 0) @ recent
        torch.testing.assert_close(out[0, t + 1], readout.w3(torch.cat([long, short])), atol=1e-6, rtol=1e-5)


def test_mmsr_rejects_links_of_the_wrong_shape():
    with pytest.raises(ValueError, match="cluster links"):
        MMSR(ItemRepresentation(5, 8), links={"text": np.zeros((4, 2), dtype=np.int64)})
