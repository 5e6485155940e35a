"""Device check of every backbone x item mode: forward/backward under bf16 autocast, step time.

``python benchmarks/gpu_check_models.py [--device cuda] [--items 3416] [--batch 256] [--len 50]``
prints one JSON line per (backbone, mode): finite loss and gradients, the largest difference
between the fp32 and the bf16-autocast hidden states (eval mode), and the median time of a
training step (forward, full cross-entropy at every position, backward, Adam). Random weights
and random sequences: timings do not depend on the values. Not a test; a benchmark to run on a
GPU machine (the CPU works too, slowly).
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

from harness.config import Config
from harness.models import MODES, build_model, list_backbones


def _step_time(model, seq: torch.Tensor, targets: torch.Tensor, amp: bool, repeats: int) -> tuple[float, float]:
    """Median seconds per training step and the last loss."""
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    times, loss = [], torch.zeros(())
    for _ in range(repeats + 1):
        if seq.is_cuda:
            torch.cuda.synchronize()
        start = time.perf_counter()
        with torch.autocast(seq.device.type, dtype=torch.bfloat16, enabled=amp):
            hidden = model(seq)
            logits = model.scores(hidden[seq > 0])
        loss = torch.nn.functional.cross_entropy(logits.float(), targets[seq > 0])
        opt.zero_grad()
        loss.backward()
        opt.step()
        if seq.is_cuda:
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return float(np.median(times[1:])), float(loss.detach())


def check(name: str, mode: str, args: argparse.Namespace) -> dict:
    """One backbone x mode on ``args.device``."""
    device = torch.device(args.device)
    cfg = Config()
    cfg.model.name, cfg.model.items, cfg.features.text_encoder = name, mode, "random"
    cfg.dataset.max_len = args.len
    rng = np.random.default_rng(0)
    features = {"text": rng.normal(size=(args.items, args.feature_dim)).astype(np.float32)}
    torch.manual_seed(0)
    model = build_model(cfg, args.items, features).to(device)
    g = torch.Generator().manual_seed(1)
    seq = torch.randint(1, args.items + 1, (args.batch, args.len), generator=g)
    seq[: args.batch // 2, : args.len // 3] = 0  # half the rows left padded
    targets = torch.randint(0, args.items, seq.shape, generator=g)
    seq, targets = seq.to(device), targets.to(device)
    model.eval()
    with torch.no_grad():
        full = model(seq)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            half = model(seq).float()
    mask = seq > 0
    model.train()
    seconds, loss = _step_time(model, seq, targets, device.type == "cuda", args.repeats)
    grads_ok = all(p.grad is None or bool(torch.isfinite(p.grad).all()) for p in model.parameters())
    return {
        "what": "models.train_step", "backbone": name, "items_mode": mode, "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "batch": args.batch, "len": args.len, "num_items": args.items, "dim": cfg.model.dim,
        "step_s": round(seconds, 5), "loss": round(loss, 4), "loss_finite": bool(np.isfinite(loss)), "grads_finite": grads_ok,
        "bf16_max_abs_diff": round(float((full - half)[mask].abs().max()), 4), "hidden_std": round(float(full[mask].std()), 4),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--items", type=int, default=3416)
    parser.add_argument("--feature-dim", type=int, default=384)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--len", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--backbones", nargs="*", default=list_backbones())
    parser.add_argument("--modes", nargs="*", default=list(MODES))
    args = parser.parse_args(argv)
    for name in args.backbones:
        for mode in args.modes:
            try:
                row = check(name, mode, args)
            except Exception as err:  # noqa: BLE001  (report and go on: one broken cell must not hide the others)
                row = {"what": "models.train_step", "backbone": name, "items_mode": mode, "error": repr(err)}
            print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
