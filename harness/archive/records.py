"""Archive files: cell records and ``sweep.json``, written atomically as sorted, diffable JSON; rank counts as text."""

from __future__ import annotations

import base64
import json
import zlib
from pathlib import Path
from typing import Any

import numpy as np

from harness.atomic import write_text
from harness.tracking import check_ranks

SCHEMA = 1
SWEEP_FILE = "sweep.json"


def encode_counts(values: np.ndarray) -> str:
    """int32 little-endian bytes, zlib-compressed, base64 (ASCII)."""
    data = np.ascontiguousarray(np.asarray(values, dtype="<i4")).tobytes()
    return base64.b64encode(zlib.compress(data, 9)).decode("ascii")


def decode_counts(text: str, n: int) -> np.ndarray:
    """Inverse of :func:`encode_counts` (int32, native order); checks the length."""
    values = np.frombuffer(zlib.decompress(base64.b64decode(text)), dtype="<i4").astype(np.int32)
    if len(values) != n:
        raise ValueError(f"rank counts decode to {len(values)} values, the record says n={n}")
    return values


def ranks_record(above: np.ndarray, tied: np.ndarray, digest: str) -> dict:
    above, tied = check_ranks(above, tied)
    return {"above": encode_counts(above), "tied": encode_counts(tied), "n": len(above), "digest": str(digest)}


def ranks_from_record(data: dict) -> dict:
    """``{"above": int32, "tied": int32, "digest": str}`` from a record's ``ranks[part]``."""
    n = int(data["n"])
    return {"above": decode_counts(data["above"], n), "tied": decode_counts(data["tied"], n), "digest": str(data["digest"])}


def dumps(obj: Any, indent: int = 0) -> str:
    """JSON with sorted keys, one dict entry per line, everything else (lists, numbers) compact on its line."""
    if isinstance(obj, dict) and obj:
        pad = " " * (indent + 1)
        items = [f"{pad}{json.dumps(str(k))}: {dumps(obj[k], indent + 1)}" for k in sorted(obj)]
        return "{\n" + ",\n".join(items) + "\n" + " " * indent + "}"
    return json.dumps(obj, separators=(", ", ": "), sort_keys=True)


def write_json(path: str | Path, data: dict) -> Path:
    """Write ``data`` atomically (``harness.atomic``), serialised before anything touches the disk."""
    return write_text(path, dumps(data) + "\n")


def cell_file(folder: str | Path, cell_key: str) -> Path:
    if not cell_key or "/" in cell_key or cell_key.startswith(".") or cell_key == Path(SWEEP_FILE).stem:
        raise ValueError(f"invalid cell key {cell_key!r} for an archive file name")
    return Path(folder) / f"{cell_key}.json"


def write_cell(folder: str | Path, record: dict) -> Path | None:
    """Write a cell record as ``<folder>/<cell_key>.json``; a non-FINISHED record never replaces a FINISHED one
    (returns None then)."""
    path = cell_file(folder, record["cell_key"])
    if record["status"] != "FINISHED" and path.is_file():
        try:
            if json.loads(path.read_text()).get("status") == "FINISHED":
                return None
        except (OSError, ValueError):
            pass
    return write_json(path, record)


def write_sweep(folder: str | Path, experiment: str, tags: dict[str, str] | None = None, run_id: str | None = None,
                run_name: str | None = None, start_time: int | None = None) -> Path:
    """``sweep.json``: the experiment name and the sweep parent run's tags (``harness.axes.<g>`` for the reports)."""
    return write_json(Path(folder) / SWEEP_FILE, {"schema": SCHEMA, "experiment": experiment, "run_id": run_id,
                                                  "run_name": run_name, "start_time": start_time,
                                                  "tags": {k: str(v) for k, v in (tags or {}).items()}})


def latest(history: dict[str, list]) -> dict[str, float]:
    """What MLflow shows as a run's metric: the value logged last at the highest step."""
    out = {}
    for key, points in history.items():
        top = max(step for step, _ in points)
        out[key] = [value for step, value in points if step == top][-1]
    return out



def load_record(path: Path) -> dict:
    data = json.loads(Path(path).read_text())
    if data.get("schema") != SCHEMA:
        raise ValueError(f"{path}: archive schema {data.get('schema')!r} is not supported (this harness reads {SCHEMA})")
    data["_path"] = str(path)
    return data

