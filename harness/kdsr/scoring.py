"""Correlation scoring functions phi shared by the teacher and the student.

Every function is returned as a *similarity* (larger = more alike) so the four are
interchangeable: cosine and dot as they are, Euclidean and Manhattan as the negative
distance. Their ranges still differ (cosine in [-1, 1], the others unbounded), so the
scores are compared as z-scores: the teacher's against the co-occurring pairs it was
fitted on (``harness.kdsr.teacher``), and both sides again over each batch's valid pairs
before the holistic loss (``harness.kdsr.student``).
"""

from __future__ import annotations

import difflib

import torch
import torch.nn.functional as F

SCORES = ("cosine", "dot", "euclidean", "manhattan")
_EPS = 1e-8


def check_choice(kind: str, name: str, valid: tuple[str, ...]) -> str:
    """Return ``name`` if it is one of ``valid``, else raise naming the closest and the valid ones."""
    if name not in valid:
        close = difflib.get_close_matches(name, valid, n=1, cutoff=0.0)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise ValueError(f"unknown {kind} {name!r}{hint} (valid: {', '.join(valid)})")
    return name


def check_score(name: str) -> str:
    """Return ``name`` if it is a known scoring function, else raise naming the valid ones."""
    return check_choice("scoring function", name, SCORES)


def paired_scores(a: torch.Tensor, b: torch.Tensor, name: str) -> torch.Tensor:
    """phi(a, b) over the last dimension for aligned (broadcastable) pairs: [..., d] -> [...]."""
    check_score(name)
    if name == "cosine":
        return F.cosine_similarity(a, b, dim=-1, eps=_EPS)
    if name == "dot":
        return (a * b).sum(-1)
    diff = a - b
    if name == "manhattan":
        return -diff.abs().sum(-1)
    return -diff.pow(2).sum(-1).clamp_min(_EPS).sqrt()


def cross_scores(a: torch.Tensor, b: torch.Tensor, name: str) -> torch.Tensor:
    """phi between every row of ``a`` and every row of ``b``: [..., P, d] x [..., Q, d] -> [..., P, Q].

    Uses matrix products / ``cdist`` so no [P, Q, d] tensor is materialised.
    """
    check_score(name)
    if name == "cosine":
        a, b = F.normalize(a, dim=-1, eps=_EPS), F.normalize(b, dim=-1, eps=_EPS)
    if name in ("cosine", "dot"):
        return a @ b.transpose(-1, -2)
    # cdist's backward is finite at zero distance (the diagonal), unlike a plain sqrt.
    return -torch.cdist(a, b, p=1.0 if name == "manhattan" else 2.0)


def pairwise_scores(x: torch.Tensor, name: str) -> torch.Tensor:
    """phi between every pair of rows within each batch: [..., S, d] -> [..., S, S]."""
    return cross_scores(x, x, name)


def split_subvectors(x: torch.Tensor, m: int) -> torch.Tensor:
    """[..., d] -> [..., m, d/m]: the m equal sub-vectors of product quantisation."""
    d = x.shape[-1]
    if m < 1 or d % m:
        raise ValueError(f"sub_vectors={m} must be >= 1 and divide the latent dimension {d}")
    return x.reshape(*x.shape[:-1], m, d // m)


def paired_correlation_vectors(a: torch.Tensor, b: torch.Tensor, m: int, name: str) -> torch.Tensor:
    """Dissected correlation of aligned pairs: phi per sub-vector, [..., d] -> [..., m]."""
    return paired_scores(split_subvectors(a, m), split_subvectors(b, m), name)


def cross_correlation_vectors(a: torch.Tensor, b: torch.Tensor, m: int, name: str) -> torch.Tensor:
    """Dissected correlation of every row of ``a`` with every row of ``b``: [..., P, d] x [..., Q, d] -> [..., P, Q, m]."""
    sub_a = split_subvectors(a, m).transpose(-2, -3)  # [..., m, P, d/m]
    sub_b = split_subvectors(b, m).transpose(-2, -3)
    return cross_scores(sub_a, sub_b, name).movedim(-3, -1)


def pairwise_correlation_vectors(x: torch.Tensor, m: int, name: str) -> torch.Tensor:
    """Dissected correlation of every pair within each batch: [..., S, d] -> [..., S, S, m]."""
    return cross_correlation_vectors(x, x, m, name)
