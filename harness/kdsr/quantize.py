"""Teacher step 3: quantise correlation vectors (R^m) into one of K codes.

Two fitters, both ending in a codebook [K, m] used the same way (nearest codeword,
Euclidean distance):

- ``kmeans``: scikit-learn's k-means (k-means++ seeding, Lloyd iterations).
- ``vq``: the paper's learned VQ codebook: codewords initialised randomly (Gaussian
  with the data's per-dimension mean and std), trained by Adam on the VQ-VAE codebook
  loss ||sg(x) - e_k(x)||^2 over mini-batches. The commitment term of VQ-VAE only
  trains an encoder; here the inputs are fixed teacher vectors, so it has no gradient
  and is omitted. Codewords unused for a whole epoch are restarted at random inputs
  (the usual dead-code fix), so random initialisation does not leave codes dead.
"""

from __future__ import annotations

import numpy as np
import torch
from tqdm.auto import tqdm

from harness.kdsr.scoring import check_choice

QUANTIZERS = ("vq", "kmeans")


def check_quantizer(name: str) -> str:
    """Return ``name`` if it is a known quantiser, else raise naming the valid ones."""
    return check_choice("quantizer", name, QUANTIZERS)


def nearest_code(x: torch.Tensor, codebook: torch.Tensor, chunk: int = 1 << 16) -> torch.Tensor:
    """Index of the nearest codeword (Euclidean) for each row: [..., m] -> [...] int64."""
    flat = x.reshape(-1, x.shape[-1]).to(codebook.dtype)
    out = torch.empty(len(flat), dtype=torch.long, device=flat.device)
    for start in range(0, len(flat), chunk):
        out[start : start + chunk] = torch.cdist(flat[start : start + chunk], codebook).argmin(-1)
    return out.reshape(x.shape[:-1])


def fit_kmeans(x: np.ndarray, codes: int, seed: int = 0) -> np.ndarray:
    """k-means codebook [K, m] (scikit-learn: k-means++ init, one run, as its n_init="auto")."""
    from sklearn.cluster import KMeans

    _check_fit_input(x, codes)
    km = KMeans(n_clusters=codes, n_init=1, random_state=seed).fit(np.asarray(x, dtype=np.float32))
    return km.cluster_centers_.astype(np.float32)


def _vq_epoch(book: torch.Tensor, x: torch.Tensor, opt: torch.optim.Optimizer, batch_size: int, gen: torch.Generator) -> tuple[float, torch.Tensor]:
    used = torch.zeros(len(book), dtype=torch.bool)
    total = 0.0
    for idx in torch.randperm(len(x), generator=gen).split(batch_size):
        batch = x[idx]
        code = torch.cdist(batch, book.detach()).argmin(-1)
        loss = (batch - book[code]).pow(2).sum(-1).mean()  # codebook loss; inputs are constants
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        used[code] = True
        total += loss.item() * len(idx)
    return total / len(x), used


def fit_vq(x: np.ndarray, codes: int, seed: int = 0, epochs: int = 30, batch_size: int = 4096, lr: float = 1e-2, progress: bool = True) -> np.ndarray:
    """Learned VQ codebook [K, m]: random init, Adam on the codebook loss, dead-code restarts."""
    _check_fit_input(x, codes)
    gen = torch.Generator().manual_seed(seed)
    data = torch.as_tensor(np.asarray(x, dtype=np.float32))
    mean, std = data.mean(0), data.std(0).clamp_min(1e-6)
    book = (mean + std * torch.randn(codes, data.shape[1], generator=gen)).requires_grad_(True)
    opt = torch.optim.Adam([book], lr=lr * float(std.mean()))
    # disable=None: no progress bar when not on a terminal (cell and Slurm logs stay readable)
    bar = tqdm(range(epochs), desc=f"VQ codebook K={codes}", disable=None if progress else True, leave=False)
    for epoch in bar:
        loss, used = _vq_epoch(book, data, opt, batch_size, gen)
        bar.set_postfix(loss=f"{loss:.4g}", used=int(used.sum()))
        if epoch < epochs - 1 and not used.all():
            with torch.no_grad():
                dead = (~used).nonzero().squeeze(1)
                book[dead] = data[torch.randint(len(data), (len(dead),), generator=gen)]
    return book.detach().numpy()


def fit_codebook(x: np.ndarray, codes: int, quantizer: str, seed: int = 0, progress: bool = True) -> np.ndarray:
    """Dispatch to ``fit_vq`` or ``fit_kmeans``."""
    if check_quantizer(quantizer) == "kmeans":
        return fit_kmeans(x, codes, seed)
    return fit_vq(x, codes, seed, progress=progress)


def _check_fit_input(x: np.ndarray, codes: int) -> None:
    if codes < 2 or codes > 255:
        raise ValueError(f"codes={codes} must be in [2, 255] (codes are stored as uint8)")
    if len(x) < codes:
        raise ValueError(f"cannot fit {codes} codes on {len(x)} correlation vectors; raise fit_pairs or lower codes")
