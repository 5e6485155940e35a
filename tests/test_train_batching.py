"""Training inputs: causal windows cover every next-item target exactly once, with the right history."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from harness import train
from harness.batching import (
    SequenceStore,
    causal_windows,
    prefix_targets,
    range_targets,
    width_groups,
)
from harness.config import Config
from harness.models import build_model, list_backbones


@pytest.mark.parametrize("max_len", [1, 3, 50])
def test_causal_windows_cover_each_target_once(max_len):
    lengths = np.array([0, 1, 2, 5, 7, 8, 120])
    users, starts, sizes = causal_windows(lengths, max_len)
    assert (sizes >= 2).all() and (sizes <= max_len + 1).all()
    covered = {(int(u), int(s) + j) for u, s, z in zip(users, starts, sizes) for j in range(1, int(z))}
    want = {(u, p) for u, n in enumerate(lengths) for p in range(1, int(n))}
    assert covered == want
    assert sum(int(z) - 1 for z in sizes) == len(want)  # no target twice
    last = {int(u): (int(s), int(z)) for u, s, z in zip(users, starts, sizes) if int(s) + int(z) == lengths[u]}
    assert last[6] == (120 - min(max_len + 1, 120), min(max_len + 1, 120))  # the most recent window is full


def test_window_inputs_and_targets_are_shifted_by_one():
    store = SequenceStore([np.arange(10, 17)])  # items 10..16
    users, starts, sizes = causal_windows(np.array([7]), max_len=4)
    assert list(zip(starts.tolist(), sizes.tolist())) == [(2, 5), (0, 3)]
    inputs = store.slices(users, starts, sizes - 1, 4)
    targets = store.slices(users, starts + 1, sizes - 1, 4)
    assert inputs.tolist() == [[13, 14, 15, 16], [11, 12, 0, 0]]  # shifted ids (+1), right-padded
    assert targets.tolist() == [[14, 15, 16, 17], [12, 13, 0, 0]]


def test_prefix_and_range_targets():
    u, p = prefix_targets(np.array([3, 1, 2]))
    assert list(zip(u.tolist(), p.tolist())) == [(0, 1), (0, 2), (2, 1)]
    u, p = range_targets(np.array([2, 0]), np.array([4, 1]))
    assert list(zip(u.tolist(), p.tolist())) == [(0, 2), (0, 3), (1, 0)]


def test_slices_out_of_range_is_an_error():
    store = SequenceStore([np.arange(3)])
    with pytest.raises(ValueError, match="out of range"):
        store.slices(np.array([0]), np.array([1]), np.array([3]), 4)


def test_width_groups_cover_every_row_once_wide_enough():
    lengths = torch.tensor([1, 8, 9, 16, 17, 33, 50, 3, 0])
    groups = width_groups(lengths, 50)
    rows = torch.cat([r for r, _ in groups]).sort().values
    assert rows.tolist() == list(range(len(lengths)))
    width_of = {int(r): w for rs, w in groups for r in rs}
    assert [width_of[i] for i in range(len(lengths))] == [8, 8, 16, 16, 32, 50, 50, 8, 8]


def _cell(backbone: str) -> train.Cell:
    cfg = Config()
    cfg.model.name, cfg.model.items, cfg.model.dim, cfg.model.dropout = backbone, "finetune", 16, 0.0
    cfg.model.clusters, cfg.model.cluster_links, cfg.dataset.max_len = 5, 2, 40
    cfg.features.text_encoder = "tiny"
    torch.manual_seed(0)
    features = {"text": np.random.default_rng(0).normal(size=(30, 12)).astype(np.float32)}
    model = build_model(cfg, 30, features).eval()
    return train.Cell(cfg, torch.device("cpu"), None, None, None, model, None, None, features, None)


@pytest.mark.parametrize("backbone", list_backbones())
def test_grouping_by_width_changes_no_loss_and_no_score(backbone):
    cell = _cell(backbone)
    g = torch.Generator().manual_seed(2)
    lengths = torch.tensor([1, 3, 8, 9, 15, 17, 30, 40])
    cols = torch.arange(40)
    inputs = torch.where(cols < lengths[:, None], torch.randint(1, 31, (8, 40), generator=g), 0)
    targets = torch.where(cols < lengths[:, None], torch.randint(1, 31, (8, 40), generator=g), 0)
    with torch.no_grad():
        hidden = cell.model(inputs)
        where = targets > 0
        full_loss = torch.nn.functional.cross_entropy(cell.model.scores(hidden[where]), targets[where] - 1)
        full_scores = cell.model.scores(hidden[torch.arange(8), lengths - 1])
        grouped_loss = train.batch_loss(cell, inputs, targets)["rec"]
        grouped_scores = train.model_scorer(cell)(inputs, lengths)
    assert len(train.groups(cell, inputs)) == 4  # widths 8, 16, 32, 40: the grouped path really ran
    torch.testing.assert_close(grouped_loss, full_loss, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(grouped_scores, full_scores, atol=1e-5, rtol=1e-5)
