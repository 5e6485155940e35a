"""The MLflow run schema: every tag, param and metric key the harness writes, and the queries that read them.

``harness train`` and every sweep cell write the same keys through :func:`run_tags`, :func:`run_params` and
:func:`encoder_record`; sweep cells and parents add :func:`cell_tags` / :func:`sweep_tags`; ``harness report``,
the archive and the sweep runner read them back by these names and through :func:`search_all`,
:func:`finished_keys` and :func:`newest_parent`.

- Tags (strings, for filtering): ``harness.dataset``, ``harness.model``, ``harness.items``, ``harness.dim``,
  ``harness.seed``, ``harness.kdsr``, ``harness.method``, ``harness.cell_key``, ``harness.modality``,
  ``harness.encoder``, ``harness.encoder.<modality>`` / ``.revision``, ``harness.encode_device``,
  ``harness.device``, ``harness.machine.*`` and ``harness.version.*``; sweep cells add ``harness.role``,
  ``harness.sweep``, ``harness.cell_index``, ``harness.axis.<axis>``, ``harness.grids``, ``slurm.*``; sweep parents
  ``harness.sweep_id``, ``harness.sweep_overrides``, ``harness.axes.<g>``, ``harness.n_cells``, ``harness.cells``.
- Metrics (numbers the MLflow UI can put on a chart axis; tags and params are strings there):
  ``<part>/<metric>`` (``train/loss``, ``valid/ndcg@10``, ``test/hr@20``; stored as ``test/hr_at_20``, see
  :func:`mlflow_key`), ``monitor/*``, ``epoch_time_s``; at the end ``best_epoch``, ``epochs_run``,
  ``train_time_s``, ``best_valid/*``; ``encoder.params`` (sum over the modalities used, 0 for ID-only runs),
  ``encoder.encode_seconds``, and per modality ``encoder.<modality>.params`` / ``.dim`` / ``.encode_seconds`` /
  ``.items_per_s``.
- Params: the resolved config as dotted keys (``model.name``, ``train.seed`` ...) plus ``data.*`` and
  ``model_params``.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import socket
import subprocess
from functools import cache
from pathlib import Path
from typing import Any

from harness.config import Config, cell_key, to_dict
from harness.features.layout import feature_dir

# ------------------------------------------------------------------------------------------- tags

TAG_KEY = "harness.cell_key"
LEGACY_TAG_KEY = "cell_key"  # what `harness train` tagged before harness.cell_key
TAG_SWEEP = "harness.sweep"
TAG_ROLE = "harness.role"
ROLE_CELL, ROLE_SWEEP, ROLE_REPORT = "cell", "sweep", "report"
TAG_DATASET, TAG_MODEL, TAG_ITEMS, TAG_DIM = "harness.dataset", "harness.model", "harness.items", "harness.dim"
TAG_SEED, TAG_KDSR, TAG_METHOD = "harness.seed", "harness.kdsr", "harness.method"
TAG_MODALITY, TAG_ENCODER, TAG_DEVICE = "harness.modality", "harness.encoder", "harness.device"
TAG_ENCODER_PARAMS, TAG_ENCODE_SECONDS = "harness.encoder_params", "harness.encode_seconds"  # older runs' numbers
TAG_CELL_INDEX, TAG_GRIDS = "harness.cell_index", "harness.grids"  # sweep cells
TAG_SWEEP_ID, TAG_OVERRIDES = "harness.sweep_id", "harness.sweep_overrides"  # sweep parents
TAG_N_CELLS, TAG_CELLS = "harness.n_cells", "harness.cells"  # sweep parents: cell count, status counts
AXIS_PREFIX, AXES_PREFIX = "harness.axis.", "harness.axes."  # cells: label per axis; parents: axes per grid
TAG_ARRAY_JOB, TAG_FINALIZE_JOB = "slurm.array_job_id", "slurm.finalize_job_id"
SLURM_VARS = ("SLURM_ARRAY_JOB_ID", "SLURM_ARRAY_TASK_ID", "SLURM_JOB_ID")  # -> slurm.array_job_id ...
TAG_ERROR = "error"
TAG_PARENT, TAG_RUN_NAME = "mlflow.parentRunId", "mlflow.runName"  # MLflow's own
MODALITIES = ("text", "image")
REPO = Path(__file__).resolve().parents[1]


def axis_tag(axis: str) -> str:
    """The cell tag holding its label on grid axis ``axis``."""
    return AXIS_PREFIX + axis


def axes_tag(grid: int) -> str:
    """The parent tag listing the axes of grid ``grid``."""
    return f"{AXES_PREFIX}{grid}"


# ---------------------------------------------------------------------------------- metrics, params

MONITOR_PREFIX = "monitor/"
EPOCH_SECONDS = "epoch_time_s"  # per epoch


def monitor_key(modality: str, ids: bool = False) -> str:
    """The forgetting monitor's metric: Pearson correlation between the pairwise similarities of the supervised
    ``modality`` table (``ids``: of the ID table) and those of the encoder's features."""
    return f"{MONITOR_PREFIX}pearson_{'id_' if ids else ''}{modality}"



