"""``figure4``: encoder parameter count (log axis) vs test HR@20 / MRR@20, a line per embedding dim, a panel per
dataset x modality (ID-only runs as a dashed baseline), plus encode cost vs gain over the ID-only baseline."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from harness import run_schema as schema
from harness.report.columns import FIGURE_METRICS, method, metric, schema_number, summarize, tag


def encoder_points(df: pd.DataFrame) -> pd.DataFrame:
    """Figure-4 data: per dataset x modality x dim x method x encoder, mean/std/n of HR@20 and MRR@20 over seeds.

    ``method`` (item representation, ``+kdsr`` when KDSR is on) keeps e.g. fine-tuned and KDSR runs apart:
    only seeds are averaged.
    """
    runs = df[tag(df, schema.TAG_MODALITY, "id") != "id"]
    if runs.empty:
        raise LookupError("no FINISHED runs with modality features (tag harness.modality) to plot against encoder size")
    keys = pd.DataFrame({"dataset": tag(runs, schema.TAG_DATASET), "modality": tag(runs, schema.TAG_MODALITY),
                         "dim": tag(runs, schema.TAG_DIM).astype(int), "method": method(runs),
                         "encoder": tag(runs, schema.TAG_ENCODER)})
    records, axes = [], ["dataset", "modality", "dim", "method", "encoder"]
    for key, group in keys.groupby(axes, sort=True):
        sub = runs.loc[group.index]
        rec = dict(zip(axes, key))
        rec["params"] = int(schema_number(sub, schema.METRIC_ENCODER_PARAMS, schema.TAG_ENCODER_PARAMS).iloc[0])
        seconds = schema_number(sub, schema.METRIC_ENCODE_SECONDS, schema.TAG_ENCODE_SECONDS)
        rec["encode_seconds"] = float(seconds.mean())
        for name in FIGURE_METRICS:
            rec[f"{name}_mean"], rec[f"{name}_std"], rec["n"] = summarize(metric(sub, name))
        records.append(rec)
    return pd.DataFrame.from_records(records).sort_values(["dataset", "modality", "dim", "method", "params"]).reset_index(drop=True)


def baselines(df: pd.DataFrame) -> pd.DataFrame:
    """ID-only runs: mean HR@20 / MRR@20 per dataset x dim (the reference for gains), from :func:`id_points`."""
    ids = id_points(df)
    return ids[["dataset", "dim"]].assign(**{name: ids[f"{name}_mean"] for name in FIGURE_METRICS})


def id_points(df: pd.DataFrame) -> pd.DataFrame:
    """ID-only runs: mean/std/n of HR@20 and MRR@20 per dataset x dim (the table's first column)."""
    runs = df[tag(df, schema.TAG_MODALITY, "id") == "id"]
    keys = pd.DataFrame({"dataset": tag(runs, schema.TAG_DATASET), "dim": tag(runs, schema.TAG_DIM).astype(int)})
    records = []
    for (dataset, dim), group in keys.groupby(["dataset", "dim"], sort=True):
        rec = {"dataset": dataset, "dim": dim}
        for name in FIGURE_METRICS:
            rec[f"{name}_mean"], rec[f"{name}_std"], rec["n"] = summarize(metric(runs.loc[group.index], name))
        records.append(rec)
    return pd.DataFrame.from_records(records, columns=["dataset", "dim", "n"] + [f"{n}_{s}" for n in FIGURE_METRICS for s in ("mean", "std")])


def size(params: int) -> str:
    """``22.7M``, ``109.5M``, ``86.0k``: an encoder's parameter count as a column title."""
    for scale, unit in ((1e9, "B"), (1e6, "M"), (1e3, "k")):
        if params >= scale:
            return f"{params / scale:.1f}{unit}"
    return str(params)


def point_cell(row) -> str:
    """``12.47 ± 0.23 / 3.36 ± 0.12 (n=3)``: HR@20 / MRR@20 in %, ``-`` when that point has no runs."""
    if row is None:
        return "-"
    parts = [f"{100 * row[f'{m}_mean']:.2f}" + ("" if row["n"] < 2 else f" ± {100 * row[f'{m}_std']:.2f}") for m in FIGURE_METRICS]
    return " / ".join(parts) + f" (n={int(row['n'])})"


def figure4_markdown(points: pd.DataFrame, ids: pd.DataFrame) -> str:
    """The plotted numbers as tables, one per dataset x modality: rows dim x method, columns ID only and each
    encoder by size (what docs/RESULTS.md shows under the figure)."""
    sections = ["# figure4\n"]
    for (dataset, modality), sel in points.groupby(["dataset", "modality"], sort=True):
        encoders = sel[["encoder", "params"]].drop_duplicates().sort_values(["params", "encoder"])
        header = ["dim", "method", "ID only (0)"] + [f"{e} ({size(p)})" for e, p in encoders.itertuples(index=False)]
        lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        for (dim, meth), rows in sel.groupby(["dim", "method"], sort=True):
            base = ids[(ids["dataset"] == dataset) & (ids["dim"] == dim)]
            cells = [str(dim), meth, point_cell(base.iloc[0] if len(base) else None)]
            for name in encoders["encoder"]:
                found = rows[rows["encoder"] == name]
                cells.append(point_cell(found.iloc[0] if len(found) else None))
            lines.append("| " + " | ".join(cells) + " |")
        sections.append(f"## {dataset} / {modality}\n\nTest HR@20 / MRR@20 in %, mean ± sample std over seeds "
                        f"(n: seeds)\n\n" + "\n".join(lines) + "\n")
    return "\n".join(sections)


def log_axis(ax, values: pd.Series, names: dict[float, str] | None = None) -> None:
    """Log x axis spanning at least a decade around ``values``, ticks at the encoders' own sizes (22.7M, 109M),
    labelled ``name\nsize`` when ``names`` (value -> encoder) is given."""
    from matplotlib.ticker import EngFormatter, FixedLocator, FuncFormatter, NullLocator

    lo, hi = float(values.min()), float(values.max())
    ax.set_xscale("log")
    ax.set_xlim(lo / 2, max(hi * 2, lo * 5))
    ax.xaxis.set_major_locator(FixedLocator(sorted(set(values.astype(float)))))
    ax.xaxis.set_minor_locator(NullLocator())
    eng = EngFormatter(places=1)
    ax.xaxis.set_major_formatter(FuncFormatter(lambda x, pos: f"{names[x]}\n{eng(x)}" if names and x in names else eng(x)))


def plot_figure4(points: pd.DataFrame, ids: pd.DataFrame, path: Path) -> Path:
    """:func:`draw_figure4` saved to ``path``."""
    import matplotlib.pyplot as plt

    fig = draw_figure4(points, ids)
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)
    return path


