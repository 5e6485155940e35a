"""Rank 0's progress for the whole job: its own items plus the chunks other ranks (any node) have
finished, read from their shard files on the shared cache (no collective while encoding). A bar on a
terminal; on a log file (Slurm) a plain line every ``LOG_EVERY_S`` seconds, never carriage returns."""

from __future__ import annotations

import sys
import time

from tqdm import tqdm

from harness.encoding.shards import finished_chunks

LOG_EVERY_S = 30.0  # seconds between progress lines when stderr is not a terminal
SCAN_EVERY_S = 1.0  # seconds between listings of the shards folder


def _eta(seconds: float) -> str:
    s = int(seconds)
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


class Progress:
    """``update(n)`` after each of rank 0's batches; other ranks' finished chunks are added as their shards appear."""

    def __init__(self, shard_dir, chunk_sizes: dict[int, int], mine: set[int], world: int, enabled: bool):
        self.shard_dir, self.enabled = shard_dir, enabled
        self.others = {c: n for c, n in chunk_sizes.items() if c not in mine}  # pending chunks of the other ranks
        self.total, self.own, self.done_others = sum(chunk_sizes.values()), 0, 0
        self.start = self.last_scan = self.last_line = time.monotonic()
        self.tty = enabled and sys.stderr.isatty()
        self.bar = tqdm(total=self.total, unit="item", desc=f"encode ({world} rank(s))", disable=not self.tty)

    def update(self, n: int) -> None:
        if not self.enabled:
            return
        self.own += n
        now = time.monotonic()
        if self.others and now - self.last_scan >= SCAN_EVERY_S:
            self._scan(now)
        if self.tty:
            self.bar.update(self.own + self.done_others - self.bar.n)
        elif now - self.last_line >= LOG_EVERY_S:
            self.last_line = now
            self._line(now)

    def _scan(self, now: float) -> None:
        self.last_scan = now
        done = finished_chunks(self.shard_dir)
        self.done_others = sum(size for c, size in self.others.items() if c in done)

    def _line(self, now: float) -> None:
        done, elapsed = self.own + self.done_others, now - self.start
        rate = done / elapsed if elapsed > 0 else 0.0
        eta = _eta((self.total - done) / rate) if rate > 0 else "?"
        print(f"encode: {done:,}/{self.total:,} items ({100 * done / max(1, self.total):.0f}%, all ranks), "
              f"{rate:,.1f} items/s, ETA {eta}", file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.enabled and self.others:
            self._scan(time.monotonic())
            self.update(0)
        if self.tty:
            self.bar.close()
        elif self.enabled:
            self._line(time.monotonic())
