"""Modality cluster nodes for MMSR: k-means over an item feature matrix, computed once per build."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from harness.models.items import compress, feature_arrays, normalise


@dataclass
class ModalityClusters:
    """Items linked to their nearest clusters of one modality.

    links: ``[N, k]`` int64 cluster ids, nearest first; -1 for items without a valid feature.
    init: ``[C, D]`` initial cluster-node vectors: the mean of the members' features compressed
        to D (equal to the PCA projection of the centroid: the projection is linear).
    """

    links: np.ndarray
    init: np.ndarray


def cluster_items(feature, clusters: int, links: int, dim: int, seed: int = 0) -> ModalityClusters:
    """k-means (scikit-learn, k-means++ seeding) over the valid rows of a feature matrix.

    Features are centred and scaled (``items.normalise``) first, so clusters do not depend on the
    encoder's output scale. ``clusters`` is capped at the number of valid items and ``links`` at
    ``clusters``.
    """
    from sklearn.cluster import KMeans

    matrix, valid = feature_arrays(feature)
    m, v = torch.from_numpy(matrix), torch.from_numpy(valid)
    x = normalise(m, v)
    n_valid = int(v.sum())
    if n_valid == 0:
        raise ValueError("cannot cluster a modality with no valid feature row")
    clusters = min(clusters, n_valid)
    links = min(links, clusters)
    km = KMeans(n_clusters=clusters, n_init=3, random_state=seed).fit(x[v].numpy())
    nearest = np.argsort(km.transform(x.numpy()), axis=1, kind="stable")[:, :links]
    out = np.where(valid[:, None], nearest, -1).astype(np.int64)
    with torch.random.fork_rng():  # seeded PCA without touching the caller's RNG stream
        torch.manual_seed(seed)
        compressed = compress(x, v, dim)
    assign = torch.from_numpy(km.labels_)
    init = torch.zeros(clusters, dim).index_add_(0, assign, compressed[v])
    init /= torch.bincount(assign, minlength=clusters).clamp_min(1).unsqueeze(1)
    return ModalityClusters(out, init.numpy())
