"""Teacher cache: ``<cache_root>/teachers/<dataset>/<encoder>/<modality>/<key>.safetensors``.

The key hashes the teacher settings, the feature fingerprint and the training
sequences, so a changed split or feature cache never reuses a stale teacher. Files are
written atomically (``harness.atomic``), so concurrent cells that race to fit the same
teacher each leave a complete file.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from harness.atomic import atomic_path
from harness.data import paths
from harness.features import encoder_key
from harness.kdsr.teacher import Teacher, TeacherSpec

FORMAT_VERSION = 2


def sequences_digest(sequences: list[np.ndarray]) -> str:
    """sha256 of the sequences' lengths and items (order-sensitive)."""
    h = hashlib.sha256()
    h.update(np.array([len(s) for s in sequences], dtype=np.int64).tobytes())
    for seq in sequences:
        h.update(np.asarray(seq, dtype=np.int64).tobytes())
    return h.hexdigest()


def teacher_key(spec: TeacherSpec, feature_fingerprint: str, train_digest: str) -> str:
    payload = {"version": FORMAT_VERSION, "spec": spec.to_dict(), "features": feature_fingerprint, "train": train_digest}
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


def teacher_path(cache_root: str | Path | None, dataset: str, encoder: str, modality: str, key: str) -> Path:
    """Beside the features: same cache root and encoder folder name as ``harness.features``."""
    return paths.cache_root(cache_root) / "teachers" / dataset / encoder_key(encoder) / modality / f"{key}.safetensors"


def save_teacher(teacher: Teacher, path: Path, summary: dict) -> None:
    """Atomic write: tensors plus the spec and fit summary as metadata."""
    tensors = {
        "latents": teacher.latents.detach().cpu().contiguous(),
        "valid": teacher.valid.cpu().to(torch.uint8).contiguous(),
        "codebook": teacher.codebook.detach().cpu().contiguous(),
    }
    meta = {"spec": json.dumps(teacher.spec.to_dict()), "score_stats": json.dumps([teacher.mean, teacher.std]), "summary": json.dumps(summary)}
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=meta)


def load_teacher(path: Path) -> tuple[Teacher, dict]:
    """Read a teacher written by ``save_teacher``; returns (teacher, fit summary)."""
    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata()
        tensors = {name: f.get_tensor(name) for name in f.keys()}  # noqa: SIM118 (safe_open is not iterable)
    spec = TeacherSpec(**json.loads(meta["spec"]))
    teacher = Teacher(tensors["latents"], tensors["valid"].bool(), tensors["codebook"], tuple(json.loads(meta["score_stats"])), spec)
    return teacher, json.loads(meta["summary"])
