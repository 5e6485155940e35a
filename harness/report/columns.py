"""The runs table (one row per run, as ``mlflow.search_runs`` gives it): columns by run-schema name, labels
derived from tags and params, and the mean ± std a table cell shows."""

from __future__ import annotations

import numpy as np
import pandas as pd

from harness import run_schema as schema

TABLE_METRICS = ("hr@5", "mrr@5", "hr@20", "mrr@20")
FIGURE_METRICS = ("hr@20", "mrr@20")
NOT_ROW_AXES = ("train.seed", "seed", "dataset.name", "dataset")  # seeds are averaged, datasets are columns


def metric(df: pd.DataFrame, name: str) -> pd.Series:
    """A final test metric by harness name (``hr@20`` -> column ``metrics.test/hr_at_20``)."""
    column = f"metrics.{schema.mlflow_key(schema.part_metric('test', name))}"
    if column not in df:
        have = sorted(c[len("metrics."):] for c in df.columns if c.startswith(f"metrics.{schema.part_metric('test', '')}"))
        raise KeyError(f"no metric {column!r} in the runs; logged test metrics: {', '.join(have) or 'none'}")
    return df[column].astype(float)


def tag(df: pd.DataFrame, name: str, default: str = "") -> pd.Series:
    column = f"tags.{name}"
    return df[column].fillna(default) if column in df else pd.Series(default, index=df.index)


def param(df: pd.DataFrame, name: str, default: str = "") -> pd.Series:
    column = f"params.{name}"
    return df[column].fillna(default) if column in df else pd.Series(default, index=df.index)


def summarize(values: pd.Series) -> tuple[float, float, int]:
    """mean, sample std (ddof=1; NaN for one seed), count."""
    v = values.dropna().to_numpy(dtype=float)
    return (float(v.mean()) if len(v) else float("nan"), float(v.std(ddof=1)) if len(v) > 1 else float("nan"), len(v))


def fmt(mean: float, std: float, n: int, scale: float = 100.0) -> str:
    """``14.07 ± 0.31`` (percent, like the paper); ``(n=1)`` instead of a std for one seed."""
    if np.isnan(mean):
        return "-"
    return f"{mean * scale:.2f} ± {std * scale:.2f}" if n > 1 else f"{mean * scale:.2f} (n=1)"


def grid_axes(df: pd.DataFrame, parent: dict | None) -> list[list[str]]:
    """Axes of each grid, from the parent's ``harness.axes.<g>`` tags (else one grid of model/items/kdsr)."""
    tags = (parent or {}).get("tags", {})
    axes: list[list[str]] = []
    while schema.axes_tag(len(axes)) in tags:
        axes.append(tags[schema.axes_tag(len(axes))].split(","))
    return axes or [["model", "items", "kdsr"]]


def in_grid(df: pd.DataFrame, g: int) -> pd.DataFrame:
    """Runs that belong to grid ``g`` (tag ``harness.grids`` = "0,1")."""
    member = tag(df, schema.TAG_GRIDS, "0").map(lambda s: str(g) in s.split(","))
    return df[member]



def is_kdsr(df: pd.DataFrame) -> pd.Series:
    """KDSR runs: tag ``harness.kdsr`` true and at least one of its losses on (param ``kdsr.holistic`` /
    ``kdsr.dissected``; a missing param counts as on, the default). KDSR enabled with both losses off is the
    "asynchronous schedule only" control: not KDSR."""
    on = tag(df, schema.TAG_KDSR, "false") == "true"
    losses = (param(df, schema.PARAM_HOLISTIC, "True") != "False") | (param(df, schema.PARAM_DISSECTED, "True") != "False")
    return on & losses


def backbone(df: pd.DataFrame) -> pd.Series:
    """Tag ``harness.model``, else param ``model.name``."""
    return tag(df, schema.TAG_MODEL).where(tag(df, schema.TAG_MODEL) != "", param(df, schema.PARAM_MODEL, "-"))


def seed_of(df: pd.DataFrame) -> pd.Series:
    """Tag ``harness.seed``, else param ``train.seed`` (what pairs two methods' runs)."""
    return tag(df, schema.TAG_SEED).where(tag(df, schema.TAG_SEED) != "", param(df, schema.PARAM_SEED, "-"))


def schema_number(runs: pd.DataFrame, metric_key: str, legacy_tag: str) -> pd.Series:
    """A number of the run schema (``harness/run_schema.py``): the metric, else the tag older runs wrote."""
    column = f"metrics.{metric_key}"
    legacy = pd.to_numeric(tag(runs, legacy_tag, "nan"), errors="coerce")
    return runs[column].astype(float).fillna(legacy) if column in runs else legacy


def method(runs: pd.DataFrame) -> pd.Series:
    """The run's method label (tag ``harness.method``: ``finetune``, ``finetune+async``, ``finetune+kdsr`` ...);
    runs from before that tag: item representation with ``+kdsr`` when KDSR was on (no tags: ``-``)."""
    items = tag(runs, schema.TAG_ITEMS, "-")
    legacy = items + np.where(tag(runs, schema.TAG_KDSR, "false") == "true", "+kdsr", "")
    return tag(runs, schema.TAG_METHOD, "").where(lambda m: m != "", legacy)



def row_labels(df: pd.DataFrame, parent: dict | None) -> pd.Series:
    """Each run's grid position without seed and dataset (``mode=kdsr``), the line it belongs to."""
    axes = [a for a in dict.fromkeys(a for g in grid_axes(df, parent) for a in g) if a not in NOT_ROW_AXES]
    parts = [a + "=" + tag(df, schema.axis_tag(a), "-") for a in axes if f"tags.{schema.axis_tag(a)}" in df]
    return pd.concat(parts, axis=1).agg(", ".join, axis=1) if parts else method(df)


def valid_key(df: pd.DataFrame) -> str:
    """MLflow key of the validation metric the runs selected their epoch on (``valid/ndcg_at_10``)."""
    column = f"params.{schema.PARAM_VALID_METRIC}"
    names = df[column].dropna() if column in df else pd.Series(dtype=str)
    return schema.mlflow_key(schema.part_metric("valid", str(names.iloc[0]) if len(names) else "ndcg@10"))


def in_sweep_order(df: pd.DataFrame) -> pd.DataFrame:
    """Runs in the order of their sweep's grid (tag ``harness.cell_index``), so table rows read as the sweep
    file lists them wherever the runs came from (MLflow's start times, archive file names)."""
    index = pd.to_numeric(tag(df, schema.TAG_CELL_INDEX, "nan"), errors="coerce")
    return df.assign(_order=index).sort_values("_order", kind="stable").drop(columns="_order").reset_index(drop=True)


