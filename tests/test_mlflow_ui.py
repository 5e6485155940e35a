"""The sweep's runs, as the MLflow UI renders them in a real headless Chromium (rendered DOM + screenshot).

Uses the session's ``mlflow server`` (sqlite backend on 127.0.0.1) holding the Slurm sweep of
tests/test_slurm_sweep.py (submitted once per session); the screenshot is kept as a CI artifact.
"""

from __future__ import annotations

import subprocess

import numpy as np
import pytest
from mlflow import MlflowClient
from PIL import Image
from services import REPO

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
