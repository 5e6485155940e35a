"""Take cached features to other frameworks. Reads the cache only through ``load_features`` (read side).

Formats (row i of the cache = item i of the dataset; invalid rows are zeros in the cache):

- ``parquet``: ``<modality>.parquet`` with ``item_id`` (raw id), ``item_index``, ``vector``
  (fixed-size list of float32) and ``valid``; the manifest as JSON under the schema metadata key
  ``harness.manifest``. Loadable by ``datasets.load_dataset("parquet", ...)``, pandas, pyarrow.
- ``hf``: a ``datasets.Dataset`` with the same columns, ``save_to_disk`` in ``<modality>-hf/``
  (``datasets.load_from_disk``); the manifest is the dataset's ``info.description``.
- ``recbole``: RecBole's pre-trained embedding atomic file (docs: "Load Pre-trained Embedding"),
  ``<dataset>.<modality>emb`` with header ``iid:token<TAB><modality>_emb:float_seq`` and one line per
  valid item: raw id, then the vector space-separated; plus ``<dataset>-<modality>emb.yaml``, the
  config that loads it (``additional_feat_suffix``, ``load_col``, ``alias_of_item_id``, ``preload_weight``).
- ``mmrec``: MMRec's ``text_feat.npy`` / ``image_feat.npy``, float32 [n_items, dim], row k = MMRec
  ``itemID`` k; ``i_id_mapping.csv`` (tab-separated ``item_id``, ``itemID``) maps raw ids to rows.
  MMRec has no valid mask: items without features keep zero rows.

Every export also writes ``manifest.json`` beside it (encoder, revision, fingerprint, ...).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from harness.features.cache import Features, load_features
from harness.features.manifest import write_json_atomic

FORMATS = ("parquet", "hf", "recbole", "mmrec")
MANIFEST_KEY = b"harness.manifest"


def arrow_table(feats: Features, item_ids: list[str]) -> pa.Table:
    """Item id, index, vector and valid flag, with the manifest in the schema metadata."""
    matrix = np.ascontiguousarray(feats.matrix, dtype=np.float32)
    vectors = pa.FixedSizeListArray.from_arrays(pa.array(matrix.reshape(-1)), matrix.shape[1])
    table = pa.table({
        "item_id": pa.array(item_ids, pa.string()),
        "item_index": pa.array(np.arange(len(item_ids), dtype=np.int64)),
        "vector": vectors,
        "valid": pa.array(np.asarray(feats.valid, dtype=bool)),
    })
    return table.replace_schema_metadata({MANIFEST_KEY: json.dumps(feats.manifest).encode()})


def to_parquet(feats: Features, item_ids: list[str], out: Path, modality: str) -> Path:
    path = out / f"{modality}.parquet"
    pq.write_table(arrow_table(feats, item_ids), path)
    return path


def to_hf(feats: Features, item_ids: list[str], out: Path, modality: str) -> Path:
    import datasets  # heavy; only this format needs it

    table = arrow_table(feats, item_ids).replace_schema_metadata(None)
    info = datasets.DatasetInfo(description=json.dumps(feats.manifest))
    path = out / f"{modality}-hf"
    datasets.Dataset(table, info=info).save_to_disk(str(path))
    return path


def to_recbole(feats: Features, item_ids: list[str], out: Path, modality: str, dataset: str) -> Path:
    suffix, field = f"{modality}emb", f"{modality}_emb"
    path = out / f"{dataset}.{suffix}"
    with open(path, "w", encoding="utf-8") as f:
        f.write(f"iid:token\t{field}:float_seq\n")
        for item, row, ok in zip(item_ids, feats.matrix, feats.valid):
            if ok:
                f.write(f"{item}\t{' '.join(f'{x:.8g}' for x in row.tolist())}\n")
    config = {"additional_feat_suffix": [suffix], "load_col": {suffix: ["iid", field]},
              "alias_of_item_id": ["iid"], "preload_weight": {"iid": field}}
    (out / f"{dataset}-{suffix}.yaml").write_text(json.dumps(config, indent=2) + "\n")  # JSON is valid YAML
    return path


def to_mmrec(feats: Features, item_ids: list[str], out: Path, modality: str) -> Path:
    path = out / f"{modality}_feat.npy"
    np.save(path, np.asarray(feats.matrix, dtype=np.float32))
    lines = ["item_id\titemID"] + [f"{item}\t{k}" for k, item in enumerate(item_ids)]
    (out / "i_id_mapping.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def export_features(
    dataset: Any, encoder: str, modality: str, to: str, out: str | Path, cache_root: str | Path | None = None
) -> Path:
    """Write ``dataset``'s cached ``encoder`` features in format ``to`` under ``out``; return the main path."""
    if to not in FORMATS:
        raise ValueError(f"unknown export format {to!r}; valid: {', '.join(FORMATS)}")
    feats = load_features(dataset, encoder, modality, cache_root)  # checks checksums and fingerprint
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    ids = list(dataset.items.raw_ids)
    if to == "recbole":
        path = to_recbole(feats, ids, out, modality, dataset.name)
    else:
        path = {"parquet": to_parquet, "hf": to_hf, "mmrec": to_mmrec}[to](feats, ids, out, modality)
    write_json_atomic(out / f"{modality}-manifest.json", feats.manifest)
    return path
