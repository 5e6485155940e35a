"""The one atomic-write helper: write to a temporary file beside the target, fsync, rename over it.

``os.replace`` is atomic on POSIX, so a crash leaves the old file (or none), never a half-written one.
Temporary names are ``.<name>.<random><suffix>`` in the target's folder: hidden, unique across
processes and hosts (``mkstemp`` creates them exclusively), and found again by their suffix when a
killed writer leaves one behind.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def atomic_path(dest: str | Path, suffix: str = ".tmp", mode: int = 0o644) -> Iterator[Path]:
    """Yield a temporary path beside ``dest``; when the block succeeds, fsync it, give it ``mode`` and
    rename it onto ``dest``; whatever happens, no temporary file is left behind."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=suffix, dir=dest.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)


def write_text(dest: str | Path, text: str) -> Path:
    """Atomically write ``text`` (UTF-8) to ``dest``."""
    with atomic_path(dest) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(dest)
