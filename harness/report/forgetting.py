"""``forgetting``: the modality-forgetting curves (paper Figure 1, right): per-epoch ``monitor/*`` Pearson
correlations and the validation metric, mean ± std over seeds, a line per row label, a panel per dataset x metric."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from harness import run_schema as schema
from harness.report.columns import row_labels, tag, valid_key
from harness.report.sources import MlflowSource


def forgetting_curves(df: pd.DataFrame, parent: dict | None, history=None) -> pd.DataFrame:
    """Long table (dataset, label, metric, epoch, mean, std, n) over seeds of every per-epoch ``monitor/*``
    history and of the validation metric (the accuracy the forgetting goes along with).

    ``history(run_id, key) -> [(step, value), ...]``: default MLflow's metric histories."""
    keys = sorted((c[len("metrics."):] for c in df.columns if c.startswith(f"metrics.{schema.MONITOR_PREFIX}")), key=lambda k: ("_id_" in k, k))
    if not keys:
        raise LookupError("no run logged monitor/* metrics (the forgetting monitor needs frozen/finetune items or KDSR)")
    keys.append(valid_key(df))
    history = history or MlflowSource("").history
    labels, datasets = row_labels(df, parent), tag(df, schema.TAG_DATASET)
    records = [{"dataset": datasets[i], "label": labels[i], "metric": key, "epoch": step, "value": value}
               for i, run_id in df["run_id"].items() for key in keys for step, value in history(run_id, key)]
    long = pd.DataFrame.from_records(records)
    stats = long.groupby(["dataset", "label", "metric", "epoch"], sort=False)["value"].agg(["mean", "std", "count"])
    return stats.rename(columns={"count": "n"}).reset_index()


def plot_forgetting(curves: pd.DataFrame, path: Path) -> Path:
    """Panels: metric in rows, dataset in columns; x = epoch, a line (band = ±std over seeds) per label."""
    import matplotlib  # where drawn (~1.1 s measured): tables and archive listings skip it

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metrics, datasets = list(dict.fromkeys(curves["metric"])), list(dict.fromkeys(curves["dataset"]))
    colors = dict(zip(dict.fromkeys(curves["label"]), plt.rcParams["axes.prop_cycle"].by_key()["color"] * 8))
    fig, axes = plt.subplots(len(metrics), len(datasets), figsize=(4.8 * len(datasets), 3.2 * len(metrics)), squeeze=False)
    for row, name in enumerate(metrics):
        for col, dataset in enumerate(datasets):
            ax = axes[row][col]
            sel = curves[(curves["metric"] == name) & (curves["dataset"] == dataset)]
            for label, line in sel.groupby("label", sort=False):
                band = line["std"].fillna(0)
                ax.plot(line["epoch"], line["mean"], marker="o", markersize=3, color=colors[label], label=label)
                ax.fill_between(line["epoch"], line["mean"] - band, line["mean"] + band, color=colors[label], alpha=0.2)
            ax.set_title(f"{dataset}: {name.removeprefix(schema.MONITOR_PREFIX)}", fontsize=10)
            ax.set_xlabel("epoch" if row == len(metrics) - 1 else "")
            ax.set_ylabel(("Pearson r" if name.startswith(schema.MONITOR_PREFIX) else "validation") if col == 0 else "")
            ax.grid(True, alpha=0.3)
    handles = {h.get_label(): h for ax in axes.flat for h in ax.get_lines()}
    fig.legend(handles.values(), handles.keys(), loc="lower center", ncol=min(len(handles), 4), fontsize=8)
    fig.suptitle("Modality forgetting: item-table similarities vs the encoder features' (pearson_<m>) and the\n"
                 "ID embeddings' (pearson_id_<m>), with the validation metric; mean ± std over seeds", fontsize=10)
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def build_forgetting(df: pd.DataFrame, parent: dict | None, out: Path, history=None) -> list[Path]:
    """forgetting.png + forgetting.csv."""
    curves = forgetting_curves(df, parent, history)
    curves.to_csv(out / "forgetting.csv", index=False)
    return [plot_forgetting(curves, out / "forgetting.png"), out / "forgetting.csv"]


