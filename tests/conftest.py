"""Shared test settings: where the real datasets are, and an isolated cache per test session."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _data_dir() -> Path:
    env = os.environ.get("HARNESS_DATA_DIR")
    return Path(env) if env else REPO.parent / "shared" / "datasets"


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The real datasets (HARNESS_DATA_DIR). Missing data is a failure, not a skip."""
    path = _data_dir()
    assert path.is_dir(), f"HARNESS_DATA_DIR={path} does not exist; point it at shared/datasets"
    return path


@pytest.fixture(scope="session")
def session_cache(tmp_path_factory) -> Path:
    """One feature/split cache shared by the tests of a session (HARNESS_CACHE_DIR)."""
    return tmp_path_factory.mktemp("harness-cache")


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch, session_cache, data_dir):
    monkeypatch.setenv("HARNESS_DATA_DIR", str(data_dir))
    monkeypatch.setenv("HARNESS_CACHE_DIR", str(session_cache))
    monkeypatch.setenv("MLFLOW_DISABLE_TELEMETRY", "true")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")