def draw_figure4(points: pd.DataFrame, ids: pd.DataFrame):
    """Panels (dataset x modality) in columns, metrics in rows; x = encoder params (log), a line per dim x method;
    ID only (``ids``: :func:`id_points`) as a dashed line at its mean with a band of ± one std over seeds."""
    import matplotlib  # where drawn (~1.1 s measured): tables and archive listings skip it

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = list(dict.fromkeys(zip(points["dataset"], points["modality"])))
    fig, axes = plt.subplots(len(FIGURE_METRICS), len(panels), figsize=(max(6.5, 4.2 * len(panels)), 6.5), squeeze=False)
    colors = dict(zip(sorted(points["dim"].unique()), plt.rcParams["axes.prop_cycle"].by_key()["color"] * 8))
    names = dict(zip(points["params"].astype(float), points["encoder"]))
    for col, (dataset, modality) in enumerate(panels):
        sel = points[(points["dataset"] == dataset) & (points["modality"] == modality)]
        for row, name in enumerate(FIGURE_METRICS):
            ax = axes[row][col]
            for (dim, how), line in sel.groupby(["dim", "method"]):
                ax.errorbar(line["params"], line[f"{name}_mean"], yerr=line[f"{name}_std"].fillna(0),
                            marker="s" if "kdsr" in how else "o", capsize=3, color=colors[dim],
                            linestyle="-" if "kdsr" in how else ":",
                            label=f"d={dim} {how}")
            for dim in sorted(sel["dim"].unique()):
                ref = ids[(ids["dataset"] == dataset) & (ids["dim"] == dim)]
                if ref.empty:
                    continue
                mean, std = float(ref[f"{name}_mean"].iloc[0]), float(ref[f"{name}_std"].fillna(0).iloc[0])
                ax.axhline(mean, color=colors[dim], linestyle="--", linewidth=0.8)
                if std > 0:
                    ax.axhspan(mean - std, mean + std, color=colors[dim], alpha=0.08, linewidth=0)
            log_axis(ax, points["params"], names)  # every panel shares the ticks, so the names come from all of them
            ax.set_title(f"{dataset} / {modality}" if row == 0 else "")
            ax.set_xlabel("encoder parameters" if row == len(FIGURE_METRICS) - 1 else "")
            ax.set_ylabel(f"test {name.upper()}" if col == 0 else "")
            ax.grid(True, which="both", alpha=0.3)
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=8,
               title="dim, method\n(dashed line, band: ID only,\nmean ± std, same colour = same dim)", title_fontsize=8)
    fig.suptitle("Encoder sophistication vs accuracy (mean ± std over seeds)")
    fig.tight_layout()
    return fig


