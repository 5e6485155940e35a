"""``build_kdsr``: config + dataset + split + features -> a ready ``KDSR`` (teachers cached)."""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path
from typing import Any

import numpy as np

from harness.checkpoint import preserved_rng
from harness.config import KDSRConfig
from harness.data import train_sequences
from harness.kdsr.cache import (
    load_teacher,
    save_teacher,
    sequences_digest,
    teacher_key,
    teacher_path,
)
from harness.kdsr.kdsr import KDSR
from harness.kdsr.teacher import Teacher, TeacherSpec, fit_teacher

log = logging.getLogger(__name__)


def teacher_spec(cfg: KDSRConfig) -> TeacherSpec:
    """The teacher-relevant part of the ``kdsr`` config."""
    return TeacherSpec(
        latent_dim=cfg.latent_dim,
        score=cfg.score,
        quantizer=cfg.quantizer,
        sub_vectors=cfg.sub_vectors,
        codes=cfg.codes,
        fit_pairs=cfg.fit_pairs,
        seed=cfg.teacher_seed if cfg.teacher_seed is not None else 0,  # train.setup resolves None to train.seed
    )


def feature_fingerprint(features: Any) -> str:
    """The feature cache's fingerprint + encoder, or a hash of the matrix when there is no manifest."""
    manifest = getattr(features, "manifest", None) or {}
    if manifest.get("fingerprint"):
        return f"{manifest.get('encoder', '')}:{manifest.get('revision', '')}:{manifest['fingerprint']}"
    matrix = np.ascontiguousarray(features.matrix, dtype=np.float32)
    return "sha256:" + hashlib.sha256(matrix.tobytes()).hexdigest()


def load_or_fit_teacher(spec: TeacherSpec, features: Any, train_seqs: list[np.ndarray], path_parts: tuple[str, str, str], cache_root: str | Path | None, progress: bool = True) -> tuple[Teacher, dict, Path]:
    """Teacher from the cache when present, else fitted and written atomically."""
    key = teacher_key(spec, feature_fingerprint(features), sequences_digest(train_seqs))
    path = teacher_path(cache_root, *path_parts, key)
    if path.exists():
        teacher, summary = load_teacher(path)
        return teacher, {**summary, "cached": True}, path
    log.info("fitting KDSR teacher %s", path)
    teacher, summary = fit_teacher(np.asarray(features.matrix), np.asarray(features.valid), train_seqs, spec, progress=progress)
    save_teacher(teacher, path, summary)
    return teacher, {**summary, "cached": False}, path


def build_kdsr(cfg: KDSRConfig, dataset: Any, split: Any, features: dict[str, Any], cache_root: str | Path | None = None, *, dim: int | None = None, progress: bool = True) -> KDSR:
    """One teacher per modality in ``features`` (cached), student heads, and the monitor.

    ``dim`` is the width of ``items.supervised`` (the model's dim); None infers it on the
    first batch. ``kdsr.teacher_info`` holds each teacher's fit summary and cache path.
    """
    if not features:
        raise ValueError("build_kdsr needs features for at least one modality (e.g. {'text': Features})")
    spec = teacher_spec(cfg)
    train_seqs = train_sequences(dataset, split)
    teachers: dict[str, Teacher] = {}
    info: dict[str, dict] = {}
    for modality, feats in features.items():
        if len(feats.matrix) != dataset.num_items:
            raise ValueError(f"{modality} features have {len(feats.matrix)} rows for {dataset.num_items} items")
        encoder = (getattr(feats, "manifest", None) or {}).get("encoder", "unknown")
        with preserved_rng():  # fitted or read from the cache: the run's random stream is the same afterwards
            teacher, summary, path = load_or_fit_teacher(spec, feats, train_seqs, (dataset.name, encoder, modality),
                                                         cache_root, progress)
        teachers[modality] = teacher
        info[modality] = {**summary, "path": str(path)}
    kdsr = KDSR(teachers, cfg, dim=dim, monitor_features=features)
    kdsr.teacher_info = info
    return kdsr
