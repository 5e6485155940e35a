"""Item representations: the item vectors every backbone reads and every score is made from.

One module owns them so that a backbone never knows whether its items are IDs, frozen modality
features or fine-tuned modality tables, and KDSR supervises them through one method
(``supervised``) without another copy of any backbone.

Modes
- ``id``: a trainable ID table ``E [N+1, D]`` (row 0 = padding, kept at zero).
- ``frozen`` (the paper's SASRM): per modality a frozen feature buffer ``F_m [N+1, F_m]`` (centred,
  scaled to unit mean row norm) and a trainable projection ``P_m: F_m -> D``; item vector
  ``E[i] + sum_m valid_m[i] * P_m(F_m[i])``.
- ``finetune``: per modality a trainable table ``T_m [N+1, D]`` initialised from the features
  compressed to ``D`` (PCA, or a given initialisation such as the KDSR autoencoder's latent);
  item vector ``E[i] + sum_m valid_m[i] * T_m[i]``.
Items whose feature row is invalid (corrupt image, empty text) contribute zeros for that modality:
they are represented by their ID (and other modalities) only.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from torch import nn

MODES = ("id", "frozen", "finetune")
ASYNC_SCOPES = ("modality", "all")
ID_INIT_STD = 0.02  # item tables start at the scale common to SASRec implementations (RecBole)


def feature_arrays(feature: Any) -> tuple[np.ndarray, np.ndarray]:
    """``(matrix [N, F] float32, valid [N] bool)`` from a ``Features``-like object or a bare array.

    A bare array counts a row as valid when it is finite and not all zeros.
    """
    if hasattr(feature, "matrix"):
        matrix = np.asarray(feature.matrix, dtype=np.float32)
        valid = np.asarray(feature.valid, dtype=bool)
    else:
        matrix = np.asarray(feature, dtype=np.float32)
        valid = np.isfinite(matrix).all(axis=1) & (np.abs(matrix).sum(axis=1) > 0)
    if matrix.ndim != 2 or valid.shape != (matrix.shape[0],):
        raise ValueError(f"features must be [N, F] with a [N] valid mask, got {matrix.shape} and {valid.shape}")
    return np.where(valid[:, None], matrix, 0.0).astype(np.float32), valid


def _padded(matrix: np.ndarray, valid: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """Prepend the padding row (zeros, invalid) so row i + 1 is item i."""
    m = torch.cat([torch.zeros(1, matrix.shape[1]), torch.from_numpy(matrix)])
    v = torch.cat([torch.zeros(1, dtype=torch.bool), torch.from_numpy(valid)])
    return m, v


def normalise(matrix: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Centre on the valid rows' mean and scale to unit mean row norm (one global scalar).

    Keeps the geometry of the features (distances up to one scale factor) while making encoders
    with very different output scales (normalised MiniLM vs raw LLaMA states) comparable.
    """
    rows = matrix[valid]
    if len(rows) == 0:
        return torch.zeros_like(matrix)
    centred = matrix - rows.mean(0)
    scale = centred[valid].norm(dim=1).mean().clamp_min(1e-12)
    return torch.where(valid[:, None], centred / scale, torch.zeros(()))


def compress(matrix: torch.Tensor, valid: torch.Tensor, dim: int, std: float = ID_INIT_STD) -> torch.Tensor:
    """PCA of the valid rows to ``dim`` columns, scaled to element std ``std``; invalid rows zero.

    When ``dim`` exceeds the rank available (feature width or number of valid rows), the extra
    columns are small random values of the same std so the table is not rank deficient.
    """
    rows = matrix[valid]
    rank = min(rows.shape[1], max(rows.shape[0] - 1, 0))
    q = min(dim, rank)
    out = torch.randn(matrix.shape[0], dim) * std
    if q > 0:  # oversampling makes the randomised PCA's leading components accurate
        _, _, v = torch.pca_lowrank(rows, q=min(q + 10, rank), center=True, niter=6)
        scores = (matrix - rows.mean(0)) @ v[:, :q]
        out[:, :q] = scores * (std / scores[valid].std().clamp_min(1e-12))
    return torch.where(valid[:, None], out, torch.zeros(()))


