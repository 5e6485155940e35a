"""Paper figures and tables from an MLflow experiment: ``harness report figure4|table2|ablation|forgetting``.

Everything is read back from MLflow (``mlflow.search_runs``), never from local result files: the
newest FINISHED run of every cell key (tag ``harness.cell_key``) of the experiment, with the tags the
sweep runner wrote (dataset, dim, seed, modality, encoder parameter count, encode seconds, the axis
labels of each grid). Outputs are written to ``--out`` and logged as artifacts of the sweep's parent
run (or of a ``report:<kind>`` run when the experiment has no sweep parent). ``--archive DIR [DIR ...]``
reads archives (:mod:`harness.archive`: the same DataFrame, histories and rank counts) instead, without
MLflow; nothing is logged then.

- ``figure4``: encoder parameter count (log axis) vs test HR@20 and MRR@20, one line per embedding
  dim, one panel per dataset x modality (ID-only runs drawn as a dashed baseline), plus a cost
  (encode device-seconds) vs gain (HR@20 over the ID-only baseline) plot.
- ``table2`` / ``ablation``: one table per grid of the sweep, rows = the grid's axes other than
  seed and dataset, columns = dataset x metric, cells = mean +- sample std over seeds (markdown + CSV);
  plus ``<kind>-significance.md/.csv``: every row vs the best non-KDSR row of its backbone and dataset,
  effect, 95% CI and p-values over test targets (rank counts, :mod:`harness.stats`) and over seeds,
  Holm-corrected across the table's rows.
- ``forgetting``: the modality-forgetting curves (paper Figure 1, right): per-epoch ``monitor/*``
  Pearson correlations, mean +- std over seeds, a line per row label, a panel per dataset x metric.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from harness.tracking import mlflow_key

KINDS = ("figure4", "table2", "ablation", "forgetting")
TABLE_METRICS = ("hr@5", "mrr@5", "hr@20", "mrr@20")
FIGURE_METRICS = ("hr@20", "mrr@20")
NOT_ROW_AXES = ("train.seed", "seed", "dataset.name", "dataset")  # seeds are averaged, datasets are columns


# ----------------------------------------------------------------------------------------- read MLflow


def cell_runs(experiment: str) -> pd.DataFrame:
    """Newest FINISHED run per cell key of ``experiment`` (one row per cell)."""
    import mlflow

    found = mlflow.get_experiment_by_name(experiment)
    if found is None:
        raise LookupError(f"no MLflow experiment {experiment!r} at {mlflow.get_tracking_uri()}")
    df = mlflow.search_runs([found.experiment_id], filter_string="tags.`harness.role` = 'cell' and attributes.status = 'FINISHED'",
                            order_by=["attributes.start_time DESC"])
    if df.empty:
        raise LookupError(f"experiment {experiment!r} has no FINISHED sweep cells")
    return df.drop_duplicates("tags.harness.cell_key", keep="first").reset_index(drop=True)


def parent_run(experiment: str) -> dict | None:
    """The newest sweep parent run of the experiment: run id and tags (axes of each grid)."""
    import mlflow

    found = mlflow.get_experiment_by_name(experiment)
    runs = mlflow.search_runs([found.experiment_id], filter_string="tags.`harness.role` = 'sweep'",
                              order_by=["attributes.start_time DESC"], max_results=1, output_format="list")
    return {"run_id": runs[0].info.run_id, "tags": runs[0].data.tags} if runs else None


class MlflowSource:
    """Where a report reads runs: an MLflow experiment (``harness.archive.Archive`` has the same methods)."""

    def __init__(self, experiment: str):
        import mlflow

        self.experiment = experiment
        self.client = mlflow.MlflowClient()

    def runs(self) -> pd.DataFrame:
        return cell_runs(self.experiment)

    def parent(self) -> dict | None:
        return parent_run(self.experiment)

    def history(self, run_id: str, key: str) -> list[tuple[int, float]]:
        return [(m.step, m.value) for m in self.client.get_metric_history(run_id, key)]

    def ranks(self, run_id: str, part: str = "test") -> dict | None:
        """The run's ``ranks/<part>.npz`` artifact (:meth:`harness.tracking.Logger.log_ranks`), None when absent."""
        import tempfile

        from harness.archive import download_ranks

        with tempfile.TemporaryDirectory() as tmp:
            return download_ranks(self.client, run_id, tmp).get(part)


