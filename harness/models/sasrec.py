"""SASRec (Kang & McAuley, ICDM 2018): a causal transformer over the item sequence.

Follows the original TensorFlow model: item vectors scaled by sqrt(D) plus learned positions,
dropout, padding zeroed; per block the *query* is layer-normed while keys/values are the block
input, the residual is added to the normed query, then a layer-normed position-wise FFN (ReLU)
with its own residual; padding zeroed after every block; a final layer norm. Attention is
``scaled_dot_product_attention`` with one boolean mask (causal and key padding together), so
every position is trained in one pass. Positions count from the first real item, so left and
right padding give the same hidden states at real positions.
"""

from __future__ import annotations

import torch
from torch import nn

from harness.models.items import ID_INIT_STD, ItemRepresentation
from harness.models.layers import Dropout, attention, positions


def attention_mask(mask: torch.Tensor) -> torch.Tensor:
    """``[B, 1, L, L]`` bool: query t may attend key s iff s <= t and s is real (or s == t).

    The diagonal is always allowed so padding queries have one key and never produce NaN.
    """
    length = mask.shape[1]
    causal = torch.ones(length, length, dtype=torch.bool, device=mask.device).tril()
    eye = torch.eye(length, dtype=torch.bool, device=mask.device)
    return ((causal & mask[:, None, :]) | eye).unsqueeze(1)


class SelfAttention(nn.Module):
    """Multi-head attention; queries come from the normed input, keys and values from the raw input."""

    def __init__(self, dim: int, heads: int, dropout: float):
        super().__init__()
        if dim % heads:
            raise ValueError(f"dim={dim} is not divisible by heads={heads}")
        self.heads = heads
        self.attn_drop = Dropout(dropout)
        self.q = nn.Linear(dim, dim)
        self.kv = nn.Linear(dim, 2 * dim)
        self.out = nn.Linear(dim, dim)

    def _split(self, x: torch.Tensor) -> torch.Tensor:
        b, length, d = x.shape
        return x.view(b, length, self.heads, d // self.heads).transpose(1, 2)

    def forward(self, query: torch.Tensor, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        k, v = self.kv(x).chunk(2, dim=-1)
        y = attention(self._split(self.q(query)), self._split(k), self._split(v), mask, self.attn_drop)
        return self.out(y.transpose(1, 2).flatten(2))


class FeedForward(nn.Module):
    """Position-wise FFN (the original's two 1x1 convolutions) with dropout."""

    def __init__(self, dim: int, dropout: float):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(dim, dim), nn.Linear(dim, dim)
        self.drop1, self.drop2 = Dropout(dropout), Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop2(self.fc2(self.drop1(torch.relu(self.fc1(x)))))


class Block(nn.Module):
    """One SASRec block: normed-query attention + residual, normed FFN + residual."""

    def __init__(self, dim: int, heads: int, dropout: float):
        super().__init__()
        self.norm_q, self.norm_ff = nn.LayerNorm(dim, eps=1e-8), nn.LayerNorm(dim, eps=1e-8)
        self.attn = SelfAttention(dim, heads, dropout)
        self.drop = Dropout(dropout)
        self.ff = FeedForward(dim, dropout)

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor) -> torch.Tensor:
        q = self.norm_q(x)
        x = q + self.drop(self.attn(q, x, attn_mask))
        y = self.norm_ff(x)
        return y + self.ff(y)


class SASRec(nn.Module):
    """``forward(item_seq [B, L]) -> hidden [B, L, D]``; hidden[:, t] summarises items <= t.

    Args:
        items: the item representation (owns every item vector; D = ``items.dim``).
        max_len: longest sequence (size of the position table).
        layers, heads, dropout: transformer depth, heads, dropout rate (embeddings, attention, FFN).
    """

    causal = True

    def __init__(self, items: ItemRepresentation, max_len: int = 50, layers: int = 2, heads: int = 2, dropout: float = 0.2):
        super().__init__()
        dim = items.dim
        self.items, self.max_len = items, max_len
        self.position = nn.Embedding(max_len + 1, dim, padding_idx=0)
        nn.init.normal_(self.position.weight[1:], std=ID_INIT_STD)  # item vectors, not positions, dominate at start
        self.drop = Dropout(dropout)
        self.blocks = nn.ModuleList(Block(dim, heads, dropout) for _ in range(layers))
        self.norm = nn.LayerNorm(dim, eps=1e-8)

    def forward(self, item_seq: torch.Tensor) -> torch.Tensor:
        mask = item_seq > 0
        pos = positions(mask)
        if int(pos.max()) > self.max_len:
            raise ValueError(f"sequence has {int(pos.max())} items; this SASRec was built for max_len={self.max_len}")
        keep = mask.unsqueeze(-1).to(self.position.weight.dtype)
        x = self.items.embed(item_seq) * self.items.dim**0.5 + self.position(pos)
        x = self.drop(x) * keep
        attn_mask = attention_mask(mask)
        for block in self.blocks:
            x = block(x, attn_mask) * keep
        return self.norm(x)