class ItemRepresentation(nn.Module):
    """Item vectors for the input side (``embed``), the output side (``all_items``) and KDSR (``supervised``).

    Args:
        num_items: N (items are 0-based outside the models; here row i + 1 is item i, row 0 = pad).
        dim: D, the width of every item vector.
        mode: ``id`` | ``frozen`` | ``finetune``.
        features: modality name -> ``[N, F]`` array or ``Features``-like (``.matrix``, ``.valid``).
            Needed for ``frozen`` and ``finetune``; optional for ``id`` (then only names the
            modalities KDSR may supervise through the ID table).
        init: modality name -> ``[N, d]`` initialisation for ``finetune`` tables (e.g. the KDSR
            autoencoder latent); compressed to ``D`` by PCA when ``d != D``. Default: the features.
    """

    def __init__(
        self,
        num_items: int,
        dim: int,
        mode: str = "id",
        features: Mapping[str, Any] | None = None,
        init: Mapping[str, np.ndarray] | None = None,
    ):
        super().__init__()
        if mode not in MODES:
            raise ValueError(f"unknown item representation mode {mode!r}; valid: {', '.join(MODES)}")
        features = dict(features or {})
        if mode != "id" and not features:
            raise ValueError(f"mode={mode!r} needs modality features (e.g. features={{'text': matrix}})")
        self.num_items, self.dim, self.mode = num_items, dim, mode
        self.modalities: list[str] = sorted(features)
        self.id = nn.Embedding(num_items + 1, dim, padding_idx=0)
        nn.init.normal_(self.id.weight, std=ID_INIT_STD)
        with torch.no_grad():
            self.id.weight[0].zero_()
        self.projections = nn.ModuleDict()
        self.tables = nn.ParameterDict()
        for name in self.modalities:
            self._add_modality(name, features[name], (init or {}).get(name))

    def _add_modality(self, name: str, feature: Any, init: np.ndarray | None) -> None:
        matrix, valid = feature_arrays(feature)
        if matrix.shape[0] != self.num_items:
            raise ValueError(f"{name} features have {matrix.shape[0]} rows for {self.num_items} items")
        padded, mask = _padded(matrix, valid)
        self.register_buffer(f"valid_{name}", mask, persistent=False)
        if self.mode == "frozen":
            self.register_buffer(f"feature_{name}", normalise(padded, mask), persistent=False)
            self.projections[name] = nn.Linear(padded.shape[1], self.dim)
        elif self.mode == "finetune":
            if init is not None:
                padded, _ = _padded(np.asarray(init, dtype=np.float32), valid)
            table = padded if padded.shape[1] == self.dim else compress(padded, mask, self.dim)
            self.tables[name] = nn.Parameter(torch.where(mask[:, None], table, torch.zeros(())))

    def valid(self, modality: str) -> torch.Tensor:
        """``[N+1]`` bool: rows with a usable feature of ``modality`` (row 0, padding, is False)."""
        self._check(modality)
        return getattr(self, f"valid_{modality}")

    def _check(self, modality: str) -> None:
        if modality not in self.modalities:
            raise KeyError(f"unknown modality {modality!r}; this representation has: {self.modalities or 'none'}")

    def modality_vectors(self, modality: str, index: torch.Tensor | None = None) -> torch.Tensor:
        """The trainable modality part of the item vectors at ``index`` (all rows when None).

        ``frozen``: the projection of the frozen features; ``finetune``: the table rows. Invalid rows
        are zero. ``id`` has no modality part: raises.
        """
        self._check(modality)
        valid = self.valid(modality) if index is None else self.valid(modality)[index]
        if self.mode == "frozen":
            rows = getattr(self, f"feature_{modality}")
            rows = rows if index is None else rows[index]
            out = self.projections[modality](rows)
        elif self.mode == "finetune":
            table = self.tables[modality]
            out = table if index is None else table[index]
        else:
            raise ValueError("mode 'id' has no modality vectors; use supervised() for what KDSR reads")
        return out * valid.unsqueeze(-1).to(out.dtype)

    def parts(self, index: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """Vectors per source, ``{"id": ..., modality: ...}``, at ``index`` (all rows when None).

        Backbones that treat sources as separate node types (MMSR) read this; the others use
        ``embed`` (their sum).
        """
        out = {"id": self.id.weight if index is None else self.id(index)}
        if self.mode != "id":
            for name in self.modalities:
                out[name] = self.modality_vectors(name, index)
        return out

    def embed(self, item_seq: torch.Tensor) -> torch.Tensor:
        """``[B, L] -> [B, L, D]`` input vectors (zeros at padding)."""
        return sum(self.parts(item_seq).values())

    def all_items(self) -> torch.Tensor:
        """``[N+1, D]`` output vectors for full ranking; row 0 is padding."""
        return sum(self.parts().values())

    def supervised(self, modality: str, item_seq: torch.Tensor) -> torch.Tensor:
        """``[B, L, D]``: what KDSR supervises for ``modality``.

        The trainable modality table (``finetune``), the trainable projection of the frozen
        features (``frozen``), or the ID embedding (``id``: the only trainable item vector).
        """
        self._check(modality)
        if self.mode == "id":
            return self.id(item_seq)
        return self.modality_vectors(modality, item_seq)

    def modality_parameters(self) -> list[nn.Parameter]:
        """The trainable modality part: fine-tuned tables (``finetune``) or projections (``frozen``).

        KDSR's asynchronous schedule slows these at the start (the paper's design); ``id`` mode has none.
        """
        return [*self.tables.values(), *self.projections.parameters()]

    def async_parameters(self, scope: str = "modality") -> list[nn.Parameter]:
        """What KDSR's asynchronous learning rate applies to: ``modality`` (the modality tables /
        projections) or ``all`` (also the ID table; the harness' behaviour before the scope existed)."""
        if scope not in ASYNC_SCOPES:
            raise ValueError(f"unknown async scope {scope!r}; valid: {', '.join(ASYNC_SCOPES)}")
        return [self.id.weight, *self.modality_parameters()] if scope == "all" else self.modality_parameters()

    def extra_repr(self) -> str:
        return f"num_items={self.num_items}, dim={self.dim}, mode={self.mode!r}, modalities={self.modalities}"
