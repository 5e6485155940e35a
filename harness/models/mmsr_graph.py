"""The MMSR heterogeneous sequence graph, built causally for every position of a batch at once.

Nodes are *timed*: each real position t contributes one item node and, per modality, one node
for each cluster its item links to (``G = 1 + sum_m k_m`` slots per position, node ``t*G + s``).
A node carries an identity (the item, or the cluster) and the time (1-based rank of its real
position). Node i "is" its identity in the graph of the prefix ending at its time t_i; it sees
only the *latest* instance (time <= t_i) of every other identity, so each identity is one node
per prefix graph, as in MMSR's per-sequence graph over unique items and clusters.

Relations of a visible pair (i, j), all evaluated on the prefix up to t_i:
- SELF: i == j.
- OUT / IN / BOTH (homogeneous, same node type): a transition identity(i) -> identity(j) exists
  (OUT), identity(j) -> identity(i) exists (IN), or both (BOTH). Transitions are consecutive real
  items (item -> item) and, per modality, every cluster of item t-1 -> every cluster of item t;
  transitions between equal identities are not edges.
- CROSS (heterogeneous): the two identities co-occur at some time <= t_i (an item and its
  clusters; an item's clusters of two different modalities).
Everything is O(B * T^2) tensor work: pair events are reduced to per-identity-class first times
with one ``scatter_reduce`` and read back with one ``gather``; no Python loop over the batch.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from harness.models.layers import positions

NONE, SELF, OUT, IN, BOTH, CROSS = range(6)
RELATIONS = ("none", "self", "out", "in", "both", "cross")
_NEVER = torch.iinfo(torch.int32).max


@dataclass
class SequenceGraph:
    """Nodes ``[B, T]`` (T = L * G, node ``t*G + s``) and their pairwise relations ``[B, T, T]`` (int8)."""

    ident: torch.Tensor  # int64 identity (item id, or num_items + cluster row); -1 for no node
    time: torch.Tensor  # int64 1-based rank of the node's real position; 0 for no node
    valid: torch.Tensor  # bool
    relation: torch.Tensor  # int8, NONE..CROSS; row i = what node i attends to


def node_identities(item_seq: torch.Tensor, slot_ident: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(ident, time, valid)`` of every node from ``slot_ident [N+1, G]`` (row 0 and missing links = -1)."""
    b, length = item_seq.shape
    g = slot_ident.shape[1]
    ident = slot_ident[item_seq].reshape(b, length * g)
    time = positions(item_seq > 0).repeat_interleave(g, dim=1)
    valid = (ident >= 0) & (time > 0)
    return torch.where(valid, ident, -1), torch.where(valid, time, 0), valid


def _first_event_time(events: torch.Tensor, time_b: torch.Tensor, pair_class: torch.Tensor) -> torch.Tensor:
    """``F[c, c']`` (flattened): earliest time of an event a -> b with classes (c, c') (else NEVER)."""
    value = torch.where(events, time_b[:, None, :], _NEVER).flatten(1)
    first = torch.full_like(value, _NEVER)
    return first.scatter_reduce_(1, pair_class, value, "amin")


def build_graph(item_seq: torch.Tensor, slot_ident: torch.Tensor, slot_type: torch.Tensor) -> SequenceGraph:
    """The causal MMSR graph of a batch of (shifted, 0-padded) item sequences.

    Args:
        item_seq: ``[B, L]`` item ids (0 = padding; real items in order, any padding side).
        slot_ident: ``[N+1, G]`` identity of each node slot per item (column 0 = the item itself).
        slot_type: ``[G]`` node type per slot (0 = item, 1 + m = modality m).
    """
    ident, time, valid = node_identities(item_seq, slot_ident)
    b, t = ident.shape
    time32 = time.to(torch.int32)
    pair = valid[:, :, None] & valid[:, None, :]
    same = (ident[:, :, None] == ident[:, None, :]) & pair
    cls = torch.where(valid, same.to(torch.int8).argmax(-1), torch.arange(t, device=ident.device))  # first node of the identity
    t_i, t_j = time32[:, :, None], time32[:, None, :]
    next_time = torch.where(same & (t_j > t_i), t_j, _NEVER).amin(-1)  # next instance of node j's identity
    visible = pair & (t_j <= t_i) & (t_i < next_time[:, None, :])
    types = slot_type.repeat(item_seq.shape[1])
    same_type = types[:, None] == types[None, :]
    pair_class = (cls[:, :, None] * t + cls[:, None, :]).flatten(1)  # (class(i), class(j)) as one index
    lookup = lambda table: table.gather(1, pair_class).view(b, t, t)
    transition = lookup(_first_event_time(pair & same_type & ~same & (t_j == t_i + 1), time32, pair_class))
    out = transition <= t_i  # identity(i) -> identity(j) happened by t_i
    inn = transition.transpose(1, 2) <= t_i  # identity(j) -> identity(i) happened by t_i
    cross = lookup(_first_event_time(pair & ~same_type & (t_j == t_i), time32, pair_class)) <= t_i
    code = lambda value: torch.tensor(value, dtype=torch.int8, device=ident.device)
    relation = torch.where(out, torch.where(inn, code(BOTH), code(OUT)), torch.where(inn, code(IN), code(NONE)))
    relation = torch.where(cross, code(CROSS), relation)
    relation.diagonal(dim1=1, dim2=2).fill_(SELF)
    return SequenceGraph(ident, time, valid, torch.where(visible, relation, code(NONE)))
