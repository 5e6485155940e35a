"""Small building blocks shared by the backbones."""

from __future__ import annotations

import torch
from torch import nn

_INT31 = 2**31


class Dropout(nn.Module):
    """Inverted dropout with a cheap mask on CPU.

    ``torch.nn.functional.dropout`` draws its mask with ``bernoulli_``, which is single-threaded
    and about 2x slower on CPU than drawing int32 words with ``random_`` and comparing them with
    ``(1 - p) * 2**31`` (same distribution up to 2**-31). On other devices F.dropout is used.
    """

    def __init__(self, p: float = 0.0):
        super().__init__()
        if not 0.0 <= p < 1.0:
            raise ValueError(f"dropout p must be in [0, 1), got {p}")
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        if x.device.type != "cpu":
            return nn.functional.dropout(x, self.p, True)
        keep = torch.empty(x.shape, dtype=torch.int32).random_() < int((1.0 - self.p) * _INT31)
        return x * keep.to(x.dtype).mul_(1.0 / (1.0 - self.p))

    def extra_repr(self) -> str:
        return f"p={self.p}"


def positions(mask: torch.Tensor) -> torch.Tensor:
    """1-based position of each real item counted from the sequence's first real item; 0 at padding.

    Counting from the first real item (not from column 0) makes left and right padding give the
    same positions, and position t depends only on items <= t (causal).
    """
    return torch.cumsum(mask.long(), dim=1) * mask.long()


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor, dropout: Dropout) -> torch.Tensor:
    """Masked scaled dot-product attention with dropout on the attention weights.

    Uses ``scaled_dot_product_attention`` except when attention dropout is active on CPU: there
    SDPA draws its mask with ``bernoulli_`` on the math path (about 2x slower per step than the
    explicit softmax with the cheap mask of ``Dropout``). ``mask`` is boolean (True = attend) and
    must leave at least one key per query.
    """
    active = dropout.training and dropout.p > 0
    if not active or q.device.type != "cpu":
        return nn.functional.scaled_dot_product_attention(q, k, v, mask, dropout.p if active else 0.0)
    scores = (q @ k.transpose(-1, -2)) * q.shape[-1] ** -0.5
    return dropout(torch.softmax(scores.masked_fill(~mask, float("-inf")), -1)) @ v


def compaction(mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(order, inverse)``: ``x.gather(order)`` puts real positions first (in order); ``inverse`` undoes it."""
    order = torch.sort((~mask).to(torch.int8), dim=1, stable=True).indices
    return order, torch.argsort(order, dim=1)


def gather_rows(x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """``x [B, L, D]`` rows reordered per batch row by ``index [B, L]``."""
    return x.gather(1, index.unsqueeze(-1).expand(-1, -1, x.shape[-1]))
