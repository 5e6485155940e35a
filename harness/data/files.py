"""File helpers: hashing, checksum checks, atomic writes, and line reading with line numbers."""

from __future__ import annotations

import gzip
import hashlib
import io
from collections.abc import Iterator
from pathlib import Path

from harness.data.errors import ChecksumError

_DIGESTS: dict[tuple[str, int, int], str] = {}  # (path, size, mtime_ns) -> sha256, per process


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    """sha256 of a file, memoised per process on (path, size, mtime)."""
    path = Path(path)
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    if key not in _DIGESTS:
        h = hashlib.sha256()
        with open(path, "rb") as f:
            while block := f.read(chunk):
                h.update(block)
        _DIGESTS[key] = h.hexdigest()
    return _DIGESTS[key]


def verify_sha256(path: str | Path, expected: str | None) -> str:
    """Return the file's sha256; raise ``ChecksumError`` when ``expected`` is given and differs."""
    actual = sha256_file(path)
    if expected is not None and actual != expected.lower():
        raise ChecksumError(path, expected, actual)
    return actual


def open_text(path: str | Path) -> io.TextIOBase:
    """Open a text file, transparently gunzipping ``*.gz``; UTF-8 with a Latin-1 fallback."""
    path = Path(path)
    data = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:  # GroupLens originals are Latin-1
        text = data.decode("latin-1")
    return io.StringIO(text)


def numbered_lines(path: str | Path) -> Iterator[tuple[int, str]]:
    """(1-based line number, line without newline) for each non-blank line."""
    with open_text(path) as f:
        for number, line in enumerate(f, start=1):
            line = line.rstrip("\r\n")
            if line.strip():
                yield number, line


def stream_lines(path: str | Path) -> Iterator[tuple[int, str]]:
    """Like ``numbered_lines`` but streaming (for multi-GB metadata files); UTF-8 only."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8", errors="replace") as f:
        for number, line in enumerate(f, start=1):
            if line.strip():
                yield number, line.rstrip("\r\n")
