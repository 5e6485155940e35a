"""The synthetic cost-curve catalogue: deterministic, power-law, every item present, loadable as a dataset."""

from __future__ import annotations

import numpy as np

from harness.batching import causal_windows
from harness.data import load_dataset
from harness.data.synthetic import WORDS_MU, generate, user_lengths


def test_generator_is_deterministic_and_covers_every_item(tmp_path):
    a, b = generate(tmp_path / "a" / "synthetic", 300, 3000, seed=3), generate(tmp_path / "b" / "synthetic", 300, 3000, seed=3)
    for name in ("items.tsv", "interactions.npy"):
        assert (a / name).read_bytes() == (b / name).read_bytes()
    table = np.load(a / "interactions.npy")
    assert table.shape == (3000, 3) and set(table[:, 1].tolist()) == set(range(300))
    counts = np.bincount(table[:, 1])
    assert counts.max() > 20 * np.median(counts)  # Zipf head
    words = [len(line.split("\t")[1].split()) for line in (a / "items.tsv").read_text().splitlines()]
    assert abs(np.log(words).mean() - WORDS_MU) < 0.15


def test_user_lengths_are_power_law_with_a_floor():
    lengths = user_lengths(1000, 50_000, seed=0)
    assert lengths.sum() == 50_000 and lengths.min() >= 5 and lengths.max() > 10 * np.median(lengths)


def test_loads_through_the_registry_with_images(tmp_path):
    generate(tmp_path / "synthetic", 50, 400, seed=0, images=3)
    ds = load_dataset("synthetic", tmp_path)
    assert ds.num_items == 50 and ds.num_interactions == 400 and ds.lengths().min() >= 5
    assert all(ds.items.images[i].endswith(f"images/{i}.jpg") for i in range(3)) and ds.items.images[3] == ""
    assert ds.items.raw_ids[:2] == ["i0", "i1"] and all(ds.items.texts)


def test_causal_windows_cover_every_target_once():
    lengths = np.array([0, 1, 2, 3, 7, 51, 52, 120])
    users, starts, sizes = causal_windows(lengths, 5)
    for u, n in enumerate(lengths):
        covered = np.concatenate([np.arange(s + 1, s + z) for s, z in zip(starts[users == u], sizes[users == u])] or [[]])
        assert sorted(covered.tolist()) == list(range(1, max(n, 1)))
    assert sizes.max() <= 6