def cost_gain(points: pd.DataFrame, base: pd.DataFrame) -> pd.DataFrame:
    """Encode cost vs HR@20 gain over the ID-only baseline of the same dataset and dim (NaN without one)."""
    merged = points.merge(base.rename(columns={n: f"id_{n}" for n in FIGURE_METRICS}), on=["dataset", "dim"], how="left")
    merged["gain_hr@20"] = merged["hr@20_mean"] - merged["id_hr@20"] if "id_hr@20" in merged else np.nan
    return merged


def plot_cost(table: pd.DataFrame, path: Path) -> Path | None:
    """x = encode device-seconds (log), y = HR@20 gain over ID-only (or HR@20 when no baseline ran)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = table.dropna(subset=["encode_seconds"])
    if rows.empty:
        return None
    use_gain = rows["gain_hr@20"].notna().any()
    y = rows["gain_hr@20"] if use_gain else rows["hr@20_mean"]
    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    for (dataset, modality), sel in rows.groupby(["dataset", "modality"]):
        ax.scatter(sel["encode_seconds"], y[sel.index], label=f"{dataset} / {modality}")
        for i, r in sel.iterrows():
            ax.annotate(f"{r['encoder']} d={r['dim']} {r['method']}", (r["encode_seconds"], y[i]), fontsize=7, alpha=0.7,
                        textcoords="offset points", xytext=(2, 3))
    if use_gain:
        ax.axhline(0.0, color="grey", linewidth=0.8)
    log_axis(ax, rows["encode_seconds"])
    ax.set_xlabel("encode cost (device-seconds, from the feature manifest)")
    ax.set_ylabel("test HR@20 gain over ID only" if use_gain else "test HR@20")
    ax.legend(fontsize=8)
    ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def build_figure4(df: pd.DataFrame, out: Path) -> list[Path]:
    """figure4.png + figure4.csv + figure4.md (the points as tables), cost.png + cost.csv."""
    points, ids = encoder_points(df), id_points(df)
    files = [plot_figure4(points, ids, out / "figure4.png")]
    points.to_csv(out / "figure4.csv", index=False)
    (out / "figure4.md").write_text(figure4_markdown(points, ids))
    cost = cost_gain(points, baselines(df))
    cost.to_csv(out / "cost.csv", index=False)
    files += [out / "figure4.csv", out / "figure4.md", out / "cost.csv"]
    plot = plot_cost(cost, out / "cost.png")
    return files + ([plot] if plot else [])


