"""A shared MLflow server behind MLflow's basic-auth app (docs/SWEEPS.md): anonymous or wrongly authenticated
writes are refused, and a sweep run with a user's credentials logs every cell.

The server is real (``scripts/mlflow_up.sh`` with ``MLF_AUTH=1``: ``mlflow server --app-name basic-auth``), started
once for this module next to the session's plain server and stopped by PID.
"""

from __future__ import annotations

import json
import secrets
import subprocess
import sys
import urllib.error
import urllib.request
from base64 import b64encode

import pytest
from mlflow import MlflowClient
from mlflow.server import get_app_client
from services import REPO, base_env, start_mlflow, stop_mlflow

from harness.tracking import mlflow_key

pytest_plugins = ["services"]
pytestmark = pytest.mark.services


@pytest.fixture(scope="module")
def auth_server(tmp_path_factory, data_dir, session_cache):
    server = start_mlflow(tmp_path_factory.mktemp("mlflow-auth"), base_env(data_dir, session_cache),
                          name="mlflow-auth", admin_password=secrets.token_urlsafe(12))
    yield server
    stop_mlflow("mlflow-auth")


def create_experiment(url: str, name: str, auth: tuple[str, str] | None) -> int:
    """POST experiments/create with optional HTTP basic credentials; returns the HTTP status."""
    request = urllib.request.Request(f"{url}/api/2.0/mlflow/experiments/create", data=json.dumps({"name": name}).encode(),
                                     headers={"Content-Type": "application/json"}, method="POST")
    if auth is not None:
        request.add_header("Authorization", "Basic " + b64encode(f"{auth[0]}:{auth[1]}".encode()).decode())
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


def as_user(monkeypatch, user: str, password: str) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", user)
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", password)


def test_unauthenticated_writes_are_refused(auth_server, monkeypatch):
    admin, password = auth_server.admin
    assert create_experiment(auth_server.url, "anonymous", None) == 401
    assert create_experiment(auth_server.url, "wrong-password", (admin, password + "x")) == 401
    assert create_experiment(auth_server.url, "by-admin", (admin, password)) == 200
    as_user(monkeypatch, admin, password)
    names = {e.name for e in MlflowClient(auth_server.url).search_experiments()}
    assert "by-admin" in names and not names & {"anonymous", "wrong-password"}


def test_sweep_with_a_users_credentials_logs_every_cell(auth_server, monkeypatch, data_dir, session_cache, tmp_path):
    as_user(monkeypatch, *auth_server.admin)
    user, password = "researcher", secrets.token_urlsafe(12)
    get_app_client("basic-auth", tracking_uri=auth_server.url).create_user(username=user, password=password)

    env = {**base_env(data_dir, session_cache), "MLFLOW_TRACKING_URI": auth_server.url,
           "MLFLOW_TRACKING_USERNAME": user, "MLFLOW_TRACKING_PASSWORD": password}
    proc = subprocess.run([sys.executable, "-m", "harness.sweep", str(REPO / "sweeps" / "ci.yaml"), "--local", "-j", "2",
                           "--logs", str(tmp_path / "logs")], cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]

    as_user(monkeypatch, user, password)
    client = MlflowClient(auth_server.url)
    experiment = client.get_experiment_by_name("ci")
    runs = client.search_runs([experiment.experiment_id])
    cells = [r for r in runs if r.data.tags.get("harness.role") == "cell"]
    assert len(cells) == 4 and all(r.info.status == "FINISHED" for r in runs)
    assert all(mlflow_key("test/hr@20") in r.data.metrics for r in cells)
