"""Teacher step 1: a linear autoencoder compressing encoder features to d'.

As in the authors' code: encoder Linear(D -> d') + sigmoid, decoder Linear(d' -> D),
MSE, Adam(lr 1e-3), batch 256, early stopping on the training loss. One addition:
features are standardised per dimension first, so no single outlier dimension (large
LLM hidden states have a few huge ones) dominates the reconstruction loss.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm


class LinearAutoencoder(nn.Module):
    """x -> sigmoid(E x) -> D z."""

    def __init__(self, in_dim: int, latent_dim: int):
        super().__init__()
        self.encoder = nn.Linear(in_dim, latent_dim)
        self.decoder = nn.Linear(latent_dim, in_dim)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.encoder(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encode(x))


def standardise(x: np.ndarray) -> np.ndarray:
    """Zero mean, unit variance per dimension (constant dimensions left at zero)."""
    x = np.asarray(x, dtype=np.float32)
    std = x.std(0)
    return (x - x.mean(0)) / np.where(std > 0, std, 1.0)


def _epoch(model: LinearAutoencoder, x: torch.Tensor, opt: torch.optim.Optimizer, batch_size: int, gen: torch.Generator) -> float:
    total = 0.0
    for idx in torch.randperm(len(x), generator=gen).split(batch_size):
        loss = nn.functional.mse_loss(model(x[idx]), x[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        total += loss.item() * len(idx)
    return total / len(x)


def fit_autoencoder(
    features: np.ndarray,
    latent_dim: int,
    seed: int = 0,
    lr: float = 1e-3,
    batch_size: int = 256,
    max_epochs: int = 200,
    patience: int = 5,
    min_delta: float = 1e-4,
    progress: bool = True,
) -> tuple[np.ndarray, list[float]]:
    """Train the autoencoder on ``features`` [n, D]; return (latents [n, d'] float32, loss per epoch).

    Stops when the epoch loss has not improved by a relative ``min_delta`` for ``patience`` epochs.
    """
    if len(features) < 2:
        raise ValueError(f"the autoencoder needs at least 2 items with valid features, got {len(features)}")
    gen = torch.Generator().manual_seed(seed)
    x = torch.from_numpy(standardise(features))
    with torch.random.fork_rng(devices=[]):  # seeded init without touching the caller's RNG
        torch.manual_seed(seed)
        model = LinearAutoencoder(x.shape[1], latent_dim)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    history: list[float] = []
    best, stale = float("inf"), 0
    # disable=None: no progress bar when not on a terminal (cell and Slurm logs stay readable)
    bar = tqdm(range(max_epochs), desc=f"teacher autoencoder -> {latent_dim}", disable=None if progress else True, leave=False)
    for _ in bar:
        history.append(_epoch(model, x, opt, batch_size, gen))
        bar.set_postfix(mse=f"{history[-1]:.4f}")
        if history[-1] < best * (1 - min_delta):
            best, stale = history[-1], 0
        else:
            stale += 1
            if stale >= patience:
                break
    with torch.no_grad():
        return model.encode(x).numpy(), history
