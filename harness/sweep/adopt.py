"""``harness sweep FILE --adopt SRC --archive DIR``: reuse finished cells another sweep shares with this one.

Two sweeps can hold the same cell (same :func:`harness.config.cell_key`: same computation), e.g. the dim-128
MiniLM cells of ``sweeps/kdsr-results.yaml`` and ``sweeps/sophistication.yaml``. A record copied as is keeps
the other sweep's axis labels (``method=finetune``), which this sweep's reports cannot group; adopting it
rewrites only what names its place in a sweep (sweep, cell index, grids, axis labels) and records where it came
from. Metrics, histories, ranks and the run's own tags are kept byte for byte.
"""

from __future__ import annotations

import copy
from pathlib import Path

from harness import archive
from harness import run_schema as schema
from harness.sweep.cell import archive_folder, archived_keys, cell_tags
from harness.sweep.grid import Sweep

TAG_ADOPTED_FROM = "harness.adopted_from"  # the sweep whose run this record is
PLACE_TAGS = (schema.TAG_SWEEP, schema.TAG_CELL_INDEX, schema.TAG_GRIDS)


def relabel(record: dict, sweep: Sweep, cell) -> dict:
    """A copy of ``record`` placed as ``cell`` of ``sweep``: sweep/index/grids/axis tags and run name replaced."""
    out = copy.deepcopy(record)
    tags = {k: v for k, v in out["tags"].items() if not k.startswith(schema.AXIS_PREFIX) and k not in PLACE_TAGS}
    mine = cell_tags(sweep, cell)
    tags.update({k: v for k, v in mine.items() if k.startswith(schema.AXIS_PREFIX) or k in PLACE_TAGS})
    source = record["tags"].get(schema.TAG_SWEEP)
    if source and source != sweep.name:
        tags[TAG_ADOPTED_FROM] = source
    tags["mlflow.runName"] = cell.name
    out["tags"], out["run_name"] = tags, cell.name
    out.pop("_path", None)
    return out


def adopt(sweep: Sweep, sources: list[str | Path], root: str | Path) -> list[str]:
    """Copy the FINISHED records in ``sources`` whose cell key is a cell of ``sweep`` into ``root/<sweep name>/``,
    relabelled (:func:`relabel`); keys already FINISHED there are left alone. Returns the adopted keys."""
    by_key = {cell.key: cell for cell in sweep.cells()}
    folder = archive_folder(sweep, root)
    have = archived_keys(folder)
    adopted = []
    for record in archive.Archive(sources).newest("FINISHED"):
        cell = by_key.get(record["cell_key"])
        if cell is None or record["cell_key"] in have:
            continue
        archive.write_cell(folder, relabel(record, sweep, cell))
        adopted.append(record["cell_key"])
    return adopted