BEST_EPOCH, EPOCHS_RUN, TRAIN_SECONDS = "best_epoch", "epochs_run", "train_time_s"  # final, at the best epoch
METRIC_ENCODER_PARAMS, METRIC_ENCODE_SECONDS = "encoder.params", "encoder.encode_seconds"
PARAM_MODEL, PARAM_SEED, PARAM_VALID_METRIC = "model.name", "train.seed", "train.valid_metric"
PARAM_HOLISTIC, PARAM_DISSECTED = "kdsr.holistic", "kdsr.dissected"


def mlflow_key(name: str) -> str:
    """Harness metric name -> MLflow metric key (``@`` is not allowed there): hr@20 -> hr_at_20."""
    return name.replace("@", "_at_")


def harness_key(key: str) -> str:
    """Inverse of :func:`mlflow_key`."""
    return key.replace("_at_", "@")


def part_metric(part: str, name: str) -> str:
    """``("test", "hr@20")`` -> ``test/hr@20``: a metric of one split part (``train``, ``valid``, ``test``)."""
    return f"{part}/{name}"


def is_part_metric(key: str, part: str) -> bool:
    return key.startswith(f"{part}/")


def best_metric(key: str) -> str:
    """``valid/ndcg@10`` -> ``best_valid/ndcg@10``: a validation metric of the best epoch, logged with the final ones."""
    return f"best_{key}"


# ------------------------------------------------------------------------------------- writing runs


def encoders_used(cfg: Config) -> dict[str, str]:
    """Modality -> encoder name for every modality the run reads."""
    pairs = (("text", cfg.features.text_encoder), ("image", cfg.features.image_encoder))
    return {m: e for m, e in pairs if e}


def method_label(cfg: Config) -> str:
    """What a results table calls the run: ``id``, ``frozen``, ``finetune``, ``finetune+async`` (the schedule
    without KDSR's losses) or ``finetune+kdsr``."""
    if not cfg.kdsr.enabled:
        return cfg.model.items
    if cfg.kdsr.holistic or cfg.kdsr.dissected:
        return f"{cfg.model.items}+kdsr"
    return f"{cfg.model.items}+async" if cfg.kdsr.async_train else cfg.model.items


def run_tags(cfg: Config) -> dict[str, str]:
    """What the run computes, as tags (the same in ``harness train`` and in sweep cells)."""
    used = encoders_used(cfg)
    return {
        TAG_KEY: cell_key(cfg), TAG_DATASET: cfg.dataset.name, TAG_MODEL: cfg.model.name,
        TAG_ITEMS: cfg.model.items, TAG_DIM: str(cfg.model.dim), TAG_SEED: str(cfg.train.seed),
        TAG_KDSR: str(cfg.kdsr.enabled).lower(), TAG_METHOD: method_label(cfg),
        TAG_MODALITY: "+".join(used) or "id", **({TAG_ENCODER: "+".join(used.values())} if used else {}),
    }


def run_params(cfg: Config, users: int, items: int, interactions: int, model_params: int) -> dict[str, Any]:
    """The run's params: the resolved config (dotted keys), data statistics and the model's parameter count."""
    return {**to_dict(cfg), "data": {"users": users, "items": items, "interactions": interactions},
            "model_params": model_params}


