"""The MLflow run schema: every tag and encoder metric a training run writes, in one place.

``harness train`` and every sweep cell write the same keys through :func:`run_tags` and
:func:`encoder_record`; ``harness report`` and the archive read them back by these names.

- Tags (strings, for filtering): ``harness.dataset``, ``harness.model``, ``harness.items``, ``harness.dim``,
  ``harness.seed``, ``harness.kdsr``, ``harness.method``, ``harness.cell_key``, ``harness.modality``,
  ``harness.encoder``, ``harness.encoder.<modality>`` / ``.revision``, ``harness.encode_device``,
  ``harness.machine.*`` and ``harness.version.*``; sweep cells add ``harness.role``, ``harness.sweep``,
  ``harness.axis.<axis>``, ``harness.grids``.
- Metrics (numbers the MLflow UI can put on a chart axis; tags and params are strings there):
  ``encoder.params`` (sum over the modalities used, 0 for ID-only runs), ``encoder.encode_seconds``,
  and per modality ``encoder.<modality>.params`` / ``.dim`` / ``.encode_seconds`` / ``.items_per_s``.
"""

from __future__ import annotations

import json
import os
import platform
import socket
import subprocess
from functools import cache
from pathlib import Path
from typing import Any

from harness.config import Config, cell_key

TAG_KEY = "harness.cell_key"
TAG_SWEEP = "harness.sweep"
TAG_ROLE = "harness.role"
ROLE_CELL, ROLE_SWEEP = "cell", "sweep"
MODALITIES = ("text", "image")
REPO = Path(__file__).resolve().parents[1]


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
        TAG_KEY: cell_key(cfg), "harness.dataset": cfg.dataset.name, "harness.model": cfg.model.name,
        "harness.items": cfg.model.items, "harness.dim": str(cfg.model.dim), "harness.seed": str(cfg.train.seed),
        "harness.kdsr": str(cfg.kdsr.enabled).lower(), "harness.method": method_label(cfg),
        "harness.modality": "+".join(used) or "id", **({"harness.encoder": "+".join(used.values())} if used else {}),
    }


def feature_manifest(dataset: str, encoder: str, modality: str, cache_root: str | None = None) -> dict:
    """The manifest of cached features ({} when not cached)."""
    from harness.features.layout import feature_dir

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
    metrics: dict[str, float] = {"encoder.params": 0.0}
    seconds_total, devices = 0.0, set()
    for modality, name in encoders_used(cfg).items():
        manifest = feature_manifest(cfg.dataset.name, name, modality, cfg.features.cache_dir)
        facts = _encoder_facts(name, manifest)
        tags[f"harness.encoder.{modality}"] = name
        tags[f"harness.encoder.{modality}.revision"] = facts["revision"]
        metrics["encoder.params"] += facts["params"]
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
        metrics["encoder.encode_seconds"] = seconds_total
        tags["harness.encode_device"] = "+".join(sorted(devices))
    # the names earlier reports read; kept so old and new runs sort together
    tags["harness.encoder_params"] = str(int(metrics["encoder.params"]))
    if devices:
        tags["harness.encode_seconds"] = f"{seconds_total:.6g}"
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
    runs = search_all(client, experiment_id, "attributes.status = 'FINISHED'")
    return {r.data.tags[TAG_KEY] for r in runs if TAG_KEY in r.data.tags}
