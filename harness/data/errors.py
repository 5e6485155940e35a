"""Errors of the data layer: each names the file and line, or the valid choices."""

from __future__ import annotations

import difflib
from pathlib import Path


class DataError(Exception):
    """Base class of every data-layer error."""


class UnknownDatasetError(DataError, KeyError):
    """A dataset name that is not registered; the message lists valid names, closest first."""

    def __init__(self, name: str, valid: list[str]):
        close = difflib.get_close_matches(name, valid, n=len(valid), cutoff=0.0)
        ordered = close + [v for v in valid if v not in close]
        self.name, self.valid = name, ordered
        super().__init__(f"unknown dataset {name!r}; valid names (closest first): {', '.join(ordered)}")

    def __str__(self) -> str:  # KeyError would otherwise print the repr of the message
        return self.args[0]


class DataFormatError(DataError, ValueError):
    """A malformed line in a dataset file."""

    def __init__(self, path: str | Path, line: int | None, problem: str):
        self.path, self.line = Path(path), line
        where = f"{path}, line {line}" if line is not None else str(path)
        super().__init__(f"{where}: {problem}")


class MissingDataError(DataError, FileNotFoundError):
    """The files a dataset needs are not in its folder."""


class ChecksumError(DataError, ValueError):
    """A file whose sha256 differs from the one registered for it."""

    def __init__(self, path: str | Path, expected: str, actual: str, algo: str = "sha256"):
        self.path, self.expected, self.actual = Path(path), expected, actual
        super().__init__(
            f"{path}: {algo} checksum mismatch (expected {expected}, got {actual}); "
            "the file is corrupt, partial or a different version: fetch it again"
        )