def cell_tags(cfg: Config, sweep: str, index: int, grids: tuple[int, ...], labels: dict[str, str],
              environ: dict[str, str] | None = None) -> dict[str, str]:
    """A sweep cell's tags: the run's own (:func:`run_tags`) plus sweep, role, position, axis labels, Slurm ids."""
    environ = os.environ if environ is None else environ
    tags = {**run_tags(cfg), TAG_SWEEP: sweep, TAG_ROLE: ROLE_CELL, TAG_CELL_INDEX: str(index),
            TAG_GRIDS: ",".join(map(str, grids))}
    tags.update({axis_tag(axis): label for axis, label in labels.items()})
    for var in SLURM_VARS:
        if environ.get(var):
            tags[f"slurm.{var[6:].lower()}"] = environ[var]
    return tags


def failed_cell_tags(key: str, sweep: str) -> dict[str, str]:
    """The least a cell run needs to be found again when its full tags could not be computed."""
    return {TAG_KEY: key, TAG_SWEEP: sweep, TAG_ROLE: ROLE_CELL}


def sweep_parent_tags(name: str, overrides: list[str]) -> dict[str, str]:
    """How a sweep's parent run is found again: role plus a hash of the sweep name and its overrides."""
    joined = " ".join(overrides)
    ident = hashlib.sha256(f"{name}\0{joined}".encode()).hexdigest()[:16]
    return {TAG_ROLE: ROLE_SWEEP, TAG_SWEEP: name, TAG_SWEEP_ID: ident, TAG_OVERRIDES: joined or "-"}


def sweep_tags(name: str, overrides: list[str], axes: list[list[str]], n_cells: int) -> dict[str, str]:
    """The parent run's tags a report needs: identity, the axes of each grid and the cell count."""
    tags = {**sweep_parent_tags(name, overrides), **{axes_tag(g): ",".join(a) for g, a in enumerate(axes)}}
    tags[TAG_N_CELLS] = str(n_cells)
    return tags


def describe_tags(tags: dict[str, str]) -> dict[str, str]:
    """Of :func:`sweep_tags`, the ones a rerun may change (axes, cell count)."""
    return {k: v for k, v in tags.items() if k.startswith((AXES_PREFIX, TAG_N_CELLS))}


def status_counts_tag(counts: dict[str, int]) -> dict[str, str]:
    """The parent's ``harness.cells`` tag: ``FINISHED=3 MISSING=1``."""
    return {TAG_CELLS: " ".join(f"{k}={v}" for k, v in sorted(counts.items()))}


def feature_manifest(dataset: str, encoder: str, modality: str, cache_root: str | None = None) -> dict:
    """The manifest of cached features ({} when not cached)."""
    path = feature_dir(dataset, encoder, modality, cache_root) / "manifest.json"
    return json.loads(path.read_text()) if path.is_file() else {}


def encode_cost(manifest: dict) -> tuple[float, str]:
    """(device-seconds, device type) the features took: the sum of every chunk's encode seconds over all
    runs that built the cache (GPU-seconds for a GPU encode), else the final run's per-rank busy seconds,
    else wall seconds x world size."""
    seconds = float(manifest.get("encode_seconds_all_runs") or 0.0)
    seconds = seconds or sum(float(r.get("seconds") or 0.0) for r in manifest.get("ranks") or [])
    if not seconds:
        seconds = float((manifest.get("throughput") or {}).get("seconds") or 0.0) * int(manifest.get("world_size") or 1)
    return seconds, str(manifest.get("device") or "cpu")


def _encoder_facts(name: str, manifest: dict) -> dict[str, Any]:
    """Parameter count, dim and revision from the manifest; the registry only for features not cached yet."""
    if manifest:
        return {"params": int(manifest.get("params") or 0), "dim": int(manifest.get("dim") or 0),
                "revision": str(manifest.get("revision") or "")}
    import encoders  # only when the cell has no cache yet: importing the registry costs a few seconds

    info = encoders.get_info(name)
    return {"params": int(info.params or 0), "dim": int(info.dim), "revision": str(info.weights)}


