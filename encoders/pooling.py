"""Pooling token states into one vector per text, for padded [N, L, D] and packed [T, D] layouts."""

from __future__ import annotations

import torch

POOLINGS = ("mean", "cls", "last")


def _check(how: str) -> None:
    if how not in POOLINGS:
        raise ValueError(f"pooling {how!r} is not one of {', '.join(POOLINGS)}")


def pool_padded(hidden: torch.Tensor, mask: torch.Tensor, how: str) -> torch.Tensor:
    """Right-padded states [N, L, D] with a 0/1 mask [N, L] -> [N, D] (float32 accumulation)."""
    _check(how)
    if how == "cls":
        return hidden[:, 0]
    if how == "last":
        last = mask.sum(1).long().clamp(min=1) - 1
        return hidden[torch.arange(hidden.shape[0], device=hidden.device), last]
    m = mask.to(torch.float32).unsqueeze(-1)
    return (hidden.float() * m).sum(1) / m.sum(1).clamp(min=1e-9)


def pool_packed(hidden: torch.Tensor, cu_seqlens: torch.Tensor, how: str) -> torch.Tensor:
    """Packed states [T, D] with segment offsets [N+1] -> [N, D]."""
    _check(how)
    starts, ends = cu_seqlens[:-1], cu_seqlens[1:]
    if how == "cls":
        return hidden[starts]
    if how == "last":
        return hidden[ends - 1]
    lens = (ends - starts).to(hidden.device)
    seg = torch.repeat_interleave(torch.arange(len(lens), device=hidden.device), lens)
    sums = torch.zeros(len(lens), hidden.shape[-1], device=hidden.device, dtype=torch.float32)
    sums.index_add_(0, seg, hidden.float())
    return sums / lens.clamp(min=1).unsqueeze(1).float()
