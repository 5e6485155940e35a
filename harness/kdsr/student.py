"""The KDSR student: heads on the supervised item embeddings and the two losses.

For a batch the student sees a grid of pairs: every ordered pair (i, j) of positions
within a (sub-)sequence, masked where either side is padding, the two items are the
same, or the teacher has no feature for one of them.

- Holistic (paper eq. 2-3): s_ij = phi(W e_i, W e_j). Student and teacher scores are
  first standardised over the batch's valid pairs (z-scores), which puts the four scoring
  functions on one scale and makes the loss about the *relative* correlation structure,
  not the absolute level (sigmoid-latent cosines of real MiniLM features sit at
  0.80 +- 0.025: matching the level would teach nothing). Soft match: for each anchor i,
  the teacher's and the student's z-scores over its partners j become distributions
  softmax(z / tau), compared by squared error and scaled by the number of partners n (the
  mean squared error of n * p, the weight relative to uniform, so it does not shrink as n
  grows). A temperature only changes anything through such a softmax; dividing scores by
  tau would merely rescale the loss. Hard match (``soft_match=False``): mean squared
  error between the z-scores, which equals 2 (1 - Pearson r) of the two score sets.
- Dissected (paper eq. 4-5): p_ij = softmax(W2 ReLU(W1 (e_i - e_j))) over K codes,
  cross-entropy with the teacher's code, averaged over the valid pairs.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from harness.kdsr.scoring import check_score, pairwise_scores


def pair_mask(item_seq: torch.Tensor, item_valid: torch.Tensor | None = None) -> torch.Tensor:
    """[B, S] ids (0 = pad) -> [B, S, S] bool: both real, distinct items, both with valid features."""
    real = item_seq > 0 if item_valid is None else (item_seq > 0) & item_valid
    return real.unsqueeze(2) & real.unsqueeze(1) & (item_seq.unsqueeze(2) != item_seq.unsqueeze(1))


def _masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    mask = mask.to(values.dtype)
    return (values * mask).sum() / mask.sum().clamp_min(1.0)


def standardise(scores: torch.Tensor, mask: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """z-scores of ``scores`` using the mean and (population) std over the ``mask``ed entries."""
    scores = scores.float()
    weight = mask.to(scores.dtype)
    count = weight.sum().clamp_min(1.0)
    mean = (scores * weight).sum() / count
    var = ((scores - mean).pow(2) * weight).sum() / count
    return (scores - mean) / var.clamp_min(eps * eps).sqrt()


def soft_match_loss(student: torch.Tensor, teacher: torch.Tensor, mask: torch.Tensor, tau: float) -> torch.Tensor:
    """Per-anchor tempered softmax over valid partners; n * sum_j (p_t - p_s)^2, mean over anchors with >= 2 partners."""
    if tau <= 0:
        raise ValueError(f"tau={tau} must be > 0")
    fill = torch.finfo(torch.float32).min
    log_s = (student.float() / tau).masked_fill(~mask, fill)
    log_t = (teacher.float() / tau).masked_fill(~mask, fill)
    diff = (log_s.softmax(-1) - log_t.softmax(-1)) * mask
    n = mask.sum(-1)
    per_anchor = n * diff.pow(2).sum(-1)
    return _masked_mean(per_anchor, n >= 2)


def hard_match_loss(student: torch.Tensor, teacher: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean squared error between raw student and teacher scores over valid pairs."""
    return _masked_mean((student.float() - teacher.float()).pow(2), mask)


def holistic_loss(student: torch.Tensor, teacher: torch.Tensor, mask: torch.Tensor, tau: float, soft_match: bool = True) -> torch.Tensor:
    """Holistic correlation loss on batch-standardised scores (soft or hard match), see the module docstring."""
    student, teacher = standardise(student, mask), standardise(teacher, mask)
    if soft_match:
        return soft_match_loss(student, teacher, mask, tau)
    return hard_match_loss(student, teacher, mask)


def dissected_loss(logits: torch.Tensor, codes: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of logits [B, S, S, K] against teacher codes [B, S, S], mean over valid pairs."""
    ce = F.cross_entropy(logits.float().flatten(0, -2), codes.flatten(), reduction="none")
    return _masked_mean(ce.view(codes.shape), mask)


class StudentHeads(nn.Module):
    """W (holistic) and W1, W2 (dissected) for one modality.

    W maps the embedding (width d) to the teacher's latent width d', so the student's
    correlation space has the teacher's width whatever the model's embedding size.
    ``dim=None`` leaves d to be inferred on the first call (``nn.LazyLinear``; an
    optimizer built before that call still works, as Adam's state is created lazily).
    """

    def __init__(self, dim: int | None, latent_dim: int, codes: int, hidden: int, score: str):
        super().__init__()
        self.score = check_score(score)
        self.w = nn.Linear(dim, latent_dim, bias=False) if dim else nn.LazyLinear(latent_dim, bias=False)
        self.w1 = nn.Linear(dim, hidden) if dim else nn.LazyLinear(hidden)
        self.w2 = nn.Linear(hidden, codes)

    def holistic_scores(self, emb: torch.Tensor) -> torch.Tensor:
        """[B, S, d] -> [B, S, S] student scores phi(W e_i, W e_j)."""
        return pairwise_scores(self.w(emb), self.score)

    def dissected_logits(self, emb: torch.Tensor) -> torch.Tensor:
        """[B, S, d] -> [B, S, S, K] logits W2 ReLU(W1 (e_i - e_j)).

        W1 is applied once per item: (W1 e_i + b) - (W1 e_j + b) + b = W1 (e_i - e_j) + b.
        """
        a = self.w1(emb)
        hidden = F.relu(a.unsqueeze(2) - a.unsqueeze(1) + self.w1.bias)
        return self.w2(hidden)