def encoder_record(cfg: Config) -> tuple[dict[str, str], dict[str, float]]:
    """(tags, metrics) describing the encoders a run uses: name and revision as tags; parameter count,
    feature dim and encode cost as metrics. ID-only runs: ``encoder.params = 0``."""
    tags: dict[str, str] = {}
    metrics: dict[str, float] = {METRIC_ENCODER_PARAMS: 0.0}
    seconds_total, devices = 0.0, set()
    for modality, name in encoders_used(cfg).items():
        manifest = feature_manifest(cfg.dataset.name, name, modality, cfg.features.cache_dir)
        facts = _encoder_facts(name, manifest)
        tags[f"{TAG_ENCODER}.{modality}"] = name
        tags[f"{TAG_ENCODER}.{modality}.revision"] = facts["revision"]
        metrics[METRIC_ENCODER_PARAMS] += facts["params"]
        metrics[f"encoder.{modality}.params"] = float(facts["params"])
        metrics[f"encoder.{modality}.dim"] = float(facts["dim"])
        if manifest:
            seconds, device = encode_cost(manifest)
            items_per_s = (manifest.get("throughput") or {}).get("items_per_s")
            metrics[f"encoder.{modality}.encode_seconds"] = seconds
            if items_per_s:
                metrics[f"encoder.{modality}.items_per_s"] = float(items_per_s)
            seconds_total += seconds
            devices.add(device)
            tags[f"harness.encode_machine.{modality}"] = str(manifest.get("machine") or device)
    if devices:
        metrics[METRIC_ENCODE_SECONDS] = seconds_total
        tags["harness.encode_device"] = "+".join(sorted(devices))
    # the names earlier reports read; kept so old and new runs sort together
    tags[TAG_ENCODER_PARAMS] = str(int(metrics[METRIC_ENCODER_PARAMS]))
    if devices:
        tags[TAG_ENCODE_SECONDS] = f"{seconds_total:.6g}"
    return tags, metrics


@cache
def machine_tags() -> dict[str, str]:
    """Where and with what the run ran: host, CPU, GPU, library versions and the code's git commit."""
    import importlib.metadata

    import torch

    tags = {"harness.machine.host": socket.gethostname(), "harness.machine.cpu": platform.processor() or platform.machine(),
            "harness.machine.cpus": str(os.cpu_count()), "harness.machine.gpu": "",
            "harness.version.python": platform.python_version()}
    if torch.cuda.is_available():
        tags["harness.machine.gpu"] = torch.cuda.get_device_name(0)
    for lib in ("torch", "transformers", "numpy", "mlflow"):
        try:
            tags[f"harness.version.{lib}"] = importlib.metadata.version(lib)
        except importlib.metadata.PackageNotFoundError:
            continue
    try:
        sha = subprocess.run(["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10)
        tags["harness.version.git"] = sha.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        tags["harness.version.git"] = "unknown"
    return tags


# ------------------------------------------------------------------------------------------ queries

FINISHED = "attributes.status = 'FINISHED'"
CELLS = f"tags.`{TAG_ROLE}` = '{ROLE_CELL}'"
SWEEPS = f"tags.`{TAG_ROLE}` = '{ROLE_SWEEP}'"
NEWEST_FIRST = ["attributes.start_time DESC"]


def sweep_query(sweep_id: str) -> str:
    """The parent runs of one sweep (name + overrides, :func:`sweep_parent_tags`)."""
    return f"{SWEEPS} and tags.`{TAG_SWEEP_ID}` = '{sweep_id}'"


def search_all(client, experiment_id: str, query: str = "", order_by: list[str] | None = None) -> list:
    """Every active run of the experiment matching ``query`` (all pages)."""
    runs, token = [], None
    while True:
        page = client.search_runs([experiment_id], filter_string=query, max_results=1000, page_token=token,
                                  order_by=order_by)
        runs += list(page)
        token = page.token
        if not token:
            return runs


def finished_keys(client, experiment_id: str) -> set[str]:
    """Cell keys with a FINISHED run in the experiment (what a rerun skips)."""
    runs = search_all(client, experiment_id, FINISHED)
    return {r.data.tags[TAG_KEY] for r in runs if TAG_KEY in r.data.tags}


def newest_parent(client, experiment_id: str, sweep_id: str | None = None):
    """The newest sweep parent run of the experiment (of one sweep with ``sweep_id``), None without one."""
    query = sweep_query(sweep_id) if sweep_id else SWEEPS
    found = client.search_runs([experiment_id], filter_string=query, max_results=1, order_by=NEWEST_FIRST)
    return found[0] if found else None