def metric(df: pd.DataFrame, name: str) -> pd.Series:
    """A final test metric by harness name (``hr@20`` -> column ``metrics.test/hr_at_20``)."""
    column = f"metrics.{mlflow_key('test/' + name)}"
    if column not in df:
        have = sorted(c[len("metrics."):] for c in df.columns if c.startswith("metrics.test/"))
        raise KeyError(f"no metric {column!r} in the runs; logged test metrics: {', '.join(have) or 'none'}")
    return df[column].astype(float)


def tag(df: pd.DataFrame, name: str, default: str = "") -> pd.Series:
    column = f"tags.{name}"
    return df[column].fillna(default) if column in df else pd.Series(default, index=df.index)


def param(df: pd.DataFrame, name: str, default: str = "") -> pd.Series:
    column = f"params.{name}"
    return df[column].fillna(default) if column in df else pd.Series(default, index=df.index)


# --------------------------------------------------------------------------------------------- tables


def summarize(values: pd.Series) -> tuple[float, float, int]:
    """mean, sample std (ddof=1; NaN for one seed), count."""
    v = values.dropna().to_numpy(dtype=float)
    return (float(v.mean()) if len(v) else float("nan"), float(v.std(ddof=1)) if len(v) > 1 else float("nan"), len(v))


def fmt(mean: float, std: float, n: int, scale: float = 100.0) -> str:
    """``14.07 ± 0.31`` (percent, like the paper); ``(n=1)`` instead of a std for one seed."""
    if np.isnan(mean):
        return "-"
    return f"{mean * scale:.2f} ± {std * scale:.2f}" if n > 1 else f"{mean * scale:.2f} (n=1)"


def grid_table(df: pd.DataFrame, axes: list[str], metrics=TABLE_METRICS) -> pd.DataFrame:
    """Long table: one row per (row labels, dataset, metric) with mean, std, n over seeds."""
    rows_axes = [a for a in axes if a not in NOT_ROW_AXES]
    labels = pd.DataFrame({a: tag(df, f"harness.axis.{a}", "-") for a in rows_axes}, index=df.index)
    labels["dataset"] = tag(df, "harness.dataset")
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


def grid_axes(df: pd.DataFrame, parent: dict | None) -> list[list[str]]:
    """Axes of each grid, from the parent's ``harness.axes.<g>`` tags (else one grid of model/items/kdsr)."""
    tags = (parent or {}).get("tags", {})
    axes: list[list[str]] = []
    while f"harness.axes.{len(axes)}" in tags:
        axes.append(tags[f"harness.axes.{len(axes)}"].split(","))
    return axes or [["model", "items", "kdsr"]]


def in_grid(df: pd.DataFrame, g: int) -> pd.DataFrame:
    """Runs that belong to grid ``g`` (tag ``harness.grids`` = "0,1")."""
    member = tag(df, "harness.grids", "0").map(lambda s: str(g) in s.split(","))
    return df[member]


def build_tables(df: pd.DataFrame, parent: dict | None, kind: str, out: Path, ranks=None,
                 versus: list[str] | None = None) -> list[Path]:
    """One markdown + CSV table per grid, plus ``<kind>-significance.md/.csv``; returns the files written.

    ``ranks(run_id) -> {"above", "tied", "digest"} | None`` gives a run's test rank counts (tests over targets).
    ``versus``: row labels (``method=finetune+async``) to test every row against as well, one
    ``<kind>-significance-vs-<label>.md/.csv`` each (e.g. KDSR vs its async-only control).
    """
    files, sections, tests = [], [], []
    if "tags.harness.axis.model" not in df and parent is None:  # runs without sweep tags: label by config
        for name in ("model", "items", "kdsr"):
            df[f"tags.harness.axis.{name}"] = tag(df, f"harness.{name}")
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


