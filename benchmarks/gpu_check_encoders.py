"""GPU check of the padding-free path: ``python benchmarks/gpu_check_encoders.py [--out FILE]`` (needs CUDA).

1. tiny-llama / tiny-glm: packed (varlen FlashAttention in bf16, per-text SDPA in fp32) equals padded.
2. llama-7b architecture, random bf16 weights: tokens/s of the length-sorted, token-budget padded
   SDPA loop (PERFORMANCE.md's reference) vs the packed varlen path over the same texts, and
   agreement of their features. Prints JSON lines (with the card's name).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import encoders as E
from encoders import packing
from encoders.base import compile_blocks
from encoders.text_preprocess import TextPreprocessor
from harness.encoding.token_batches import token_budget_groups


def synthetic_texts(n: int, seed: int = 0, median: int = 48) -> list[str]:
    """Texts whose token counts are lognormal around ``median`` (clipped 4..512), one word = one token."""
    rng = np.random.default_rng(seed)
    lens = np.clip(rng.lognormal(np.log(median), 0.6, n).astype(int), 4, 510)
    vocab = [w for w in E.create_encoder("tiny-bert").preprocessor.tokenizer.get_vocab() if w.isalpha() and len(w) > 2]
    return [" ".join(rng.choice(vocab, k)) for k in lens]


def budget_batches(lengths: list[int], budget: int, padded: bool) -> list[list[int]]:
    """Length-sorted groups whose padded (the encode job's own batches) or packed token count stays within ``budget``."""
    if padded:
        return token_budget_groups(lengths, budget)
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    groups: list[list[int]] = []
    for i in order:
        if groups and sum(lengths[j] for j in groups[-1]) + lengths[i] <= budget:
            groups[-1].append(i)
        else:
            groups.append([i])
    return groups


def run(encoder: E.Encoder, batches: list[dict]) -> tuple[float, list[torch.Tensor]]:
    encoder.encode(batches[0])  # warm-up
    torch.cuda.synchronize()
    start = time.perf_counter()
    outs = [encoder.encode(b) for b in batches]
    torch.cuda.synchronize()
    return time.perf_counter() - start, outs


def throughput(encoder: E.Encoder, texts: list[str], budget: int, packed: bool) -> tuple[dict, torch.Tensor]:
    pre = TextPreprocessor(encoder.preprocessor.tokenizer, encoder.info.max_tokens, packed=packed)
    lengths = pre.lengths(texts)
    groups = budget_batches(lengths, budget, padded=not packed)
    batches = [pre([texts[i] for i in g]) for g in groups]
    encoder.module.set_attn_implementation(packing.IMPLEMENTATION if packed else "sdpa")
    seconds, outs = run(encoder, batches)
    feats = torch.zeros(len(texts), encoder.info.dim)
    for g, o in zip(groups, outs):
        feats[g] = o
    tokens = sum(lengths)
    row = {"what": f"{encoder.info.name} {'packed varlen' if packed else 'padded sdpa, length-sorted'}",
           "texts": len(texts), "tokens": tokens, "budget": budget, "batches": len(batches),
           "seconds": round(seconds, 3), "items_per_s": round(len(texts) / seconds, 1), "tokens_per_s": round(tokens / seconds)}
    return row, feats


def tiny_agreement(name: str, dtype: torch.dtype) -> dict:
    texts = synthetic_texts(64, seed=1, median=20)
    enc = E.create_encoder(name, device="cuda", dtype=dtype, packing=True)
    packed = enc.encode(enc.preprocess(texts))
    ref_pre = TextPreprocessor(enc.preprocessor.tokenizer, enc.info.max_tokens, packed=False)
    enc.module.set_attn_implementation("sdpa")
    padded = enc.encode(ref_pre(texts))
    cos = torch.nn.functional.cosine_similarity(packed, padded).min().item()
    return {"what": f"{name} packed vs padded", "dtype": str(dtype), "kernel": "varlen" if packing.varlen_available(
        torch.device("cuda"), dtype) else "per-text sdpa", "min_cosine": round(cos, 6),
        "max_abs": float((packed - padded).abs().max())}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--out", default=None)
    p.add_argument("--texts", type=int, default=4000)
    p.add_argument("--budget", type=int, default=16384)
    p.add_argument("--packed-budgets", type=int, nargs="*", default=[32768, 65536])
    p.add_argument("--encoder", default="llama-7b")
    p.add_argument("--skip-tiny", action="store_true")
    p.add_argument("--compile", action="store_true", help="also time the packed path with compiled decoder layers")
    args = p.parse_args(argv)
    card = torch.cuda.get_device_name()
    rows = [] if args.skip_tiny else [tiny_agreement(n, d) for n in ("tiny-llama", "tiny-glm") for d in (torch.float32, torch.bfloat16)]
    start = time.perf_counter()
    enc = E.create_encoder(args.encoder, device="cuda", dtype="bfloat16", packing=True, random_weights=True)
    rows.append({"what": f"{args.encoder} random init on GPU", "seconds": round(time.perf_counter() - start, 1)})
    texts = synthetic_texts(args.texts)
    ref, ref_feats = throughput(enc, texts, args.budget, packed=False)
    ours, our_feats = throughput(enc, texts, args.budget, packed=True)
    ours["ratio_vs_padded"] = round(ours["tokens_per_s"] / ref["tokens_per_s"], 3)
    ours["min_cosine_vs_padded"] = round(torch.nn.functional.cosine_similarity(our_feats, ref_feats).min().item(), 5)
    rows += [ref, ours]
    for budget in args.packed_budgets:
        row, _ = throughput(enc, texts, budget, packed=True)
        rows.append({**row, "ratio_vs_padded": round(row["tokens_per_s"] / ref["tokens_per_s"], 3)})
    if args.compile:
        start = time.perf_counter()
        compile_blocks(enc.module)  # what create_encoder(..., compile=True) does
        throughput(enc, texts, args.packed_budgets[0], packed=True)  # compile + warm every shape
        row, feats = throughput(enc, texts, args.packed_budgets[0], packed=True)
        rows.append({**row, "what": row["what"] + " + compiled layers", "compile_and_warm_s": round(time.perf_counter() - start - row["seconds"], 1),
                     "ratio_vs_padded": round(row["tokens_per_s"] / ref["tokens_per_s"], 3),
                     "min_cosine_vs_padded": round(torch.nn.functional.cosine_similarity(feats, ref_feats).min().item(), 5)})
    with open(args.out, "w") if args.out else sys.stdout as fh:
        for row in rows:
            line = json.dumps({**row, "machine": card})
            print(line, file=fh, flush=True)
            if args.out:
                print(line, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
