"""Asynchronous training (paper section 3.3): the embedding learning rate warms up.

The item tables start at ``async_start`` times the base learning rate and rise linearly
to the base rate over the first ``async_epochs`` epochs, so early updates of the
recommendation objective cannot wash out the modality information before the
correlation supervision takes hold. Epochs are counted from 0.
"""

from __future__ import annotations

from harness.config import KDSRConfig


def embedding_lr_factor(epoch: int, cfg: KDSRConfig) -> float:
    """Multiplier for the embedding param group's LR at ``epoch`` (0-based); 1.0 when off."""
    if epoch < 0:
        raise ValueError(f"epoch={epoch} must be >= 0")
    if not (cfg.enabled and cfg.async_train) or cfg.async_epochs <= 0:
        return 1.0
    if not 0.0 <= cfg.async_start <= 1.0:
        raise ValueError(f"kdsr.async_start={cfg.async_start} must be in [0, 1]")
    progress = min(epoch / cfg.async_epochs, 1.0)
    return cfg.async_start + (1.0 - cfg.async_start) * progress
