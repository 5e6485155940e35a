"""Padding-free encoding for decoder-only text models (LLaMA, GLM).

Texts of a batch are concatenated into one row; ``position_ids`` restart at 0 for every text and
a variable-length causal attention keeps texts from seeing each other. On CUDA with bf16/fp16 the
attention is torch's FlashAttention varlen kernel (``torch.nn.attention.varlen.varlen_attn``);
elsewhere it falls back to causal SDPA per text, so the same path runs (and is tested) on CPU.
The padded path stays the reference: both agree to float tolerance.
"""

from __future__ import annotations

import inspect

import torch
from torch import nn
from transformers import AttentionInterface

from encoders.registry import LoadOptions

IMPLEMENTATION = "harness_varlen"

try:  # torch >= 2.9 ships a varlen FlashAttention entry point
    from torch.nn.attention.varlen import varlen_attn
except ImportError:  # pragma: no cover - older torch
    varlen_attn = None


_VARLEN_ARGS = set(inspect.signature(varlen_attn).parameters) if varlen_attn is not None else set()


def _fused(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, cu: torch.Tensor, max_len: int, scale: float | None) -> torch.Tensor:
    """torch's varlen FlashAttention, causal, across the keyword names torch versions use."""
    if "enable_gqa" in _VARLEN_ARGS:
        kw = {"enable_gqa": k.shape[1] != q.shape[1]}
    else:  # older torch: expand grouped key/value heads ourselves
        k, v = (t.repeat_interleave(q.shape[1] // t.shape[1], dim=1) for t in (k, v))
        kw = {}
    kw.update({"window_size": (-1, 0)} if "window_size" in _VARLEN_ARGS else {"is_causal": True})
    return varlen_attn(q, k, v, cu, cu, max_len, max_len, scale=scale, **kw)


def varlen_available(device: torch.device, dtype: torch.dtype) -> bool:
    """Whether the fused varlen kernel can run here (CUDA, half precision)."""
    return varlen_attn is not None and device.type == "cuda" and dtype in (torch.float16, torch.bfloat16)


def use_packing(supported: bool, options: LoadOptions) -> bool:
    """Explicit ``packing`` wins (and must be supported); by default pack only where the fused kernel runs."""
    if options.packing is None:
        return supported and varlen_available(options.device, options.dtype)
    if options.packing and not supported:
        raise ValueError("packing=True needs a decoder-only text model (llama / glm); this encoder has no packed path")
    return bool(options.packing)


def packed_inputs(ids: torch.Tensor, cu_seqlens: torch.Tensor) -> dict[str, torch.Tensor | int]:
    """Model kwargs for one packed row: ids [1, T], restarting position ids, and varlen offsets."""
    lens = (cu_seqlens[1:] - cu_seqlens[:-1]).long()
    starts = torch.repeat_interleave(cu_seqlens[:-1].long(), lens)
    positions = torch.arange(ids.shape[0], device=ids.device) - starts
    max_len = int(lens.max()) if len(lens) else 0
    return {
        "input_ids": ids.unsqueeze(0), "position_ids": positions.unsqueeze(0),
        "cu_seq_lens_q": cu_seqlens, "cu_seq_lens_k": cu_seqlens, "max_length_q": max_len, "max_length_k": max_len,
    }


def _per_text_sdpa(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, cu: torch.Tensor, scale: float | None) -> torch.Tensor:
    """Reference kernel: causal SDPA on each text's slice. q/k/v: [T, H, D] -> [T, H, D]."""
    out = torch.empty_like(q)
    groups = q.shape[1] // k.shape[1]
    for s, e in zip(cu[:-1].tolist(), cu[1:].tolist()):
        qs, ks, vs = (t[s:e].transpose(0, 1) for t in (q, k, v))
        ks, vs = ks.repeat_interleave(groups, 0), vs.repeat_interleave(groups, 0)
        out[s:e] = torch.nn.functional.scaled_dot_product_attention(qs, ks, vs, is_causal=True, scale=scale).transpose(0, 1)
    return out


def varlen_attention(module: nn.Module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                     attention_mask: torch.Tensor | None, scaling: float | None = None, dropout: float = 0.0,
                     cu_seq_lens_q: torch.Tensor | None = None, max_length_q: int | None = None, **kwargs):
    """transformers attention function for packed rows: [1, H, T, D] in, [1, T, H, D] out."""
    if cu_seq_lens_q is None:
        raise ValueError(f"attention {IMPLEMENTATION!r} needs cu_seq_lens_q (a packed batch from TextPreprocessor(packed=True))")
    q, k, v = (t[0].transpose(0, 1).contiguous() for t in (query, key, value))  # [T, H, D]
    cu = cu_seq_lens_q.to(torch.int32)
    if varlen_available(q.device, q.dtype):
        out = _fused(q, k, v, cu, max_length_q, scaling)
    else:
        out = _per_text_sdpa(q, k, v, cu, scaling)
    return out.unsqueeze(0), None


AttentionInterface.register(IMPLEMENTATION, varlen_attention)


def enable(model: nn.Module) -> None:
    """Switch a transformers model to the packed varlen attention."""
    model.set_attn_implementation(IMPLEMENTATION)
