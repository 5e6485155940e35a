"""``table2`` / ``ablation``: one table per grid, rows = the grid's axes other than seed and dataset, columns =
dataset x metric, cells = mean ± sample std over seeds (markdown + CSV), plus the significance tables."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd

from harness import run_schema as schema
from harness.report.columns import NOT_ROW_AXES, TABLE_METRICS, fmt, grid_axes, in_grid, metric, summarize, tag
from harness.report.significance import significance, write_significance


def grid_table(df: pd.DataFrame, axes: list[str], metrics=TABLE_METRICS) -> pd.DataFrame:
    """Long table: one row per (row labels, dataset, metric) with mean, std, n over seeds."""
    rows_axes = [a for a in axes if a not in NOT_ROW_AXES]
    labels = pd.DataFrame({a: tag(df, schema.axis_tag(a), "-") for a in rows_axes}, index=df.index)
    labels["dataset"] = tag(df, schema.TAG_DATASET)
    records = []
    for key, group in labels.groupby(rows_axes + ["dataset"], sort=False):
        key = key if isinstance(key, tuple) else (key,)
        for name in metrics:
            mean, std, n = summarize(metric(df.loc[group.index], name))
            records.append({**dict(zip(rows_axes + ["dataset"], key)), "metric": name, "mean": mean, "std": std, "n": n})
    return pd.DataFrame.from_records(records)


def to_markdown(long: pd.DataFrame) -> str:
    """Wide markdown table: rows = axis labels, columns = dataset x metric, ``mean ± std`` in percent."""
    rows_axes = [c for c in long.columns if c not in ("dataset", "metric", "mean", "std", "n")]
    columns = list(dict.fromkeys(zip(long["dataset"], long["metric"])))
    header = rows_axes + [f"{d} {m.upper()}" for d, m in columns]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    keys = list(dict.fromkeys(tuple(r) for r in long[rows_axes].itertuples(index=False)))
    for key in keys:
        sel = long[(long[rows_axes] == pd.Series(key, index=rows_axes)).all(axis=1)] if rows_axes else long
        cells = {(r.dataset, r.metric): fmt(r.mean, r.std, r.n) for r in sel.itertuples()}
        lines.append("| " + " | ".join(list(key) + [cells.get(c, "-") for c in columns]) + " |")
    return "\n".join(lines) + "\n"


def build_tables(df: pd.DataFrame, parent: dict | None, kind: str, out: Path, ranks=None,
                 versus: list[str] | None = None) -> list[Path]:
    """One markdown + CSV table per grid, plus ``<kind>-significance.md/.csv``; returns the files written.

    ``ranks(run_id) -> {"above", "tied", "digest"} | None`` gives a run's test rank counts (tests over targets).
    ``versus``: row labels (``method=finetune+async``) to test every row against as well, one
    ``<kind>-significance-vs-<label>.md/.csv`` each (e.g. KDSR vs its async-only control).
    """
    files, sections, tests = [], [], []
    if f"tags.{schema.axis_tag('model')}" not in df and parent is None:  # runs without sweep tags: label by config
        for name, key in (("model", schema.TAG_MODEL), ("items", schema.TAG_ITEMS), ("kdsr", schema.TAG_KDSR)):
            df[f"tags.{schema.axis_tag(name)}"] = tag(df, key)
    for g, axes in enumerate(grid_axes(df, parent)):
        runs = in_grid(df, g) if parent is not None else df
        if runs.empty:
            continue
        long = grid_table(runs, axes)
        csv = out / f"{kind}-{g}.csv"
        long.to_csv(csv, index=False)
        files.append(csv)
        sections.append(f"## {kind} grid {g}: rows {', '.join(a for a in axes if a not in NOT_ROW_AXES) or '-'}\n\n"
                        f"mean ± sample std over seeds, test metrics in %, {len(runs)} runs\n\n{to_markdown(long)}")
        tests.append((g, axes, runs))
    md = out / f"{kind}.md"
    md.write_text(f"# {kind}\n\n" + "\n".join(sections))
    files = [md] + files + write_significance([(g, a, significance(r, a, ranks)) for g, a, r in tests], kind, out)
    for label in versus or []:
        slug = re.sub(r"[^A-Za-z0-9_.+-]+", "_", label)
        files += write_significance([(g, a, significance(r, a, ranks, reference=label)) for g, a, r in tests],
                                    f"{kind}-significance-vs-{slug}", out, suffix="", versus=label)
    return files


