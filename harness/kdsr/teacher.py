"""The KDSR teacher: compressed item vectors, score statistics and a correlation codebook.

Fitted once per (dataset, encoder, modality, teacher settings) from the encoder's
features and the training sequences; ``harness.kdsr.cache`` stores it. For a batch
it gives, for every pair of items, the holistic correlation score and the dissected
correlation code, computed on the fly from the compressed vectors (measured faster
than gathering from precomputed N x N tables; see docs/KDSR.md and ``TeacherTable``).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from harness.kdsr.autoencoder import fit_autoencoder
from harness.kdsr.pairs import cooccurring_pairs
from harness.kdsr.quantize import check_quantizer, fit_codebook, nearest_code
from harness.kdsr.scoring import (
    check_score,
    cross_correlation_vectors,
    cross_scores,
    paired_correlation_vectors,
    paired_scores,
    pairwise_correlation_vectors,
    pairwise_scores,
)


@dataclass(frozen=True)
class TeacherSpec:
    """Everything that determines a teacher besides its inputs (part of the cache key)."""

    latent_dim: int = 128
    score: str = "cosine"
    quantizer: str = "vq"
    sub_vectors: int = 8
    codes: int = 50
    fit_pairs: int = 200_000
    seed: int = 0
    ae_max_epochs: int = 200
    ae_patience: int = 5

    def __post_init__(self) -> None:
        check_score(self.score)
        check_quantizer(self.quantizer)
        if self.latent_dim % self.sub_vectors:
            raise ValueError(f"sub_vectors={self.sub_vectors} must divide latent_dim={self.latent_dim}")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


class Teacher(nn.Module):
    """Holistic scores and dissected codes for item pairs (0-based item ids)."""

    def __init__(self, latents: torch.Tensor, valid: torch.Tensor, codebook: torch.Tensor, stats: tuple[float, float], spec: TeacherSpec):
        super().__init__()
        self.spec = spec
        self.register_buffer("latents", latents.float(), persistent=False)
        self.register_buffer("valid", valid.bool(), persistent=False)
        self.register_buffer("codebook", codebook.float(), persistent=False)
        self.mean, self.std = float(stats[0]), float(stats[1])

    @property
    def num_items(self) -> int:
        return self.latents.shape[0]

    @torch.no_grad()
    def grid(self, items: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Standardised scores [B, S, S] and codes [B, S, S] int64 for every pair within each row of ``items`` [B, S]."""
        with torch.autocast(items.device.type, enabled=False):  # codes must not flip under bf16 autocast
            z = self.latents[items]
            scores = (pairwise_scores(z, self.spec.score) - self.mean) / self.std
            codes = nearest_code(pairwise_correlation_vectors(z, self.spec.sub_vectors, self.spec.score), self.codebook)
        return scores, codes

    @torch.no_grad()
    def paired(self, a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Scores and codes for aligned pairs ``(a[k], b[k])``."""
        with torch.autocast(a.device.type, enabled=False):
            za, zb = self.latents[a], self.latents[b]
            scores = (paired_scores(za, zb, self.spec.score) - self.mean) / self.std
            codes = nearest_code(paired_correlation_vectors(za, zb, self.spec.sub_vectors, self.spec.score), self.codebook)
        return scores, codes


def score_stats(latents: torch.Tensor, pairs: np.ndarray, score: str) -> tuple[float, float]:
    """Mean and std of phi over ``pairs``: teacher scores are z-scores against co-occurring pairs,
    so the four scoring functions (bounded cosine, unbounded dot, negative distances) are on one scale."""
    a, b = torch.from_numpy(pairs).T
    phi = paired_scores(latents[a], latents[b], score).double()
    return float(phi.mean()), float(phi.std(unbiased=False).clamp_min(1e-12))


def fit_teacher(features: np.ndarray, valid: np.ndarray, train_sequences: list[np.ndarray], spec: TeacherSpec, progress: bool = True) -> tuple[Teacher, dict]:
    """Fit autoencoder, score statistics and codebook; return the teacher and a summary dict."""
    valid = np.asarray(valid, dtype=bool)
    latents = np.zeros((len(features), spec.latent_dim), dtype=np.float32)
    latents[valid], history = fit_autoencoder(np.asarray(features)[valid], spec.latent_dim, seed=spec.seed, max_epochs=spec.ae_max_epochs, patience=spec.ae_patience, progress=progress)
    z = torch.from_numpy(latents)
    pairs = cooccurring_pairs(train_sequences, spec.fit_pairs, seed=spec.seed, valid=valid)
    if len(pairs) < spec.codes:
        raise ValueError(f"only {len(pairs)} co-occurring pairs of distinct valid items; need >= codes={spec.codes}")
    a, b = torch.from_numpy(pairs).T
    vectors = paired_correlation_vectors(z[a], z[b], spec.sub_vectors, spec.score).numpy()
    codebook = torch.from_numpy(fit_codebook(vectors, spec.codes, spec.quantizer, seed=spec.seed, progress=progress))
    teacher = Teacher(z, torch.from_numpy(valid), codebook, score_stats(z, pairs, spec.score), spec)
    usage = np.bincount(nearest_code(torch.from_numpy(vectors), codebook).numpy(), minlength=spec.codes)
    summary = {"ae_epochs": len(history), "ae_mse": history[-1], "fit_pairs": len(pairs), "codes_used": int((usage > 0).sum()), "score_mean": teacher.mean, "score_std": teacher.std}
    return teacher, summary


class TeacherTable(nn.Module):
    """The alternative to on-the-fly signals: N x N fp16 scores and uint8 codes, gathered per batch.

    Built block of rows by block of rows against all items; memory N^2 * 3 bytes (ML-1M 33 MB,
    Clothing 1.5 GB), which is why the on-the-fly path is the default (see docs/KDSR.md).
    """

    @torch.no_grad()
    def __init__(self, teacher: Teacher, progress: bool = False):
        super().__init__()
        z = teacher.latents
        n = len(z)
        scores = torch.empty(n, n, dtype=torch.float16, device=z.device)
        codes = torch.empty(n, n, dtype=torch.uint8, device=z.device)
        block = max(1, (1 << 18) // n)  # rows per step: ~260k pairs in flight
        spec = teacher.spec
        # disable=None: no progress bar when not on a terminal (cell and Slurm logs stay readable)
        for start in tqdm(range(0, n, block), desc="teacher tables", disable=None if progress else True, leave=False):
            rows = z[start : start + block]
            scores[start : start + block] = ((cross_scores(rows, z, spec.score) - teacher.mean) / teacher.std).half()
            vectors = cross_correlation_vectors(rows, z, spec.sub_vectors, spec.score)
            codes[start : start + block] = nearest_code(vectors, teacher.codebook).to(torch.uint8)
        self.register_buffer("scores", scores, persistent=False)
        self.register_buffer("codes", codes, persistent=False)

    @torch.no_grad()
    def grid(self, items: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Same as ``Teacher.grid``, gathered from the tables (scores rounded to fp16)."""
        rows, cols = items.unsqueeze(2), items.unsqueeze(1)
        return self.scores[rows, cols].float(), self.codes[rows, cols].long()
