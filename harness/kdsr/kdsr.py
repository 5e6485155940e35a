"""KDSR as the training loop sees it: ``losses(items, item_seq)`` and ``monitor(items)``.

``KDSR`` is an ``nn.Module``: its parameters are the student heads (put them in the
optimizer) and its buffers the teachers and monitor references (``.to(device)`` moves
them; ``losses`` also moves the module to the batch's device on first use).
"""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np
import torch
from torch import nn

from harness.config import KDSRConfig
from harness.kdsr.monitor import MONITOR_SEED, ForgettingMonitor
from harness.kdsr.pairs import sample_positions
from harness.kdsr.signals import use_tables
from harness.kdsr.student import StudentHeads, dissected_loss, holistic_loss, pair_mask
from harness.kdsr.teacher import Teacher, TeacherTable


class SupervisedItems(Protocol):
    """What KDSR needs from ``harness.models.ItemRepresentation``."""

    def supervised(self, modality: str, item_seq: torch.Tensor) -> torch.Tensor: ...


class KDSR(nn.Module):
    """Correlation distillation for one or more modalities (one teacher + student heads each).

    Args:
        teachers: modality -> fitted ``Teacher``.
        cfg: the ``kdsr`` config section (losses, weights, pairs, ablation switches).
        dim: width of the supervised embeddings; None infers it on the first batch.
        monitor_features: modality -> [N, D] original features for the forgetting monitor
            (None or ``cfg.monitor=False``: no monitor).
    """

    def __init__(self, teachers: dict[str, Teacher], cfg: KDSRConfig, dim: int | None = None, monitor_features: dict[str, Any] | None = None):
        super().__init__()
        if not teachers:
            raise ValueError("KDSR needs at least one modality teacher")
        self.cfg = cfg
        self.teachers = nn.ModuleDict(teachers)
        self.heads = nn.ModuleDict({m: StudentHeads(dim, t.spec.latent_dim, t.spec.codes, cfg.dissected_hidden, t.spec.score) for m, t in teachers.items()})
        tabled = {m: t for m, t in teachers.items() if use_tables(cfg.signals, cfg.pairs, t.num_items)}
        self.tables = nn.ModuleDict({m: TeacherTable(t, progress=True) for m, t in tabled.items()})
        valid = {m: t.valid for m, t in teachers.items()}
        on = cfg.monitor and monitor_features
        self.forgetting = ForgettingMonitor(monitor_features, cfg.monitor_pairs, MONITOR_SEED, valid) if on else None

    @property
    def modalities(self) -> list[str]:
        return list(self.teachers)

    def _follow(self, device: torch.device) -> None:
        if next(iter(self.teachers.values())).latents.device != device:
            self.to(device)

    def modality_losses(self, items: SupervisedItems, modality: str, sub_seq: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(holistic, dissected) losses of one modality on the pair grid of ``sub_seq`` [B, S] (shifted ids)."""
        teacher, heads = self.teachers[modality], self.heads[modality]
        ids = (sub_seq - 1).clamp_min(0)
        mask = pair_mask(sub_seq, teacher.valid[ids])
        emb = items.supervised(modality, sub_seq)
        source = self.tables[modality] if modality in self.tables else teacher  # noqa: SIM401 (ModuleDict has no get)
        t_scores, t_codes = source.grid(ids)
        zero = emb.new_zeros((), dtype=torch.float32)
        hol = holistic_loss(heads.holistic_scores(emb), t_scores, mask, self.cfg.tau, self.cfg.soft_match) if self.cfg.holistic else zero
        dis = dissected_loss(heads.dissected_logits(emb), t_codes, mask) if self.cfg.dissected else zero
        return hol, dis

    def losses(self, items: SupervisedItems, item_seq: torch.Tensor) -> dict[str, torch.Tensor]:
        """{"holistic", "dissected", "total"} for a batch ``item_seq`` [B, L] (shifted ids, 0 = pad).

        Each term is summed over modalities; total = lambda_holistic * holistic + lambda_dissected * dissected.
        """
        self._follow(item_seq.device)
        sub_seq = sample_positions(item_seq, self.cfg.pairs, self.cfg.max_pairs)
        parts = [self.modality_losses(items, m, sub_seq) for m in self.modalities]
        hol = torch.stack([h for h, _ in parts]).sum()
        dis = torch.stack([d for _, d in parts]).sum()
        total = self.cfg.lambda_holistic * hol + self.cfg.lambda_dissected * dis
        return {"holistic": hol, "dissected": dis, "total": total}

    forward = losses

    def monitor(self, items: Any) -> dict[str, float]:
        """The forgetting metrics of ``items`` (see ``ForgettingMonitor``); empty when the monitor is off."""
        return self.forgetting(items) if self.forgetting is not None else {}

    def teacher_latents(self) -> dict[str, np.ndarray]:
        """modality -> [N, d'] teacher latents (e.g. to initialise ``finetune`` modality tables)."""
        return {m: t.latents.cpu().numpy() for m, t in self.teachers.items()}