# ------------------------------------------------------------------------------------- significance

SIG_METRICS = ("hr@20", "mrr@20")
ALPHA = 0.05


def is_kdsr(df: pd.DataFrame) -> pd.Series:
    """KDSR runs: tag ``harness.kdsr`` true and at least one of its losses on (param ``kdsr.holistic`` /
    ``kdsr.dissected``; a missing param counts as on, the default). KDSR enabled with both losses off is the
    "asynchronous schedule only" control: not KDSR."""
    on = tag(df, "harness.kdsr", "false") == "true"
    losses = (param(df, "kdsr.holistic", "True") != "False") | (param(df, "kdsr.dissected", "True") != "False")
    return on & losses


def backbone(df: pd.DataFrame) -> pd.Series:
    """Tag ``harness.model``, else param ``model.name``."""
    return tag(df, "harness.model").where(tag(df, "harness.model") != "", param(df, "model.name", "-"))


def seed_of(df: pd.DataFrame) -> pd.Series:
    """Tag ``harness.seed``, else param ``train.seed`` (what pairs two methods' runs)."""
    return tag(df, "harness.seed").where(tag(df, "harness.seed") != "", param(df, "train.seed", "-"))


def significance(df: pd.DataFrame, axes: list[str], ranks=None, reference: str | None = None) -> pd.DataFrame:
    """Every row of a grid table vs the best non-KDSR row of the same backbone and dataset (by mean test HR@20),
    or, with ``reference`` (a row label such as ``method=finetune+async``), vs that row.

    Long table: one record per (row, dataset, metric) with the effect (row - reference, points), the 95% CI
    and p-value over targets (Wilcoxon signed-rank; t-test too) and the p-value and CI over seeds (paired t),
    Holm-adjusted p-values across the table's rows (per metric and test), and a ``note`` for what could not
    be tested (no rank counts, < 2 shared seeds, no non-KDSR reference, misaligned targets).
    """
    from harness import stats

    rows_axes = [a for a in axes if a not in NOT_ROW_AXES]
    info = pd.DataFrame({a: tag(df, f"harness.axis.{a}", "-") for a in rows_axes}, index=df.index)
    info["dataset"], info["backbone"] = tag(df, "harness.dataset"), backbone(df)
    info["kdsr"], info["seed"] = is_kdsr(df), seed_of(df)
    groups = []
    for key, group in info.groupby(rows_axes + ["dataset"], sort=False):
        key = key if isinstance(key, tuple) else (key,)
        label = dict(zip(rows_axes + ["dataset"], key))
        groups.append({"label": label, "row": ", ".join(f"{a}={label[a]}" for a in rows_axes) or "-",
                       "index": group.index, "dataset": label["dataset"], "backbone": group["backbone"].mode().iloc[0],
                       "kdsr": bool(group["kdsr"].mode().iloc[0]), "hr": float(metric(df.loc[group.index], "hr@20").mean())})
    cache: dict[str, dict | None] = {}

    def run_ranks(run_id: str) -> dict | None:
        if run_id not in cache:
            cache[run_id] = ranks(run_id) if ranks is not None else None
        return cache[run_id]

    def per_seed(group: dict, name: str) -> dict:
        values = metric(df.loc[group["index"]], name)
        return values.groupby(info.loc[group["index"], "seed"]).mean().to_dict()

    def seed_runs(group: dict) -> dict:
        return dict(zip(info.loc[group["index"], "seed"], df.loc[group["index"], "run_id"]))

    records = []
    for grp in groups:
        same = [o for o in groups if o["dataset"] == grp["dataset"] and o["backbone"] == grp["backbone"]]
        peers = [o for o in same if (o["row"] == reference if reference else not o["kdsr"])]
        ref = max(peers, key=lambda o: o["hr"]) if peers else None
        base = {**grp["label"], "row": grp["row"], "backbone": grp["backbone"], "kdsr": grp["kdsr"],
                "reference": ref["row"] if ref else "", "is_reference": ref is grp}
        for name in SIG_METRICS:
            rec = {**base, "metric": name, "n_seeds": 0, "n_targets": 0, "effect": np.nan, "effect_over": "",
                   "ci_low": np.nan, "ci_high": np.nan, "p_targets": np.nan, "p_targets_t": np.nan,
                   "seed_ci_low": np.nan, "seed_ci_high": np.nan, "p_seeds": np.nan, "note": ""}
            records.append(rec)
            if ref is None:
                rec["note"] = "no non-KDSR row of this backbone and dataset to compare with"
                continue
            if ref is grp:
                rec["note"], rec["n_seeds"] = "reference", int(info.loc[grp["index"], "seed"].nunique())
                continue
            a, b = per_seed(grp, name), per_seed(ref, name)
            seeds = stats.shared_seeds(a, b)
            rec["n_seeds"] = len(seeds)
            if not seeds:
                rec["note"] = "no shared seeds"
                continue
            rec["effect"], rec["effect_over"] = 100 * float(np.mean([a[s] - b[s] for s in seeds])), "seeds"
            notes = []
            if len(seeds) >= 2:
                st = stats.compare_seeds(a, b)
                rec.update(seed_ci_low=st.ci_low, seed_ci_high=st.ci_high, p_seeds=st.p_t)
            else:
                notes.append("1 shared seed: no test over seeds")
            runs_a, runs_b = seed_runs(grp), seed_runs(ref)
            ra = {s: run_ranks(runs_a[s]) for s in seeds}
            rb = {s: run_ranks(runs_b[s]) for s in seeds}
            if any(r is None for r in [*ra.values(), *rb.values()]):
                notes.append("no rank counts (ranks/test.npz) for some runs: no test over targets")
            else:
                try:
                    tt = stats.compare_targets(ra, rb, name)
                except ValueError as err:
                    notes.append(f"not paired over targets: {err}")
                else:
                    rec.update(n_targets=tt.n_targets, effect=tt.effect, effect_over="targets", ci_low=tt.ci_low,
                               ci_high=tt.ci_high, p_targets=tt.p_wilcoxon, p_targets_t=tt.p_t)
            rec["note"] = "; ".join(notes)
    out = pd.DataFrame.from_records(records)
    for name in SIG_METRICS:  # Holm across the rows of this table, per metric and test
        sel = out["metric"] == name
        for col in ("p_targets", "p_seeds"):
            out.loc[sel, f"{col}_holm"] = stats.holm(out.loc[sel, col].to_numpy(dtype=float))
    for col in ("p_targets", "p_seeds"):
        out[f"{col}_significant"] = out[f"{col}_holm"] < ALPHA
    return out


