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
    for png in ("figure4.png", "cost.png"):
        with Image.open(out / png) as img:
            assert img.size[0] > 500 and len(np.unique(np.asarray(img.convert("L")))) > 20
    parent = next(r for r in store["client"].search_runs([store["exp"]]) if r.data.tags.get("harness.role") == "sweep")
    logged = {Path(a.path).name for a in store["client"].list_artifacts(parent.info.run_id, "report/figure4")}
    assert logged == {"figure4.png", "figure4.csv", "cost.png", "cost.csv"}


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
