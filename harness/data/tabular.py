"""Column tables from RecBole atomic files, CSV and Parquet, each row remembering its line for errors.

RecBole atomic files (https://recbole.io/docs/user_guide/data/atomic_files.html): tab-separated, a
header of ``name:type`` fields, type one of token, token_seq, float, float_seq.
"""

from __future__ import annotations

import csv
import difflib
from dataclasses import dataclass
from pathlib import Path

import pyarrow.parquet as pq

from harness.data.errors import DataFormatError
from harness.data.files import numbered_lines, open_text

ATOMIC_TYPES = ("token", "token_seq", "float", "float_seq")


@dataclass
class Table:
    """Columns of strings (floats for RecBole float fields); ``lines[r]`` is row r's line (Parquet: row)."""

    path: Path
    columns: dict[str, list]
    lines: list[int]
    unit: str = "line"

    def __len__(self) -> int:
        return len(self.lines)

    def column(self, name: str, role: str) -> list:
        """The column ``name``; a missing one is an error naming the file and the closest column."""
        if name not in self.columns:
            close = difflib.get_close_matches(name, list(self.columns), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise DataFormatError(
                self.path, 1, f"no {role} column {name!r}{hint}; columns: {', '.join(self.columns)}"
            )
        return self.columns[name]

    def fail(self, row: int, problem: str) -> DataFormatError:
        line = self.lines[row]
        return DataFormatError(self.path, line, problem) if self.unit == "line" else DataFormatError(
            self.path, None, f"row {line}: {problem}"
        )


def _atomic_header(path: Path, fields: list[str]) -> list[tuple[str, str]]:
    out = []
    for field in fields:
        name, _, kind = field.partition(":")
        if not name or kind not in ATOMIC_TYPES:
            raise DataFormatError(
                path, 1, f"header field {field!r} is not 'name:type' with type one of {', '.join(ATOMIC_TYPES)}"
            )
        out.append((name, kind))
    return out


def read_atomic(path: Path) -> Table:
    """A RecBole atomic file (``.inter``, ``.item``, ...): typed header, tab-separated rows."""
    rows = numbered_lines(path)
    first = next(rows, None)
    if first is None:
        raise DataFormatError(path, None, "empty file: expected a 'name:type' header line")
    header = _atomic_header(path, first[1].split("\t"))
    columns: dict[str, list] = {name: [] for name, _ in header}
    lines = []
    for number, line in rows:
        fields = line.split("\t")
        if len(fields) != len(header):
            raise DataFormatError(path, number, f"expected {len(header)} tab-separated fields, got {len(fields)}")
        for (name, kind), value in zip(header, fields):
            if kind == "float":
                try:
                    value = float(value) if value else float("nan")
                except ValueError:
                    raise DataFormatError(path, number, f"field {name!r} is float, got {value!r}") from None
            columns[name].append(value)
        lines.append(number)
    return Table(path, columns, lines)


def read_csv(path: Path, separator: str = ",") -> Table:
    """A CSV (or other delimited) file with a header row; quoted fields may hold the separator."""
    reader = csv.reader(open_text(path), delimiter=separator)
    try:
        header = next(reader)
    except StopIteration:
        raise DataFormatError(path, None, "empty file: expected a header row") from None
    columns: dict[str, list] = {name.strip(): [] for name in header}
    lines = []
    for row in reader:
        if not any(f.strip() for f in row):
            continue
        if len(row) != len(header):
            raise DataFormatError(path, reader.line_num, f"expected {len(header)} fields, got {len(row)}: {row!r}")
        for name, value in zip(columns, row):
            columns[name].append(value)
        lines.append(reader.line_num)
    return Table(path, columns, lines)


def read_parquet(path: Path) -> Table:
    """A Parquet file; values are converted to strings except floats (row numbers stand in for lines)."""
    try:
        data = pq.read_table(path).to_pydict()
    except Exception as e:  # noqa: BLE001 - pyarrow raises several types for a bad file
        raise DataFormatError(path, None, f"not a readable Parquet file: {e}") from None
    columns = {k: [v if isinstance(v, float) else ("" if v is None else str(v)) for v in vs] for k, vs in data.items()}
    n = len(next(iter(columns.values()), []))
    return Table(path, columns, list(range(1, n + 1)), unit="row")


def read_table(path: Path, form: str, separator: str = ",") -> Table:
    """Dispatch on the layout's format: ``recbole``, ``csv`` or ``parquet``."""
    if form == "recbole":
        return read_atomic(path)
    if form == "parquet":
        return read_parquet(path)
    return read_csv(path, separator)