def fmt_p(p: float, adjusted: float) -> str:
    """Holm-adjusted p (``0.012``, ``3.1e-05``), ``*`` when < 0.05; ``-`` when untested."""
    if np.isnan(adjusted):
        return "-"
    text = f"{adjusted:.3f}" if adjusted >= 0.001 else f"{adjusted:.1e}"
    return text + (" *" if adjusted < ALPHA else "")


def significance_markdown(sig: pd.DataFrame, axes: list[str]) -> str:
    """Wide markdown: a row per (row, dataset), per metric: effect, 95% CI over targets, p targets, p seeds."""
    rows_axes = [a for a in axes if a not in NOT_ROW_AXES]
    header = rows_axes + ["dataset", "reference", "seeds"]
    for name in SIG_METRICS:
        header += [f"Δ {name.upper()}", "95% CI", "p targets", "p seeds"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    notes = []
    for _, rows in sig.groupby(["row", "dataset"], sort=False):
        first = rows.iloc[0]
        cells = [str(first[a]) for a in rows_axes] + [first["dataset"], first["reference"] or "-", str(int(rows["n_seeds"].max()))]
        for name in SIG_METRICS:
            r = rows[rows["metric"] == name].iloc[0]
            if r["is_reference"]:
                cells += ["ref", "", "", ""]
                continue
            effect = "-" if np.isnan(r["effect"]) else f"{r['effect']:+.2f}" + ("" if r["effect_over"] == "targets" else " (seeds)")
            ci = "-" if np.isnan(r["ci_low"]) else f"[{r['ci_low']:+.2f}, {r['ci_high']:+.2f}]"
            cells += [effect, ci, fmt_p(r["p_targets"], r["p_targets_holm"]), fmt_p(r["p_seeds"], r["p_seeds_holm"])]
        lines.append("| " + " | ".join(cells) + " |")
        for note in dict.fromkeys(n for n in rows["note"] if n and n != "reference"):
            notes.append(f"- {first['row']} on {first['dataset']}: {note}")
    return "\n".join(lines) + "\n" + ("\n" + "\n".join(notes) + "\n" if notes else "")


CAPTION = ("Each row vs the best non-KDSR row of the same backbone and dataset (`ref`, by mean test HR@20; "
           "KDSR enabled with both losses off counts as non-KDSR). Δ = row − reference in points (test %, mean "
           "over the shared seeds and the test targets; `(seeds)`: from the per-seed metrics, no rank counts). "
           "95% CI: t-interval of the per-target paired differences (each method's per-target values averaged over "
           "the shared seeds). p targets: Wilcoxon signed-rank over targets (targets with equal values dropped); "
           "p seeds: paired t-test over seeds (>= 2 shared seeds). p-values are Holm-adjusted across the rows of "
           "this table, separately per metric and test; * = p < 0.05 after Holm. `-`: not tested (see the notes).")


def write_significance(tests: list[tuple[int, list[str], pd.DataFrame]], kind: str, out: Path,
                       suffix: str = "-significance", versus: str | None = None) -> list[Path]:
    """``<kind><suffix>.md`` (a table per grid) and ``<kind><suffix>.csv`` (long, every grid)."""
    sections, frames = [], []
    caption = CAPTION
    if versus:  # the reference is a named row, not the best non-KDSR one
        caption = f"Each row vs `{versus}` of the same backbone and dataset (`ref`)." + CAPTION[CAPTION.index(")") + 2:]
    for g, axes, sig in tests:
        sections.append(f"## {kind} grid {g}: significance\n\n{caption}\n\n{significance_markdown(sig, axes)}")
        frames.append(sig.assign(grid=g))
    md, csv = out / f"{kind}{suffix}.md", out / f"{kind}{suffix}.csv"
    md.write_text(f"# {kind}: paired significance\n\n" + "\n".join(sections))
    table = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    if not table.empty:
        table = table[["grid"] + [c for c in table.columns if c != "grid"]]
    table.to_csv(csv, index=False)
    return [md, csv]


# -------------------------------------------------------------------------------------------- figures


def encoder_points(df: pd.DataFrame) -> pd.DataFrame:
    """Figure-4 data: per dataset x modality x dim x method x encoder, mean/std/n of HR@20 and MRR@20 over seeds.

    ``method`` (item representation, ``+kdsr`` when KDSR is on) keeps e.g. fine-tuned and KDSR runs apart:
    only seeds are averaged.
    """
    runs = df[tag(df, "harness.modality", "id") != "id"]
    if runs.empty:
        raise LookupError("no FINISHED runs with modality features (tag harness.modality) to plot against encoder size")
    keys = pd.DataFrame({"dataset": tag(runs, "harness.dataset"), "modality": tag(runs, "harness.modality"),
                         "dim": tag(runs, "harness.dim").astype(int), "method": method(runs),
                         "encoder": tag(runs, "harness.encoder")})
    records, axes = [], ["dataset", "modality", "dim", "method", "encoder"]
    for key, group in keys.groupby(axes, sort=True):
        sub = runs.loc[group.index]
        rec = dict(zip(axes, key))
        rec["params"] = int(schema_number(sub, "encoder.params", "harness.encoder_params").iloc[0])
        seconds = schema_number(sub, "encoder.encode_seconds", "harness.encode_seconds")
        rec["encode_seconds"] = float(seconds.mean())
        for name in FIGURE_METRICS:
            rec[f"{name}_mean"], rec[f"{name}_std"], rec["n"] = summarize(metric(sub, name))
        records.append(rec)
    return pd.DataFrame.from_records(records).sort_values(["dataset", "modality", "dim", "method", "params"]).reset_index(drop=True)


def schema_number(runs: pd.DataFrame, metric_key: str, legacy_tag: str) -> pd.Series:
    """A number of the run schema (``harness/run_schema.py``): the metric, else the tag older runs wrote."""
    column = f"metrics.{metric_key}"
    legacy = pd.to_numeric(tag(runs, legacy_tag, "nan"), errors="coerce")
    return runs[column].astype(float).fillna(legacy) if column in runs else legacy


def method(runs: pd.DataFrame) -> pd.Series:
    """The run's method label (tag ``harness.method``: ``finetune``, ``finetune+async``, ``finetune+kdsr`` ...);
    runs from before that tag: item representation with ``+kdsr`` when KDSR was on (no tags: ``-``)."""
    items = tag(runs, "harness.items", "-")
    legacy = items + np.where(tag(runs, "harness.kdsr", "false") == "true", "+kdsr", "")
    return tag(runs, "harness.method", "").where(lambda m: m != "", legacy)


def baselines(df: pd.DataFrame) -> pd.DataFrame:
    """ID-only runs: mean HR@20 / MRR@20 per dataset x dim (the reference for gains)."""
    runs = df[tag(df, "harness.modality", "id") == "id"]
    out = pd.DataFrame({"dataset": tag(runs, "harness.dataset"), "dim": tag(runs, "harness.dim").astype(int)})
    for name in FIGURE_METRICS:
        out[name] = metric(runs, name).to_numpy()
    return out.groupby(["dataset", "dim"], as_index=False).mean()


def log_axis(ax, values: pd.Series) -> None:
    """Log x axis spanning at least a decade around ``values``, ticks at the encoders' own sizes (22.7M, 109M)."""
    from matplotlib.ticker import EngFormatter, FixedLocator, NullLocator

    lo, hi = float(values.min()), float(values.max())
    ax.set_xscale("log")
    ax.set_xlim(lo / 2, max(hi * 2, lo * 5))
    ax.xaxis.set_major_locator(FixedLocator(sorted(set(values.astype(float)))))
    ax.xaxis.set_minor_locator(NullLocator())
    ax.xaxis.set_major_formatter(EngFormatter(places=1))


def plot_figure4(points: pd.DataFrame, base: pd.DataFrame, path: Path) -> Path:
    """Panels (dataset x modality) in columns, metrics in rows; x = encoder params (log), a line per dim."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = list(dict.fromkeys(zip(points["dataset"], points["modality"])))
    fig, axes = plt.subplots(len(FIGURE_METRICS), len(panels), figsize=(max(6.5, 4.2 * len(panels)), 6.5), squeeze=False)
    colors = dict(zip(sorted(points["dim"].unique()), plt.rcParams["axes.prop_cycle"].by_key()["color"] * 8))
    for col, (dataset, modality) in enumerate(panels):
        sel = points[(points["dataset"] == dataset) & (points["modality"] == modality)]
        for row, name in enumerate(FIGURE_METRICS):
            ax = axes[row][col]
            for (dim, how), line in sel.groupby(["dim", "method"]):
                ax.errorbar(line["params"], line[f"{name}_mean"], yerr=line[f"{name}_std"].fillna(0),
                            marker="s" if "kdsr" in how else "o", capsize=3, color=colors[dim],
                            linestyle="-" if "kdsr" in how else ":",
                            label=f"d={dim} {how}")
                ref = base[(base["dataset"] == dataset) & (base["dim"] == dim)]
                if not ref.empty:
                    ax.axhline(float(ref[name].iloc[0]), color=colors[dim], linestyle="--", linewidth=0.8)
            log_axis(ax, points["params"])
            ax.set_title(f"{dataset} / {modality}" if row == 0 else "")
            ax.set_xlabel("encoder parameters" if row == len(FIGURE_METRICS) - 1 else "")
            ax.set_ylabel(f"test {name.upper()}" if col == 0 else "")
            ax.grid(True, which="both", alpha=0.3)
        for _, r in sel.drop_duplicates("encoder").iterrows():  # name the encoders once, on the top row
            axes[0][col].annotate(r["encoder"], (r["params"], r[f"{FIGURE_METRICS[0]}_mean"]), fontsize=7, alpha=0.7,
                                  textcoords="offset points", xytext=(2, 4))
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=8,
               title="dim, method\n(dashed line: ID only,\nsame colour = same dim)", title_fontsize=8)
    fig.suptitle("Encoder sophistication vs accuracy (mean ± std over seeds)")
    fig.tight_layout()
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)
    return path


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
    """figure4.png + figure4.csv, cost.png + cost.csv."""
    points, base = encoder_points(df), baselines(df)
    files = [plot_figure4(points, base, out / "figure4.png")]
    points.to_csv(out / "figure4.csv", index=False)
    cost = cost_gain(points, base)
    cost.to_csv(out / "cost.csv", index=False)
    files += [out / "figure4.csv", out / "cost.csv"]
    plot = plot_cost(cost, out / "cost.png")
    return files + ([plot] if plot else [])


def row_labels(df: pd.DataFrame, parent: dict | None) -> pd.Series:
    """Each run's grid position without seed and dataset (``mode=kdsr``), the line it belongs to."""
    axes = [a for a in dict.fromkeys(a for g in grid_axes(df, parent) for a in g) if a not in NOT_ROW_AXES]
    parts = [a + "=" + tag(df, f"harness.axis.{a}", "-") for a in axes if f"tags.harness.axis.{a}" in df]
    return pd.concat(parts, axis=1).agg(", ".join, axis=1) if parts else method(df)


def valid_key(df: pd.DataFrame) -> str:
    """MLflow key of the validation metric the runs selected their epoch on (``valid/ndcg_at_10``)."""
    names = df["params.train.valid_metric"].dropna() if "params.train.valid_metric" in df else pd.Series(dtype=str)
    return mlflow_key("valid/" + (str(names.iloc[0]) if len(names) else "ndcg@10"))


def forgetting_curves(df: pd.DataFrame, parent: dict | None, history=None) -> pd.DataFrame:
    """Long table (dataset, label, metric, epoch, mean, std, n) over seeds of every per-epoch ``monitor/*``
    history and of the validation metric (the accuracy the forgetting goes along with).

    ``history(run_id, key) -> [(step, value), ...]``: default MLflow's metric histories."""
    keys = sorted((c[len("metrics."):] for c in df.columns if c.startswith("metrics.monitor/")), key=lambda k: ("_id_" in k, k))
    if not keys:
        raise LookupError("no run logged monitor/* metrics (the forgetting monitor needs frozen/finetune items or KDSR)")
    keys.append(valid_key(df))
    history = history or MlflowSource("").history
    labels, datasets = row_labels(df, parent), tag(df, "harness.dataset")
    records = [{"dataset": datasets[i], "label": labels[i], "metric": key, "epoch": step, "value": value}
               for i, run_id in df["run_id"].items() for key in keys for step, value in history(run_id, key)]
    long = pd.DataFrame.from_records(records)
    stats = long.groupby(["dataset", "label", "metric", "epoch"], sort=False)["value"].agg(["mean", "std", "count"])
    return stats.rename(columns={"count": "n"}).reset_index()


def plot_forgetting(curves: pd.DataFrame, path: Path) -> Path:
    """Panels: metric in rows, dataset in columns; x = epoch, a line (band = ±std over seeds) per label."""
    import matplotlib

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
            ax.set_title(f"{dataset}: {name.removeprefix('monitor/')}", fontsize=10)
            ax.set_xlabel("epoch" if row == len(metrics) - 1 else "")
            ax.set_ylabel(("Pearson r" if name.startswith("monitor/") else "validation") if col == 0 else "")
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


# ------------------------------------------------------------------------------------------------ CLI


def log_outputs(experiment: str, parent: dict | None, kind: str, files: list[Path]) -> str:
    """Log the report files as artifacts of the sweep parent (or a new ``report:<kind>`` run); returns its id."""
    import mlflow

    client = mlflow.MlflowClient()
    if parent is not None:
        run_id = parent["run_id"]
    else:
        exp = mlflow.get_experiment_by_name(experiment).experiment_id
        run_id = client.create_run(exp, run_name=f"report:{kind}", tags={"harness.role": "report"}).info.run_id
        client.set_terminated(run_id)
    for path in files:
        client.log_artifact(run_id, str(path), f"report/{kind}")
    return run_id


def in_sweep_order(df: pd.DataFrame) -> pd.DataFrame:
    """Runs in the order of their sweep's grid (tag ``harness.cell_index``), so table rows read as the sweep
    file lists them wherever the runs came from (MLflow's start times, archive file names)."""
    index = pd.to_numeric(tag(df, "harness.cell_index", "nan"), errors="coerce")
    return df.assign(_order=index).sort_values("_order", kind="stable").drop(columns="_order").reset_index(drop=True)


def build(kind: str, experiment: str | None = None, out: str | Path | None = None, log: bool = True,
          uri: str | None = None, archive=None, versus: list[str] | None = None) -> list[Path]:
    """Build one report from the experiment's runs; write it to ``out`` and (``log``) to MLflow.

    ``uri``: tracking URI (default ``$MLFLOW_TRACKING_URI``, else the harness' ``sqlite:///mlruns.db``).
    ``archive``: archive folder(s) (:mod:`harness.archive`) to read instead of MLflow; nothing is logged then.
    """
    if kind not in KINDS:
        raise ValueError(f"unknown report {kind!r}; valid: {', '.join(KINDS)}")
    if archive is not None:
        from harness.archive import Archive

        source = Archive(archive)
        name = experiment or source.experiment() or Path(archive if isinstance(archive, str | Path) else list(archive)[0]).name
        log = False
    else:
        import mlflow

        from harness.config import TrackingConfig
        from harness.tracking import tracking_uri

        if not experiment:
            raise ValueError("an MLflow report needs an experiment name (or read an archive)")
        mlflow.set_tracking_uri(tracking_uri(TrackingConfig(uri=uri)))
        source, name = MlflowSource(experiment), experiment
    out = Path(out or Path("results") / "report" / name)
    out.mkdir(parents=True, exist_ok=True)
    df, parent = in_sweep_order(source.runs()), source.parent()
    if kind == "figure4":
        files = build_figure4(df, out)
    elif kind == "forgetting":
        files = build_forgetting(df, parent, out, source.history)
    else:
        files = build_tables(df, parent, kind, out, source.ranks, versus)
    if log:
        log_outputs(experiment, parent, kind, files)
    return files


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="harness report", description="Paper figures and tables from MLflow runs or archives.")
    p.add_argument("kind", choices=KINDS)
    p.add_argument("--experiment", help="MLflow experiment of the sweep (required unless --archive)")
    p.add_argument("--archive", nargs="+", metavar="DIR", help="read archive folder(s) (harness archive) instead of MLflow")
    p.add_argument("--out", help="output folder (default results/report/<experiment>)")
    p.add_argument("--uri", help="tracking URI (default $MLFLOW_TRACKING_URI or sqlite:///mlruns.db)")
    p.add_argument("--no-log", action="store_true", help="do not log the outputs to MLflow")
    p.add_argument("--versus", action="append", default=[], metavar="ROW",
                   help="table2/ablation: also test every row against this row, e.g. --versus method=finetune+async")
    args = p.parse_args(argv)
    if not args.experiment and not args.archive:
        p.error("--experiment is required (or read archives with --archive DIR ...)")
    for path in build(args.kind, args.experiment, args.out, log=not args.no_log, uri=args.uri, archive=args.archive,
                      versus=args.versus):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
