"""Session services for the sweep tests: a real single-node Slurm and a real MLflow server.

Both are brought up by the scripts in ``scripts/`` (Debian packages installed with apt-get when
missing) and stopped by the PIDs those scripts record. Test modules load this file as a plugin
(``pytest_plugins = ["services"]``) so that each session fixture exists once; the starts are
memoised per process as well, so importing the fixtures directly cannot start a service twice.
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPTS = REPO / "scripts"
VENV_BIN = REPO / ".venv" / "bin"
_STARTED: dict[str, object] = {}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def base_env(data_dir: Path, cache_dir: Path) -> dict[str, str]:
    """What a harness process launched by a test needs: our venv first on PATH, data, shared cache, offline."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "MLFLOW_", "HARNESS_"))}
    env.update(PATH=f"{VENV_BIN}:{env.get('PATH', '')}", HARNESS_DATA_DIR=str(data_dir), HARNESS_CACHE_DIR=str(cache_dir),
               MLFLOW_DISABLE_TELEMETRY="true", DO_NOT_TRACK="true", HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1",
               OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    return env


def _script(name: str, env: dict[str, str], timeout: float) -> str:
    proc = subprocess.run(["bash", str(SCRIPTS / name)], env=env, capture_output=True, text=True, timeout=timeout, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"{name} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return proc.stdout


# ---------------------------------------------------------------------------------------------- Slurm


@dataclass
class Slurm:
    """A running single-node cluster: its folder and the environment its clients need."""

    dir: Path
    env: dict[str, str]

    def run(self, *cmd: str, check: bool = True, **kw) -> subprocess.CompletedProcess:
        return subprocess.run(list(cmd), env=self.env, capture_output=True, text=True, check=check, **kw)

    def jobs(self) -> list[dict[str, str]]:
        """Every job slurmctld still remembers (MinJobAge=600 s), as ``key -> value`` dicts."""
        out = self.run("scontrol", "show", "job", "-o", check=False).stdout
        return [dict(f.split("=", 1) for f in line.split() if "=" in f) for line in out.splitlines() if line.startswith("JobId=")]

    def wait_idle(self, timeout: float = 300.0) -> None:
        """Until the queue is empty (every array task and the finalize job ended)."""
        end = time.monotonic() + timeout
        while self.run("squeue", "-h").stdout.strip():
            if time.monotonic() > end:
                raise TimeoutError(f"Slurm queue not empty after {timeout}s:\n{self.run('squeue').stdout}")
            time.sleep(0.5)


def start_slurm(folder: Path, env: dict[str, str]) -> Slurm:
    if "slurm" not in _STARTED:
        env = {**env, "SLURM_DIR": str(folder), "FAKE_CPUS": "4",
               "SLURMCTLD_PORT": str(free_port()), "SLURMD_PORT": str(free_port())}
        _script("slurm_up.sh", env, timeout=600)
        env["SLURM_CONF"] = str(folder / "slurm.conf")
        _STARTED["slurm"] = Slurm(folder, env)
    return _STARTED["slurm"]  # type: ignore[return-value]


def stop_slurm() -> None:
    cluster = _STARTED.pop("slurm", None)
    if cluster is not None:
        _script("slurm_down.sh", cluster.env, timeout=120)


@pytest.fixture(scope="session")
def slurm(tmp_path_factory, data_dir, session_cache):
    """slurmctld + slurmd + munge on localhost (4 CPUs advertised), stopped by PID at the end of the session."""
    cluster = start_slurm(tmp_path_factory.getbasetemp() / "slurm", base_env(data_dir, session_cache))
    yield cluster
    stop_slurm()


# --------------------------------------------------------------------------------------------- MLflow


@dataclass
class MlflowServer:
    url: str
    dir: Path
    admin: tuple[str, str] | None = None  # (user, password) when the basic-auth app is on


def start_mlflow(folder: Path, env: dict[str, str], name: str = "mlflow", admin_password: str | None = None) -> MlflowServer:
    """One server per ``name``; ``admin_password`` turns on MLflow's basic-auth app (scripts/mlflow_up.sh MLF_AUTH=1)."""
    if name not in _STARTED:
        port = free_port()
        extra = {"MLF_AUTH": "1", "MLFLOW_AUTH_ADMIN_PASSWORD": admin_password} if admin_password else {}
        _script("mlflow_up.sh", {**env, **extra, "MLF_DIR": str(folder), "MLF_PORT": str(port), "MLF_WORKERS": "1"},
                timeout=300)
        _STARTED[name] = MlflowServer(f"http://127.0.0.1:{port}", folder, ("admin", admin_password) if admin_password else None)
    return _STARTED[name]  # type: ignore[return-value]


def pause_mlflow(name: str) -> None:
    """Stop server ``name`` (by its PID) but keep its folder and port, for :func:`resume_mlflow` (outage tests)."""
    server = _STARTED[name]
    _script("mlflow_down.sh", {**os.environ, "MLF_DIR": str(server.dir)}, timeout=60)


def resume_mlflow(name: str, env: dict[str, str]) -> None:
    """Start server ``name`` again on its folder (same sqlite store and artifacts) and port."""
    server = _STARTED[name]
    port = server.url.rsplit(":", 1)[1]
    _script("mlflow_up.sh", {**env, "MLF_DIR": str(server.dir), "MLF_PORT": port, "MLF_WORKERS": "1"}, timeout=300)


def stop_mlflow(name: str = "mlflow") -> None:
    server = _STARTED.pop(name, None)
    if server is not None:
        _script("mlflow_down.sh", {**os.environ, "MLF_DIR": str(server.dir)}, timeout=60)


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory, data_dir, session_cache):
    """``mlflow server`` (sqlite backend, 127.0.0.1, free port), stopped by PID at the end of the session."""
    server = start_mlflow(tmp_path_factory.getbasetemp() / "mlflow-server", base_env(data_dir, session_cache))
    yield server
    stop_mlflow()


# ------------------------------------------------------------------------------- a sweep run on Slurm


@dataclass
class SlurmSweep:
    """The result of ``sbatch slurm/sweep.sh sweeps/ci.yaml`` against the MLflow server, run to the end."""

    file: Path
    env: dict[str, str]  # client env: SLURM_CONF, MLFLOW_TRACKING_URI, ...
    submit_job: str
    logs: Path
    jobs: list[dict[str, str]]  # slurmctld's records at the end: it forgets them MinJobAge later, before a slow session ends


def sbatch_sweep(cluster: Slurm, file: Path, env: dict[str, str], out: Path) -> str:
    """``sbatch slurm/sweep.sh FILE`` from the repository root; returns the submit job's id."""
    out.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(["sbatch", "--parsable", f"--output={out}/submit-%j.out", "slurm/sweep.sh", str(file),
                           "--logs", str(out / "logs")], cwd=REPO, env=env, capture_output=True, text=True, check=True)
    return proc.stdout.strip().split(";")[0]


def run_slurm_sweep(cluster: Slurm, server: MlflowServer, file: Path, out: Path) -> SlurmSweep:
    """Submit a sweep and wait until its array and finalize jobs have ended."""
    env = {**cluster.env, "MLFLOW_TRACKING_URI": server.url}
    job = sbatch_sweep(cluster, file, env, out)
    cluster.wait_idle()
    return SlurmSweep(file, env, job, out, cluster.jobs())


@pytest.fixture(scope="session")
def ci_sweep(slurm, mlflow_server, tmp_path_factory):
    """sweeps/ci.yaml (4 cells) submitted once per session through ``sbatch slurm/sweep.sh``."""
    if "ci_sweep" not in _STARTED:
        out = tmp_path_factory.getbasetemp() / "ci-sweep"
        _STARTED["ci_sweep"] = run_slurm_sweep(slurm, mlflow_server, REPO / "sweeps" / "ci.yaml", out)
    return _STARTED["ci_sweep"]
