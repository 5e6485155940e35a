"""Synthetic catalogues for cost curves: item texts, optional JPEGs and power-law interactions.

    python -m harness.data.synthetic --items 100000 --interactions 1000000 --out data/synthetic
    harness encode --dataset synthetic --data-dir data --encoder tiny-bert --cpu

Deterministic by seed and written in chunks (numpy memory map + streamed text), so a catalogue of
millions of items never exists as Python lists of tuples. The folder is a registered dataset
(``synthetic``; no k-core filter, so the catalogue keeps its size):

- ``items.tsv``: ``item_id <TAB> text <TAB> image`` (image path relative to the folder, or empty).
- ``interactions.npy``: int64 ``[M, 3]`` rows of (user, item, unix time), users in order, times random.

Text lengths: log-normal word counts, fitted to the item texts of the shipped datasets (ML-1M,
ML-100K, Amazon Beauty/Sports: pooled log-word-count mean 1.68, sd 0.30; median ~5-6 words).
Items follow a Zipf popularity law (exponent ``item_alpha``) and every item appears at least once
(one coverage row every M/N rows); user activity is power-law (Pareto lengths, >= ``min_user`` each).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from harness.data.interactions import group_chronologically
from harness.data.registry import DatasetSpec, Layout, RawData, register_dataset

WORDS_MU, WORDS_SIGMA = 1.68, 0.30  # log word count, pooled over the shipped datasets' item texts
VOCAB = 50_000
T0, SPAN = 1_500_000_000, 3 * 365 * 86_400  # timestamps: three years from mid-2017
CHUNK = 1 << 20


def _vocabulary(rng: np.random.Generator) -> np.ndarray:
    """``VOCAB`` pseudo-words of 2-12 letters (mean ~5.5, as real titles: ~6.5 chars per word with the space)."""
    sizes = np.clip(rng.poisson(5.5, VOCAB), 2, 12)
    letters = rng.integers(97, 123, int(sizes.sum()), dtype=np.uint8).tobytes().decode()
    ends = np.cumsum(sizes)
    return np.array([letters[e - s : e] for s, e in zip(sizes.tolist(), ends.tolist())], dtype=object)


def _zipf_cdf(n: int, alpha: float) -> np.ndarray:
    weights = np.arange(1, n + 1, dtype=np.float64) ** -alpha
    cdf = np.cumsum(weights)
    return cdf / cdf[-1]


def _texts(rng: np.random.Generator, vocab: np.ndarray, word_cdf: np.ndarray, n: int) -> list[str]:
    counts = np.clip(np.rint(rng.lognormal(WORDS_MU, WORDS_SIGMA, n)), 1, 64).astype(np.int64)
    words = vocab[np.searchsorted(word_cdf, rng.random(int(counts.sum())))]
    ends = np.cumsum(counts).tolist()
    return [" ".join(words[e - c : e]) for c, e in zip(counts.tolist(), ends)]


def _write_jpeg(path: Path, rng: np.random.Generator, size: int = 64) -> None:
    from PIL import Image

    base = rng.integers(0, 256, 3, dtype=np.uint8)
    noise = rng.integers(-40, 40, (size, size, 3))
    Image.fromarray(np.clip(base + noise, 0, 255).astype(np.uint8)).save(path, quality=85)


def write_items(folder: Path, n_items: int, seed: int, images: int = 0) -> None:
    """``items.tsv`` (and ``images/<i>.jpg`` for the first ``images`` items), streamed chunk by chunk."""
    vocab_rng = np.random.default_rng([seed, 0])
    vocab, word_cdf = _vocabulary(vocab_rng), _zipf_cdf(VOCAB, 1.0)
    if images:
        (folder / "images").mkdir(parents=True, exist_ok=True)
    with open(folder / "items.tsv", "w", encoding="utf-8") as fh:
        for lo in range(0, n_items, CHUNK):
            rng = np.random.default_rng([seed, 1, lo])
            texts = _texts(rng, vocab, word_cdf, min(CHUNK, n_items - lo))
            lines = []
            for i, text in enumerate(texts, start=lo):
                image = f"images/{i}.jpg" if i < images else ""
                if image:
                    _write_jpeg(folder / image, rng)
                lines.append(f"i{i}\t{text}\t{image}\n")
            fh.writelines(lines)


def user_lengths(n_users: int, n_interactions: int, seed: int, min_user: int = 5, shape: float = 1.5) -> np.ndarray:
    """Power-law (Pareto) sequence lengths, each >= ``min_user``, summing exactly to ``n_interactions``."""
    if n_users * min_user > n_interactions:
        raise ValueError(f"{n_users} users x {min_user} interactions exceed {n_interactions} interactions")
    rng = np.random.default_rng([seed, 2])
    extra = rng.pareto(shape, n_users)
    extra = np.floor(extra / extra.sum() * (n_interactions - n_users * min_user)).astype(np.int64)
    extra[rng.choice(n_users, n_interactions - n_users * min_user - int(extra.sum()), replace=False)] += 1
    return extra + min_user


def write_interactions(folder: Path, n_items: int, n_interactions: int, seed: int, *,
                       n_users: int | None = None, item_alpha: float = 1.0) -> None:
    """``interactions.npy`` [M, 3] (user, item, time), filled chunk by chunk through a memory map."""
    if n_interactions < n_items:
        raise ValueError(f"every item appears at least once: need >= {n_items} interactions, got {n_interactions}")
    n_users = n_users or max(1, n_interactions // 20)
    ends = np.cumsum(user_lengths(n_users, n_interactions, seed))
    item_cdf = _zipf_cdf(n_items, item_alpha)
    popularity = np.random.default_rng([seed, 3]).permutation(n_items)  # popularity rank -> item id
    cover = np.random.default_rng([seed, 4]).permutation(n_items)  # item covered by the k-th coverage row
    stride = n_interactions // n_items
    out = np.lib.format.open_memmap(folder / "interactions.npy", mode="w+", dtype=np.int64, shape=(n_interactions, 3))
    for lo in range(0, n_interactions, CHUNK):
        rows = np.arange(lo, min(lo + CHUNK, n_interactions), dtype=np.int64)
        rng = np.random.default_rng([seed, 5, lo])
        items = popularity[np.searchsorted(item_cdf, rng.random(len(rows)))]
        covering = (rows % stride == 0) & (rows // stride < n_items)
        items[covering] = cover[rows[covering] // stride]
        out[lo : lo + len(rows), 0] = np.searchsorted(ends, rows, side="right")
        out[lo : lo + len(rows), 1] = items
        out[lo : lo + len(rows), 2] = T0 + rng.integers(0, SPAN, len(rows))
    out.flush()
    del out


def generate(folder: str | Path, n_items: int, n_interactions: int, seed: int = 0, *, images: int = 0,
             n_users: int | None = None, item_alpha: float = 1.0) -> Path:
    """Write a complete synthetic dataset folder (items, interactions, ``meta.json``); returns it."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    write_items(folder, n_items, seed, images)
    write_interactions(folder, n_items, n_interactions, seed, n_users=n_users, item_alpha=item_alpha)
    meta = {"items": n_items, "interactions": n_interactions, "users": n_users or max(1, n_interactions // 20),
            "seed": seed, "images": images, "item_alpha": item_alpha, "words_lognormal": [WORDS_MU, WORDS_SIGMA]}
    (folder / "meta.json").write_text(json.dumps(meta, indent=1) + "\n")
    return folder


def read_items(path: Path) -> tuple[list[str], list[str], list[str]]:
    """Ids, texts and images (absolute paths, "" when none) of ``items.tsv``."""
    ids, texts, images = [], [], []
    for line in open(path, encoding="utf-8"):
        item, text, image = line.rstrip("\n").split("\t")
        ids.append(item)
        texts.append(text)
        images.append(str(path.parent / image) if image else "")
    return ids, texts, images


def read_synthetic(files: dict[str, Path]) -> RawData:
    """The generator's folder -> ``RawData`` (items coded in catalogue order; all appear by construction)."""
    table = np.load(files["interactions.npy"], mmap_mode="r")
    users, items = np.asarray(table[:, 0]), np.asarray(table[:, 1])
    perm, uniq_users, counts = group_chronologically(users, np.asarray(table[:, 2]))
    uniq_items, codes = np.unique(items[perm], return_inverse=True)
    ids, texts, images = read_items(files["items.tsv"])
    if len(uniq_items) != len(ids):
        ids, texts, images = ([col[i] for i in uniq_items.tolist()] for col in (ids, texts, images))
    user_ids = [f"u{u}" for u in uniq_users.tolist()]
    return RawData(user_ids, counts, codes.astype(np.int64), ids, texts, images)


def synthetic() -> DatasetSpec:
    layout = Layout("generated", ("items.tsv", "interactions.npy"), read_synthetic,
                    description="python -m harness.data.synthetic --out <data>/synthetic")
    return DatasetSpec("synthetic", "Synthetic power-law catalogue (cost curves; see harness.data.synthetic)",
                       (layout,), text_fields=("title",), k_core=1)


if __name__ != "__main__":  # `python -m` runs this file a second time, after harness.data registered it
    register_dataset(synthetic)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True, help="dataset folder (its name should be 'synthetic' for the registry)")
    p.add_argument("--items", type=int, required=True)
    p.add_argument("--interactions", type=int, required=True)
    p.add_argument("--users", type=int, help="default: interactions / 20")
    p.add_argument("--images", type=int, default=0, help="write JPEGs for the first N items")
    p.add_argument("--item-alpha", type=float, default=1.0, help="Zipf exponent of item popularity")
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)
    generate(a.out, a.items, a.interactions, a.seed, images=a.images, n_users=a.users, item_alpha=a.item_alpha)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
