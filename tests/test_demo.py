"""The main job (``make demo``) end to end at reduced size: same code path, ML-100K, one epoch."""

from __future__ import annotations

import mlflow

from harness import demo, sweep

REDUCED = ["--set", "dataset.name=ml-100k", "--set", "train.epochs=1", "-j", "2", "--where", "seed=1"]


def _child_runs(uri: str, experiment: str):
    client = mlflow.MlflowClient(uri)
    exp = client.get_experiment_by_name(experiment)
    runs = client.search_runs([exp.experiment_id])
    return [r for r in runs if "mlflow.parentRunId" in r.data.tags]


def test_reduced_demo_logs_runs_plot_and_table_and_reruns_nothing(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert demo.main(REDUCED + ["--out", "out"]) == 0
    printed = capsys.readouterr().out

    spec = sweep.load_sweep(demo.DEFAULT_SWEEP, REDUCED[1:4:2])
    uri = sweep.store_uri(spec)
    children = _child_runs(uri, spec.experiment)
    cells = sweep.select(spec.cells(), ["seed=1"])  # ID, MiniLM and MPNet x fine-tuned / +KDSR
    assert len(children) == len(cells) == 5
    assert sorted(r.data.metrics["encoder.params"] for r in children) == [0, 22713216, 22713216, 109486464, 109486464]
    assert {r.info.status for r in children} == {"FINISHED"}
    assert {r.data.tags["harness.cell_key"] for r in children} == {c.key for c in cells}
    kdsr_runs = [r for r in children if r.data.params["kdsr.enabled"] == "True"]
    assert len(kdsr_runs) == 2 and all("train/holistic" in r.data.metrics for r in kdsr_runs)
    assert {r.data.tags["harness.method"] for r in kdsr_runs} == {"finetune+kdsr"}
    assert all(0.0 < r.data.metrics["test/hr_at_20"] <= 1.0 for r in children)

    plot, table = tmp_path / "out" / "figure4.png", tmp_path / "out" / "table2.md"
    assert plot.stat().st_size > 10_000 and plot.read_bytes()[:4] == b"\x89PNG"
    assert "±" in table.read_text()
    curves = (tmp_path / "out" / "forgetting.csv").read_text()
    assert "kdsr.enabled=true" in curves and "kdsr.enabled=false" in curves  # both methods are monitored
    assert f"mlflow ui --backend-store-uri {uri}" in printed

    # a second run reuses the feature cache and trains nothing new
    assert demo.main(REDUCED + ["--out", "out"]) == 0
    assert "5 cells, 0 to run" in capsys.readouterr().out
    assert len(_child_runs(uri, spec.experiment)) == 5
