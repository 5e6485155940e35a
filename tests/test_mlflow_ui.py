"""The sweep's runs, as the MLflow UI renders them in a real headless Chromium (rendered DOM + screenshot).

Uses the session's ``mlflow server`` (sqlite backend on 127.0.0.1) holding the Slurm sweep of
tests/test_slurm_sweep.py (submitted once per session) and sweeps/ci-encoders.yaml (run here with
``harness sweep --local``): the runs table shows the numeric ``encoder.params`` column and the chart view
plots test HR@20 against it (scripts/ui_chart.py: shared view + Playwright on the system Chromium).
Screenshots are kept as CI artifacts in .ci/artifacts/.
"""

from __future__ import annotations

import itertools
import subprocess
import sys
from types import SimpleNamespace

import numpy as np
import pytest
from mlflow import MlflowClient
from PIL import Image
from services import REPO, VENV_BIN, base_env

sys.path.insert(0, str(REPO / "scripts"))
import ui_chart as UI  # noqa: E402  (scripts/ui_chart.py)

pytest_plugins = ["services"]  # fixtures: slurm, mlflow_server, ci_sweep
pytestmark = pytest.mark.services
ARTIFACTS = REPO / ".ci" / "artifacts"


def shoot(url: str, out) -> str:
    """Screenshot ``url`` to ``out`` and return the rendered DOM (scripts/ui_shot.sh)."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    subprocess.run(["bash", str(REPO / "scripts" / "ui_shot.sh"), url, str(out)], check=True, timeout=300)
    return out.with_name(out.name + ".html").read_text()


def test_sweep_runs_appear_in_the_rendered_runs_page(ci_sweep, mlflow_server):
    client = MlflowClient(mlflow_server.url)
    exp = client.get_experiment_by_name("ci")
    runs = client.search_runs([exp.experiment_id])
    names = sorted(r.info.run_name for r in runs)
    assert len(names) == 5 and "sweep:ci" in names  # parent + 4 cells
    # sorted by name the table is flat (the default start-time order nests children under a collapsed parent)
    url = f"{mlflow_server.url}/#/experiments/{exp.experiment_id}/runs?orderByKey=tags.%60mlflow.runName%60&orderByAsc=true"
    out = ARTIFACTS / "mlflow-ui-sweep-runs.png"
    dom = shoot(url, out)
    missing = [n for n in names if n not in dom]
    assert not missing, f"run names not rendered: {missing}"
    assert "<strong>5</strong> matching runs" in dom
    with Image.open(out) as img:
        assert img.size == (1400, 900)
        assert len(np.unique(np.asarray(img.convert("L")))) > 20  # a rendered page, not a blank canvas


# ------------------------------------------------------------------ encoder size in the runs and chart views
# sweeps/ci-encoders.yaml (ID only + two tiny random-weight text encoders x 2 seeds, ML-100K, 1 epoch) logged to
# the session's server; scripts/ui_chart.py stores the "encoder-size" shared view (runs table with the
# encoder.params column, chart view with a scatter of test/hr_at_20 against encoder.params) and drives Chromium.

ENC_SWEEP = REPO / "sweeps" / "ci-encoders.yaml"


@pytest.fixture(scope="module")
def encoder_sweep(mlflow_server, data_dir, session_cache, tmp_path_factory):
    """``harness sweep sweeps/ci-encoders.yaml --local -j 2`` against the MLflow server, and the shared view."""
    logs = tmp_path_factory.mktemp("ci-encoders-logs")
    env = {**base_env(data_dir, session_cache), "MLFLOW_TRACKING_URI": mlflow_server.url}
    proc = subprocess.run([str(VENV_BIN / "harness"), "sweep", str(ENC_SWEEP), "--local", "-j", "2", "--logs", str(logs)],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=1800, check=False)
    assert proc.returncode == 0, f"sweep failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    client = MlflowClient(mlflow_server.url)
    exp = client.get_experiment_by_name("ci-encoders")
    cells = [r for r in client.search_runs([exp.experiment_id]) if r.data.tags.get("harness.role") == "cell"]
    UI.share_view(client, exp.experiment_id)
    return SimpleNamespace(exp=exp.experiment_id, cells=cells, url=mlflow_server.url)


@pytest.fixture(scope="module")
def chromium_browser():
    with UI.browser() as b:
        yield b


def encoder_params(cells) -> dict[str, float]:
    """Axis label (id / tiny-bert / tiny-llama) -> the encoder.params metric its runs logged (one value each)."""
    out: dict[str, set] = {}
    for run in cells:
        out.setdefault(run.data.tags["harness.axis.encoder"], set()).add(run.data.metrics[UI.X_METRIC])
    assert all(len(v) == 1 for v in out.values()), out
    return {k: v.pop() for k, v in out.items()}


def save(page, name: str):
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / name))
    with Image.open(ARTIFACTS / name) as img:
        assert len(np.unique(np.asarray(img.convert("L")))) > 20  # a rendered page, not a blank canvas


def test_runs_view_shows_the_encoder_size_column(encoder_sweep, chromium_browser):
    cells = encoder_sweep.cells
    assert len(cells) == 5 and {r.info.status for r in cells} == {"FINISHED"}
    params = encoder_params(cells)
    assert params["id"] == 0 and params["tiny-bert"] > 0 and params["tiny-llama"] > 0 and params["tiny-bert"] != params["tiny-llama"]
    page = UI.open_view(chromium_browser, UI.view_url(encoder_sweep.url, encoder_sweep.exp, "TABLE"))
    table = UI.read_table(page, len(cells))
    save(page, "mlflow-ui-encoder-size-runs.png")
    x, y, enc = UI.col("metrics", UI.X_METRIC), UI.col("metrics", UI.Y_METRIC), UI.col("tags", UI.ENCODER_TAG)
    assert table["headers"][x] == "encoder.params" and table["headers"][y] == "test/hr_at_20"
    rows = table["rows"]
    assert len(rows) == len(cells)
    # the column holds the logged numbers (integers, not "1.0M" or "-"), sorted ascending as the view asks
    assert [int(r[x]) for r in rows] == sorted(int(r.data.metrics[UI.X_METRIC]) for r in cells)
    for row in rows:  # each row's encoder name and HR@20 belong to a run with that parameter count
        name = row[enc] if row[enc] != "-" else "id"
        assert int(row[x]) == params[name]
        assert any(r.data.tags["harness.axis.encoder"] == name and float(row[y]) == pytest.approx(r.data.metrics[UI.Y_METRIC], rel=1e-9)
                   for r in cells), row


def test_chart_view_plots_hr_at_20_against_encoder_params(encoder_sweep, chromium_browser):
    cells = encoder_sweep.cells
    page = UI.open_view(chromium_browser, UI.view_url(encoder_sweep.url, encoder_sweep.exp, "CHART"))
    chart = UI.read_scatter(page, len(cells))
    save(page, "mlflow-ui-encoder-size-chart.png")
    assert (chart["xtitle"], chart["ytitle"]) == ("encoder.params", "test/hr_at_20")
    assert (chart["xtype"], chart["ytype"]) == ("linear", "linear")  # numbers: a category axis would mean strings
    assert len(chart["points"]) == len(cells)
    # tick labels are numbers, evenly spaced on a linear axis: value -> pixel, fitted on the ticks
    fits = []
    for ticks in (chart["xticks"], chart["yticks"]):
        assert len(ticks) >= 3, ticks
        values, pixels = np.array([UI.tick_value(t) for t, _ in ticks]), np.array([p for _, p in ticks])
        slope, offset = np.polyfit(values, pixels, 1)
        assert np.abs(slope * values + offset - pixels).max() < 1.5, ticks
        fits.append((slope, offset))
    # every run is drawn where its (encoder.params, test/hr_at_20) falls on those axes
    want = np.array([[fits[0][0] * r.data.metrics[UI.X_METRIC] + fits[0][1],
                      fits[1][0] * r.data.metrics[UI.Y_METRIC] + fits[1][1]] for r in cells])
    got = np.array(chart["points"])
    error = min(np.abs(want[list(p)] - got).max() for p in itertools.permutations(range(len(cells))))
    assert error < 2.0, f"markers {got.tolist()} vs expected {want.tolist()}"
