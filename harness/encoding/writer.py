"""Collects the encoded batches of each chunk and writes the chunk's shard as soon as it is complete."""

from __future__ import annotations

import time
from pathlib import Path

import torch

from harness.encoding.shards import Shard, write_shard
from harness.encoding.token_batches import Batch


class ChunkWriter:
    """``add`` each encoded batch; the last batch of a chunk triggers its atomic shard write."""

    def __init__(self, shard_dir: Path, rank: int, batches: list[Batch]):
        self.shard_dir, self.rank = shard_dir, rank
        self.expected: dict[int, int] = {}
        for b in batches:
            if not b.dummy:
                self.expected[b.chunk] = self.expected.get(b.chunk, 0) + 1
        self.parts: dict[int, list] = {}
        self.started: dict[int, float] = {}
        self.totals = {"items": 0, "tokens": 0, "padded_tokens": 0, "batches": 0, "chunks": 0}

    def add(self, batch: Batch, feats: torch.Tensor, failures: list[dict]) -> None:
        """Keep one encoded batch ([len(items), dim] float32, zeros for failed items)."""
        self.started.setdefault(batch.chunk, time.perf_counter())
        self.parts.setdefault(batch.chunk, []).append((batch, feats, failures))
        for key, value in (("items", len(batch.items)), ("tokens", batch.tokens),
                           ("padded_tokens", batch.padded), ("batches", 1)):
            self.totals[key] += value
        if len(self.parts[batch.chunk]) == self.expected[batch.chunk]:
            self._write(batch.chunk)

    def _write(self, chunk: int) -> None:
        parts = self.parts.pop(chunk)
        index = torch.tensor([i for b, _, _ in parts for i in b.items], dtype=torch.int64)
        order = torch.argsort(index)
        feats = torch.cat([f for _, f, _ in parts])[order]
        failures = sorted((f for _, _, fs in parts for f in fs), key=lambda f: f["item"])
        bad = {f["item"] for f in failures}
        valid = torch.tensor([int(i) not in bad for i in index[order]], dtype=torch.bool)
        stats = {"seconds": time.perf_counter() - self.started.pop(chunk), "batches": len(parts),
                 "tokens": sum(b.tokens for b, _, _ in parts), "rank": self.rank}
        write_shard(self.shard_dir, self.rank, Shard(chunk, index[order].numpy(), feats.numpy(), valid.numpy(), failures, stats))
        self.totals["chunks"] += 1
