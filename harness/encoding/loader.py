"""The worker side of the encode job: raw inputs -> preprocessed batches inside DataLoader workers.

Tokenisation and image decoding happen here, off the main process's critical path. A bad item
(empty text, missing or corrupt image) never stops the job: it comes back as a recorded failure.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset

from harness.encoding.merge import NONFINITE
from harness.encoding.token_batches import Batch


def failure_reason(raw: Any, modality: str) -> str:
    """A short, human-readable reason why ``raw`` could not be encoded."""
    if modality == "text":
        return "empty text" if not (isinstance(raw, str) and raw.strip()) else "text could not be tokenised"
    if not raw:
        return "no image"
    if str(raw).startswith(("http://", "https://")):
        return f"image could not be fetched or decoded: {raw}"
    if not Path(raw).is_file():
        return f"image file not found: {raw}"
    try:
        from PIL import Image

        with Image.open(raw) as img:
            img.load()
    except Exception as exc:  # noqa: BLE001 - any decoder error is the reason we report
        return f"corrupt image ({type(exc).__name__}: {exc}): {raw}"
    return f"image could not be preprocessed: {raw}"


class BatchSource(Dataset):
    """Batch k -> (batch, preprocessed inputs or None, positions kept, failures)."""

    def __init__(self, raws: list, batches: list[Batch], preprocess: Callable[[list], dict], modality: str):
        self.raws, self.batches, self.preprocess, self.modality = raws, batches, preprocess, modality

    def __len__(self) -> int:
        return len(self.batches)

    def __getitem__(self, k: int) -> tuple[Batch, dict | None, list[int], list[dict]]:
        batch = self.batches[k]
        raws = [self.raws[i] for i in batch.items]
        try:
            inputs, keep = self.preprocess(raws), list(range(len(raws)))
        except Exception:  # noqa: BLE001 - an encoder that raises on a bad item: isolate it, keep the rest
            inputs, keep = self._isolate(raws)
        valid = inputs["valid"].tolist() if inputs is not None and "valid" in inputs else [True] * len(keep)
        bad = set(range(len(raws))) - {p for p, ok in zip(keep, valid) if ok}
        failures = [{"item": batch.items[p], "reason": failure_reason(raws[p], self.modality)} for p in sorted(bad)]
        return batch, inputs, keep, failures

    def _isolate(self, raws: list) -> tuple[dict | None, list[int]]:
        keep = []
        for p, raw in enumerate(raws):
            try:
                self.preprocess([raw])
                keep.append(p)
            except Exception:  # noqa: BLE001, S112 - this item is the bad one; its reason is recorded later
                continue
        return (self.preprocess([raws[p] for p in keep]) if keep else None), keep


def batch_loader(source: BatchSource, num_workers: int, pin_memory: bool) -> DataLoader:
    """In-order loader over pre-formed batches (``batch_size=None``), prefetching in workers."""
    extra = {"prefetch_factor": 4, "persistent_workers": False} if num_workers > 0 else {}
    return DataLoader(source, batch_size=None, shuffle=False, num_workers=num_workers,
                      pin_memory=pin_memory, collate_fn=_identity, **extra)


def _identity(x: Any) -> Any:
    return x


def encode_inputs(encode: Callable[[dict], torch.Tensor], inputs: dict | None, n: int, keep: list[int], dim: int) -> torch.Tensor:
    """Run ``encode`` on the kept rows and scatter them into an [n, dim] block (zeros elsewhere)."""
    out = torch.zeros(n, dim, dtype=torch.float32)
    if inputs is not None:  # always run, even for an all-invalid batch: ZeRO-3 ranks must stay in step
        out[keep] = encode(inputs).float()
    return out


def drop_nonfinite(items: tuple[int, ...], feats: torch.Tensor, failures: list[dict]) -> list[dict]:
    """Rows the encoder returned with NaN or inf are per-item failures like any bad input: zeroed, not valid,
    recorded with their reason (one such row would otherwise turn a whole normalised table into NaN)."""
    bad = ~torch.isfinite(feats).all(dim=1)
    if not bool(bad.any()):
        return failures
    feats[bad] = 0
    known = {f["item"] for f in failures}
    new = [{"item": items[p], "reason": NONFINITE} for p in bad.nonzero().flatten().tolist() if items[p] not in known]
    return sorted(failures + new, key=lambda f: f["item"])
