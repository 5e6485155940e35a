"""``harness sweep --local`` on a small real sweep, then ``harness report`` read back from MLflow.

sweeps/ci-encoders.yaml: ID only (1 seed) vs two tiny random-weight text encoders (2 seeds) on ML-100K,
one epoch each (5 real ``harness.train.run`` cells, 2 processes at a time, sqlite store). The
report numbers are checked against the metrics logged in MLflow, recomputed here by hand.
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient
from PIL import Image

import encoders
from harness import report as R
from harness import sweep as S
from harness.features import feature_dir

REPO = Path(__file__).resolve().parents[1]
FILE = REPO / "sweeps" / "ci-encoders.yaml"
HR20, MRR20, HR5 = "test/hr_at_20", "test/mrr_at_20", "test/hr_at_5"


@pytest.fixture(scope="module")
def store(tmp_path_factory, session_cache, data_dir):
    """Run the sweep once for this module; yields (client, experiment id, tmp folder, first exit code, output)."""
    tmp = tmp_path_factory.mktemp("report")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp}/mlflow.db")
        mp.setenv("HARNESS_CACHE_DIR", str(session_cache))
        mp.setenv("HARNESS_DATA_DIR", str(data_dir))
        mp.setenv("MLFLOW_DISABLE_TELEMETRY", "true")
        rc = S.main([str(FILE), "--local", "-j", "2", "--logs", str(tmp / "logs")])
        client = MlflowClient(f"sqlite:///{tmp}/mlflow.db")
        yield {"client": client, "exp": client.get_experiment_by_name("ci-encoders").experiment_id, "tmp": tmp, "rc": rc}
    mlflow.set_tracking_uri(None)  # harness report sets the global URI; leave none behind for other modules


def cell_runs(store) -> list:
    return [r for r in store["client"].search_runs([store["exp"]]) if r.data.tags.get("harness.role") == "cell"]


def by_encoder(store) -> dict[str, list]:
    out: dict[str, list] = {}
    for run in cell_runs(store):
        out.setdefault(run.data.tags["harness.axis.encoder"], []).append(run)
    return out


def test_local_sweep_runs_every_cell_under_one_parent(store):
    assert store["rc"] == 0
    runs = store["client"].search_runs([store["exp"]])
    parents = [r for r in runs if r.data.tags.get("harness.role") == "sweep"]
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    cells = cell_runs(store)
    assert len(cells) == 5 and {r.info.status for r in cells} == {"FINISHED"}
    assert {r.data.tags["mlflow.parentRunId"] for r in cells} == {parents[0].info.run_id}
    assert {r.data.tags["harness.cell_key"] for r in cells} == {c.key for c in S.load_sweep(FILE).cells()}


def test_features_are_encoded_once_before_the_cells(store, session_cache):
    runs = by_encoder(store)
    first_start = min(r.info.start_time for r in cell_runs(store)) / 1000
    for name in ("tiny-bert", "tiny-llama"):
        manifest = feature_dir("ml-100k", name, "text", session_cache) / "manifest.json"
        assert manifest.stat().st_mtime < first_start  # written by the runner's pre-encode step
        seconds = json.loads(manifest.read_text())["encode_seconds_all_runs"]  # every chunk's encode seconds
        assert seconds > 0
        for run in runs[name]:
            assert run.data.tags["harness.encoder_params"] == str(encoders.get_info(name).params)
            assert float(run.data.tags["harness.encode_seconds"]) == pytest.approx(seconds, rel=1e-5)
            assert run.data.tags["harness.modality"] == "text"
    logs = sorted((store["tmp"] / "logs").glob("cell-*.log"))
    assert len(logs) == 5 and not [p.name for p in logs if "encode: wrote" in p.read_text()]


def test_rerun_skips_finished_cells(store, capsys):
    before = {r.info.run_id for r in store["client"].search_runs([store["exp"]])}
    assert S.main([str(FILE), "--local", "-j", "2", "--logs", str(store["tmp"] / "logs2")]) == 0
    assert "ci-encoders: 5 cells, 0 to run" in capsys.readouterr().out
    assert {r.info.run_id for r in store["client"].search_runs([store["exp"]])} == before


def expected(runs: list, key: str) -> tuple[float, float]:
    values = [r.data.metrics[key] for r in runs]
    return statistics.mean(values), statistics.stdev(values)


def test_figure4_report_matches_the_logged_metrics(store):
    out = store["tmp"] / "figure4"
    assert R.main(["figure4", "--experiment", "ci-encoders", "--out", str(out)]) == 0
    runs = by_encoder(store)
    points = pd.read_csv(out / "figure4.csv").set_index("encoder")
    assert sorted(points.index) == ["tiny-bert", "tiny-llama"]  # ID-only runs are the baseline, not a point
    for name in ("tiny-bert", "tiny-llama"):
        row = points.loc[name]
        assert (row["dataset"], row["modality"], row["dim"], row["n"]) == ("ml-100k", "text", 16, 2)
        assert row["params"] == encoders.get_info(name).params
        for metric, key in (("hr@20", HR20), ("mrr@20", MRR20)):
            mean, std = expected(runs[name], key)
            assert row[f"{metric}_mean"] == pytest.approx(mean, rel=1e-9) and row[f"{metric}_std"] == pytest.approx(std, rel=1e-9)
    cost = pd.read_csv(out / "cost.csv").set_index("encoder")
    base = statistics.mean(r.data.metrics[HR20] for r in runs["id"])
    for name in ("tiny-bert", "tiny-llama"):
        assert cost.loc[name, "gain_hr@20"] == pytest.approx(expected(runs[name], HR20)[0] - base, rel=1e-9, abs=1e-12)
    table = (out / "figure4.md").read_text()  # the same points as a table: ID only, then encoders by size
    cell = {name: " / ".join("{:.2f} ± {:.2f}".format(*(100 * v for v in expected(rs, key))) for key in (HR20, MRR20))
            + f" (n={len(rs)})" for name, rs in runs.items() if name != "id"}
    cell["id"] = " / ".join(f"{100 * runs['id'][0].data.metrics[key]:.2f}" for key in (HR20, MRR20)) + " (n=1)"  # one seed
    by_size = [n for _, n in sorted((encoders.get_info(n).params, n) for n in ("tiny-bert", "tiny-llama"))]
    head = next(line for line in table.splitlines() if line.startswith("| dim |"))
    assert [c.split(" (")[0] for c in head.strip("| ").split(" | ")[3:]] == by_size
    row = next(line for line in table.splitlines() if line.startswith("| 16 |"))
    assert row.strip("| ").split(" | ")[2:] == [cell["id"]] + [cell[n] for n in by_size], row
    for png in ("figure4.png", "cost.png"):
        with Image.open(out / png) as img:
            assert img.size[0] > 500 and len(np.unique(np.asarray(img.convert("L")))) > 20
    parent = next(r for r in store["client"].search_runs([store["exp"]]) if r.data.tags.get("harness.role") == "sweep")
    logged = {Path(a.path).name for a in store["client"].list_artifacts(parent.info.run_id, "report/figure4")}
    assert logged == {"figure4.png", "figure4.csv", "figure4.md", "cost.png", "cost.csv"}


@pytest.mark.parametrize("kind", ["table2", "ablation"])
def test_tables_report_mean_and_std_over_seeds(store, kind):
    out = store["tmp"] / kind
    assert R.main([kind, "--experiment", "ci-encoders", "--out", str(out)]) == 0
    runs = by_encoder(store)
    table = pd.read_csv(out / f"{kind}-0.csv")
    assert list(table.columns) == ["encoder", "dataset", "metric", "mean", "std", "n"]
    assert len(table) == 3 * 4 and dict(zip(table["encoder"], table["n"])) == {"id": 1, "tiny-bert": 2, "tiny-llama": 2}
    for row in table.itertuples():
        values = [r.data.metrics[R.mlflow_key(f"test/{row.metric}")] for r in runs[row.encoder]]
        assert row.mean == pytest.approx(statistics.mean(values), rel=1e-9)
        if row.n > 1:
            assert row.std == pytest.approx(statistics.stdev(values), rel=1e-9)
        else:
            assert pd.isna(row.std)
    markdown = (out / f"{kind}.md").read_text()
    mean, std = expected(runs["tiny-bert"], HR5)
    assert f"| tiny-bert | {mean * 100:.2f} ± {std * 100:.2f} |" in markdown
    assert "| encoder | ml-100k HR@5 | ml-100k MRR@5 | ml-100k HR@20 | ml-100k MRR@20 |" in markdown
    assert f"| id | {runs['id'][0].data.metrics[HR5] * 100:.2f} (n=1) |" in markdown


def test_forgetting_report_matches_the_logged_histories(store):
    out = store["tmp"] / "forgetting"
    assert R.main(["forgetting", "--experiment", "ci-encoders", "--out", str(out)]) == 0
    curves = pd.read_csv(out / "forgetting.csv")
    monitored = curves[curves["metric"].str.startswith("monitor/")]
    # fine-tuned text tables are monitored without KDSR; ID-only runs have no modality table to monitor
    assert set(monitored["label"]) == {"encoder=tiny-bert", "encoder=tiny-llama"}
    assert set(curves["metric"]) == {"monitor/pearson_text", "monitor/pearson_id_text", "valid/ndcg_at_10"}
    assert set(curves[curves["metric"] == "valid/ndcg_at_10"]["label"]) == {"encoder=id", "encoder=tiny-bert", "encoder=tiny-llama"}
    runs, client = by_encoder(store), store["client"]
    for row in curves.itertuples():
        history = [client.get_metric_history(r.info.run_id, row.metric) for r in runs[row.label.split("=")[1]]]
        values = [m.value for h in history for m in h if m.step == row.epoch]
        assert row.n == len(values) and row.mean == pytest.approx(statistics.mean(values), rel=1e-9)
        if row.n > 1:
            assert row.std == pytest.approx(statistics.stdev(values), rel=1e-9, abs=1e-12)
    with Image.open(out / "forgetting.png") as img:
        assert img.size[0] > 500 and len(np.unique(np.asarray(img.convert("L")))) > 20
    parent = next(r for r in client.search_runs([store["exp"]]) if r.data.tags.get("harness.role") == "sweep")
    assert {Path(a.path).name for a in client.list_artifacts(parent.info.run_id, "report/forgetting")} == {"forgetting.png", "forgetting.csv"}


def test_report_errors_are_clear(store):
    with pytest.raises(LookupError, match="no MLflow experiment 'nope'"):
        R.build("figure4", "nope", store["tmp"] / "x")
    with pytest.raises(ValueError, match="unknown report 'figure5'; valid: figure4, table2, ablation, forgetting"):
        R.build("figure5", "ci-encoders", store["tmp"] / "x")


def test_summary_helpers_by_hand():
    mean, std, n = R.summarize(pd.Series([0.1, 0.2, 0.6]))
    assert (mean, n) == (pytest.approx(0.3), 3) and std == pytest.approx(0.264575131, rel=1e-8)
    assert R.fmt(0.3, 0.264575131, 3) == "30.00 ± 26.46"
    assert R.fmt(0.125, float("nan"), 1) == "12.50 (n=1)"


def test_figure4_ticks_name_every_encoder_on_every_panel():
    """The panels share one x axis: a panel where an encoder has no point yet still names its tick."""
    from harness.report.figures import draw_figure4

    rows = [("beauty", "minilm-l6", 22_713_216), ("beauty", "mpnet-base", 109_486_464), ("ml-1m", "minilm-l6", 22_713_216)]
    points = pd.DataFrame([dict(dataset=d, modality="text", encoder=e, params=p, dim=64, method="fine-tuned", n=1,
                                **{"hr@20_mean": 0.1, "hr@20_std": np.nan, "mrr@20_mean": 0.03, "mrr@20_std": np.nan})
                           for d, e, p in rows])
    fig = draw_figure4(points, points.iloc[:0])
    fig.canvas.draw()
    for ax in fig.axes:
        labels = [t.get_text() for t in ax.get_xticklabels()]
        assert labels == ["minilm-l6\n22.7 M", "mpnet-base\n109.5 M"], labels


# ------------------------------------------------------------------ archives of the real sweep (harness.archive)


@pytest.mark.parametrize("kind", ["table2", "forgetting"])
def test_reports_from_an_exported_archive_equal_the_mlflow_reports(store, kind, tmp_path):
    from harness import archive as A

    uri = f"sqlite:///{store['tmp']}/mlflow.db"
    folder = A.export("ci-encoders", tmp_path / "archive", uri=uri)
    assert len(list(folder.glob("*.json"))) == 6  # 5 cells + sweep.json
    ours, theirs = tmp_path / "mlflow", tmp_path / "from-archive"
    assert R.main([kind, "--experiment", "ci-encoders", "--out", str(ours), "--no-log", "--uri", uri]) == 0
    assert R.main([kind, "--archive", str(folder), "--out", str(theirs)]) == 0
    texts = sorted(p.name for p in ours.iterdir() if p.suffix in (".md", ".csv"))
    assert texts and texts == sorted(p.name for p in theirs.iterdir() if p.suffix in (".md", ".csv"))
    for name in texts:
        assert (theirs / name).read_text() == (ours / name).read_text(), name
    if kind == "table2":
        sig = pd.read_csv(ours / "table2-significance.csv")
        assert len(sig) == 3 * 2 and (sig["is_reference"]).sum() == 2  # 3 encoders x {HR@20, MRR@20}; one reference row


# ---------------------------------------------------- significance on constructed runs (no training, seconds)

N_TARGETS = 600
DIGEST = "ml-100k:paper:all"
# row -> (backbone, kdsr tag, holistic, dissected, above ~ U[0, hi)): lower hi = better ranks
METHODS = {
    ("sasrec", "id"): ("false", True, True, 140),
    ("sasrec", "finetune"): ("false", True, True, 105),
    ("sasrec", "async"): ("true", False, False, 100),  # KDSR schedule only, both losses off: a non-KDSR control
    ("sasrec", "kdsr"): ("true", True, False, 50),  # the best row, but KDSR: never the reference
    ("gru4rec", "kdsr"): ("true", True, True, 90),  # no non-KDSR gru4rec row: nothing to compare with
}
SEEDS = (1, 2, 3)
NO_RANKS = {("sasrec", "id", 3)}
AXES = "dataset,model,method,seed"


def constructed_ranks(model: str, how: str, seed: int):
    hi = METHODS[(model, how)][3]
    rng = np.random.default_rng([seed, hi, len(model)])
    return rng.integers(0, hi, N_TARGETS), (rng.random(N_TARGETS) < 0.1).astype(np.int64)


def log_constructed(log, model: str, how: str, seed: int) -> None:
    from harness.stats import target_values

    kdsr, holistic, dissected, _ = METHODS[(model, how)]
    log.set_tags({"harness.role": "cell", "harness.cell_key": f"{model}-{how}-{seed}", "harness.dataset": "ml-100k",
                  "harness.model": model, "harness.seed": seed, "harness.kdsr": kdsr, "harness.grids": "0",
                  **{f"harness.axis.{a}": v for a, v in (("dataset", "ml-100k"), ("model", model), ("method", how), ("seed", seed))}})
    log.log_params({"model": {"name": model}, "train": {"seed": seed}, "kdsr": {"enabled": kdsr == "true", "holistic": holistic,
                                                                               "dissected": dissected}})
    above, tied = constructed_ranks(model, how, seed)
    log.log_metrics({f"test/{m}": float(target_values(above, tied, m).mean()) for m in R.TABLE_METRICS}, step=0)
    if (model, how, seed) not in NO_RANKS:
        log.log_ranks("test", above, tied, DIGEST)


@pytest.fixture(scope="module")
def constructed(tmp_path_factory):
    """The constructed runs twice: in a sqlite MLflow store (children of a sweep parent) and as an ArchiveLogger archive."""
    from harness import archive as A
    from harness.config import TrackingConfig
    from harness.tracking import MLflowLogger

    tmp = tmp_path_factory.mktemp("constructed")
    uri = f"sqlite:///{tmp}/mlflow.db"
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(tmp)
        mp.setenv("MLFLOW_DISABLE_TELEMETRY", "true")
        client = MlflowClient(uri)
        exp = client.create_experiment("constructed")
        tags = {"harness.role": "sweep", "harness.axes.0": AXES, "harness.sweep_id": "c0"}
        parent = client.create_run(exp, tags=tags, run_name="sweep:constructed").info.run_id
        client.set_terminated(parent)
        folder = tmp / "archive" / "constructed"
        A.write_sweep(folder, "constructed", client.get_run(parent).data.tags, parent)
        for (model, how) in METHODS:
            for seed in SEEDS:
                run = MLflowLogger(TrackingConfig(uri=uri, experiment_id=exp, parent_run_id=parent, run_name=f"{model}-{how}-{seed}"))
                log_constructed(run, model, how, seed)
                run.finish()
                arch = A.ArchiveLogger(folder, run_name=f"{model}-{how}-{seed}")
                arch.run_id, arch.start_time = run.run_id, client.get_run(run.run_id).info.start_time  # the same run, twice
                log_constructed(arch, model, how, seed)
                arch.finish()
        yield {"uri": uri, "folder": folder, "tmp": tmp}
    mlflow.set_tracking_uri(None)


def seed_values(model, how, metric):
    from harness.stats import target_values

    return {s: target_values(*constructed_ranks(model, how, s), metric) for s in SEEDS}


def test_table2_significance_from_constructed_ranks(constructed):
    from scipy import stats as sps

    out = constructed["tmp"] / "mlflow-report"
    assert R.main(["table2", "--experiment", "constructed", "--uri", constructed["uri"], "--out", str(out), "--no-log"]) == 0
    sig = pd.read_csv(out / "table2-significance.csv")
    sig["note"] = sig["note"].fillna("")
    assert {"effect", "ci_low", "ci_high", "p_targets", "p_seeds", "p_targets_holm", "p_seeds_holm", "note"} <= set(sig.columns)
    rows = {(r.model, r.method, r.metric): r for r in sig.itertuples()}
    ref = "model=sasrec, method=async"  # best non-KDSR sasrec row (the KDSR row is better, the async control counts as non-KDSR)
    assert {r.reference for r in sig.itertuples() if r.model == "sasrec"} == {ref}
    assert rows[("sasrec", "async", "hr@20")].is_reference and rows[("sasrec", "async", "hr@20")].note == "reference"
    assert rows[("sasrec", "async", "hr@20")].n_seeds == 3 and np.isnan(rows[("sasrec", "async", "hr@20")].p_targets)
    assert rows[("gru4rec", "kdsr", "hr@20")].note.startswith("no non-KDSR row") and np.isnan(rows[("gru4rec", "kdsr", "hr@20")].p_seeds)
    for metric in ("hr@20", "mrr@20"):
        expected = {}
        for how in ("finetune", "kdsr", "id"):
            va, vb = seed_values("sasrec", how, metric), seed_values("sasrec", "async", metric)
            diff = np.mean([va[s] for s in SEEDS], axis=0) - np.mean([vb[s] for s in SEEDS], axis=0)
            per_seed = [va[s].mean() - vb[s].mean() for s in SEEDS]
            r = rows[("sasrec", how, metric)]
            assert r.n_seeds == 3 and r.p_seeds == pytest.approx(sps.ttest_1samp(per_seed, 0).pvalue, rel=1e-9)
            lo, hi = sps.t.interval(0.95, 2, loc=np.mean(per_seed), scale=sps.sem(per_seed))
            assert (r.seed_ci_low, r.seed_ci_high) == (pytest.approx(100 * lo, rel=1e-9), pytest.approx(100 * hi, rel=1e-9))
            if how == "id":  # seed 3 logged no rank counts: no test over targets, a note, the effect from the seeds
                assert np.isnan(r.p_targets) and "no rank counts" in r.note and r.effect_over == "seeds"
                assert r.effect == pytest.approx(100 * np.mean(per_seed), rel=1e-9)
                continue
            expected[how] = sps.wilcoxon(diff).pvalue
            assert r.n_targets == N_TARGETS and r.effect_over == "targets" and r.note == ""
            assert r.effect == pytest.approx(100 * diff.mean(), rel=1e-9)
            assert r.p_targets == pytest.approx(expected[how], rel=1e-9)
            assert r.p_targets_t == pytest.approx(sps.ttest_rel(diff + 0, np.zeros_like(diff)).pvalue, rel=1e-9)
            lo, hi = sps.t.interval(0.95, N_TARGETS - 1, loc=diff.mean(), scale=sps.sem(diff))
            assert r.ci_low < 100 * diff.mean() < r.ci_high and r.ci_low == pytest.approx(100 * lo, rel=1e-9)
        # Holm over the table's tested rows (finetune, kdsr; id untested over targets): the smaller p times 2
        small, large = sorted(expected.values())
        holm = {k: (2 * small if v == small else max(2 * small, large)) for k, v in expected.items()}
        for how, p in holm.items():
            assert rows[("sasrec", how, metric)].p_targets_holm == pytest.approx(min(p, 1.0), rel=1e-9)
            assert rows[("sasrec", how, metric)].p_targets_significant == (p < 0.05)
        assert rows[("sasrec", "kdsr", metric)].p_targets_holm < 1e-6 and rows[("sasrec", "kdsr", metric)].effect > 0
    markdown = (out / "table2-significance.md").read_text()
    assert "Holm-adjusted across the rows of this table" in markdown and "* = p < 0.05 after Holm" in markdown
    kdsr_line = next(line for line in markdown.splitlines() if line.startswith("| sasrec | kdsr | ml-100k |"))
    assert kdsr_line.count(" *") >= 2 and f"| {ref} | 3 |" in kdsr_line
    assert f"| sasrec | async | ml-100k | {ref} | 3 | ref |  |  |  | ref |" in markdown
    assert "- model=sasrec, method=id on ml-100k: no rank counts (ranks/test.npz) for some runs" in markdown


def test_constructed_reports_from_archives_equal_mlflow_without_importing_mlflow(constructed):
    import subprocess
    import sys

    from harness import archive as A

    ours = constructed["tmp"] / "mlflow-tables"
    assert R.main(["table2", "--experiment", "constructed", "--uri", constructed["uri"], "--out", str(ours), "--no-log"]) == 0
    exported = A.export("constructed", constructed["tmp"] / "exported", uri=constructed["uri"])
    for source in (constructed["folder"], exported):  # ArchiveLogger records, and an export of the MLflow runs
        theirs = constructed["tmp"] / f"from-{source.parent.name}"
        code = ("import sys; sys.modules['mlflow'] = None\n"  # any mlflow import fails: archives need none
                "from harness import report\n"
                f"sys.exit(report.main(['table2', '--archive', {str(source)!r}, '--out', {str(theirs)!r}]))")
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr[-3000:]
        names = sorted(p.name for p in ours.iterdir())
        assert names == ["table2-0.csv", "table2-significance.csv", "table2-significance.md", "table2.md"]
        assert sorted(p.name for p in theirs.iterdir()) == names
        for name in names:
            assert (theirs / name).read_text() == (ours / name).read_text(), (source, name)


def test_versus_tests_every_row_against_a_named_row(constructed):
    """``--versus method=finetune``: a second significance table whose reference is that row (here: KDSR vs
    plain fine-tuning instead of vs the best non-KDSR row), with the same statistics."""
    from scipy import stats as sps

    out = constructed["tmp"] / "versus-report"
    assert R.main(["table2", "--archive", str(constructed["folder"]), "--out", str(out),
                   "--versus", "model=sasrec, method=finetune"]) == 0
    sig = pd.read_csv(out / "table2-significance-vs-model_sasrec_method_finetune.csv")
    sasrec = sig[sig["model"] == "sasrec"]
    assert set(sasrec["reference"]) == {"model=sasrec, method=finetune"}
    assert set(sig[sig["model"] == "gru4rec"]["reference"].fillna("")) == {""}  # no such row for that backbone
    r = sasrec[(sasrec["method"] == "kdsr") & (sasrec["metric"] == "hr@20")].iloc[0]
    va, vb = seed_values("sasrec", "kdsr", "hr@20"), seed_values("sasrec", "finetune", "hr@20")
    diff = np.mean([va[s] for s in SEEDS], axis=0) - np.mean([vb[s] for s in SEEDS], axis=0)
    assert r["effect"] == pytest.approx(100 * diff.mean(), rel=1e-9)
    assert r["p_targets"] == pytest.approx(sps.wilcoxon(diff).pvalue, rel=1e-9)
    markdown = (out / "table2-significance-vs-model_sasrec_method_finetune.md").read_text()
    assert "Each row vs the row with `model=sasrec, method=finetune`" in markdown


def test_versus_with_some_axes_keeps_each_rows_other_labels(constructed, capsys):
    """``--versus method=finetune`` names one row axis: each row's reference is the row with that label and the
    row's own model (sasrec rows vs sasrec fine-tuned; gru4rec has no fine-tuned row: untested, not compared
    with sasrec's). An axis that is not a row axis is refused with the valid ones."""
    out = constructed["tmp"] / "versus-partial"
    assert R.main(["table2", "--archive", str(constructed["folder"]), "--out", str(out), "--versus", "method=finetune"]) == 0
    sig = pd.read_csv(out / "table2-significance-vs-method_finetune.csv")
    assert set(sig[sig["model"] == "sasrec"]["reference"]) == {"model=sasrec, method=finetune"}
    gru = sig[sig["model"] == "gru4rec"]
    assert set(gru["reference"].fillna("")) == {""} and gru["p_targets"].isna().all()
    full = pd.read_csv(constructed["tmp"] / "versus-report" / "table2-significance-vs-model_sasrec_method_finetune.csv")
    assert np.allclose(sig["effect"], full["effect"], equal_nan=True)  # same reference, same numbers
    assert R.main(["table2", "--archive", str(constructed["folder"]), "--out", str(out), "--versus", "encoder=x"]) == 2
    assert "--versus 'encoder=x': expected AXIS=LABEL[, AXIS=LABEL] over the table's row axes (model, method)" in capsys.readouterr().err
