"""Paired significance of every table row vs a reference row: over test targets (rank counts,
:mod:`harness.stats`) and over seeds, Holm-corrected across the table's rows."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from harness import run_schema as schema
from harness import stats
from harness.report.columns import NOT_ROW_AXES, backbone, is_kdsr, metric, seed_of, tag

SIG_METRICS = ("hr@20", "mrr@20")
ALPHA = 0.05


def reference_labels(reference: str, rows_axes: list[str]) -> dict[str, str]:
    """``"encoder=minilm-l6, kdsr.enabled=false"`` -> ``{axis: label}``; every axis must be a row axis."""
    parts = [part.strip() for part in reference.split(",") if part.strip()]
    labels = dict(part.split("=", 1) for part in parts if "=" in part)
    if not parts or len(labels) != len(parts) or any(a not in rows_axes for a in labels):
        raise ValueError(f"--versus {reference!r}: expected AXIS=LABEL[, AXIS=LABEL] over the table's row axes "
                         f"({', '.join(rows_axes) or 'none'})")
    return labels


def significance(df: pd.DataFrame, axes: list[str], ranks=None, reference: str | None = None) -> pd.DataFrame:
    """Every row of a grid table vs the best non-KDSR row of the same backbone and dataset (by mean test HR@20),
    or, with ``reference`` (row labels such as ``method=finetune+async`` or ``encoder=minilm-l6``), vs the row
    with those labels and this row's labels on every other row axis (MPNet at dim 64 + KDSR vs MiniLM at dim 64
    + KDSR); naming every row axis picks one row for all.

    Long table: one record per (row, dataset, metric) with the effect (row - reference, points), the 95% CI
    and p-value over targets (Wilcoxon signed-rank; t-test too) and the p-value and CI over seeds (paired t),
    Holm-adjusted p-values across the table's rows (per metric and test), and a ``note`` for what could not
    be tested (no rank counts, < 2 shared seeds, no non-KDSR reference, misaligned targets).
    """
    rows_axes = [a for a in axes if a not in NOT_ROW_AXES]
    info = pd.DataFrame({a: tag(df, schema.axis_tag(a), "-") for a in rows_axes}, index=df.index)
    info["dataset"], info["backbone"] = tag(df, schema.TAG_DATASET), backbone(df)
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

    fixed = reference_labels(reference, rows_axes) if reference else {}
    records = []
    for grp in groups:
        same = [o for o in groups if o["dataset"] == grp["dataset"] and o["backbone"] == grp["backbone"]]
        if reference:  # the row with the reference's labels, every other row axis as in this row
            want = {**grp["label"], **fixed}
            peers = [o for o in same if all(o["label"][a] == want[a] for a in rows_axes)]
        else:
            peers = [o for o in same if not o["kdsr"]]
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
        caption = (f"Each row vs the row with `{versus}` and its own labels on the other row axes, same backbone and "
                   f"dataset (`ref`)." + CAPTION[CAPTION.index(")") + 2:])
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


