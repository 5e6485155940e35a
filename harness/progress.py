"""Progress bars that stay readable in logs: a tqdm bar on a terminal; elsewhere (Slurm, sweep cell logs)
tqdm's status as a plain line at most every ``LOG_EVERY_S`` seconds, never carriage returns.

(The encode job reports all ranks' work itself: ``harness.encoding.progress``.)
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from typing import Any, TextIO

from tqdm import tqdm

LOG_EVERY_S = 30.0


class _Lines:
    """A file for tqdm that turns each status it writes into one line; clears and blank updates are dropped."""

    def __init__(self, out: TextIO):
        self.out = out

    def write(self, text: str) -> None:
        for part in text.replace("\r", "\n").split("\n"):
            if part.strip():
                self.out.write(part.rstrip() + "\n")

    def flush(self) -> None:
        self.out.flush()


def progress(iterable: Iterable | None = None, every_s: float | None = None, **kwargs: Any) -> tqdm:
    """``tqdm(iterable, **kwargs)`` on a terminal (stderr); off one, plain lines, at most one every ``every_s``
    (default ``LOG_EVERY_S``) seconds and none for a loop shorter than that (a 1 s epoch adds nothing to a log)."""
    if sys.stderr.isatty():
        return tqdm(iterable, **kwargs)
    every = LOG_EVERY_S if every_s is None else every_s
    kwargs = {k: v for k, v in kwargs.items() if k not in ("mininterval", "maxinterval", "dynamic_ncols", "delay")}
    return tqdm(iterable, file=_Lines(sys.stderr), mininterval=every, maxinterval=max(every, 1.0), delay=every,
                ascii=True, **kwargs)
