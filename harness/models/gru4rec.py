"""GRU4Rec (Hidasi et al., ICLR 2016) in the form sequential-recommendation benchmarks use it.

Item vectors -> dropout -> a multi-layer GRU -> a linear layer back to the item space (as in
RecBole's GRU4Rec), trained with full cross-entropy by the loop. A GRU is causal by nature.
Padding is handled by moving each row's real items to the front (a stable sort of the mask),
running the GRU, and moving the states back: padding never enters the recurrence, so left,
right or any padding gives the same states at real positions.
"""

from __future__ import annotations

import torch
from torch import nn

from harness.models.items import ItemRepresentation
from harness.models.layers import Dropout, compaction, gather_rows


class GRU4Rec(nn.Module):
    """``forward(item_seq [B, L]) -> hidden [B, L, D]``; hidden[:, t] summarises items <= t.

    Args:
        items: the item representation (D = ``items.dim``).
        layers: GRU layers; ``hidden``: GRU width (default D); ``dropout``: on the input vectors.
    """

    causal = True

    def __init__(self, items: ItemRepresentation, layers: int = 1, hidden: int | None = None, dropout: float = 0.2):
        super().__init__()
        self.items = items
        hidden = hidden or items.dim
        self.drop = Dropout(dropout)
        self.gru = nn.GRU(items.dim, hidden, num_layers=layers, batch_first=True)
        self.out = nn.Linear(hidden, items.dim)

    def forward(self, item_seq: torch.Tensor) -> torch.Tensor:
        mask = item_seq > 0
        order, inverse = compaction(mask)
        x = self.drop(self.items.embed(item_seq.gather(1, order)))
        states, _ = self.gru(x)
        return self.out(gather_rows(states, inverse)) * mask.unsqueeze(-1).to(states.dtype)
