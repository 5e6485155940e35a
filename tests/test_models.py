"""Backbones x item representations: forward/backward, causality, padding, registry (tiny, CPU)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from harness.config import Config
from harness.models import MODES, build_model, get_builder, list_backbones

N_ITEMS, DIM = 40, 16


def _features(seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {"text": rng.normal(size=(N_ITEMS, 12)).astype(np.float32), "image": rng.normal(size=(N_ITEMS, 20)).astype(np.float32)}


def _cfg(backbone: str, mode: str, dropout: float = 0.1) -> Config:
    cfg = Config()
    cfg.model.name, cfg.model.items, cfg.model.dim, cfg.model.heads = backbone, mode, DIM, 2
    cfg.model.layers, cfg.model.dropout, cfg.model.clusters, cfg.model.cluster_links = 2, dropout, 5, 2
    cfg.dataset.max_len = 12
    cfg.features.text_encoder = "tiny"
    return cfg


def _model(backbone: str, mode: str = "id", dropout: float = 0.0, seed: int = 0):
    torch.manual_seed(seed)
    return build_model(_cfg(backbone, mode, dropout), N_ITEMS, _features())


def _batch() -> torch.Tensor:
    g = torch.Generator().manual_seed(1)
    seq = torch.randint(1, N_ITEMS + 1, (5, 12), generator=g)
    seq[1, :4] = 0  # left padded
    seq[2, 9:] = 0  # right padded
    seq[3, :11] = 0  # a single item
    return seq


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("backbone", list_backbones())
def test_forward_backward_every_backbone_and_mode(backbone, mode):
    model = _model(backbone, mode, dropout=0.1)
    model.train()
    seq = _batch()
    hidden = model(seq)
    assert hidden.shape == (5, 12, DIM)
    scores = model.scores(hidden[:, -1])
    assert scores.shape == (5, N_ITEMS)
    loss = torch.nn.functional.cross_entropy(scores, torch.arange(5))
    loss.backward()
    assert torch.isfinite(hidden).all() and torch.isfinite(loss)
    grads = {n: p.grad for n, p in model.named_parameters()}
    assert all(g is not None and torch.isfinite(g).all() for g in grads.values()), [n for n, g in grads.items() if g is None]
    assert any(g.abs().sum() > 0 for n, g in grads.items() if "items." in n)
    assert model.items.mode == mode and isinstance(model.causal, bool)


@pytest.mark.parametrize("backbone", list_backbones())
def test_causal_backbones_do_not_see_the_future(backbone):
    model = _model(backbone, "finetune").eval()
    if not model.causal:
        pytest.fail(f"{backbone} is not causal; all-position training needs a causal backbone")
    seq = _batch()
    changed = seq.clone()
    changed[:, 7] = torch.where(changed[:, 7] > 0, changed[:, 7] % N_ITEMS + 1, 0)
    with torch.no_grad():
        a, b = model(seq), model(changed)
    torch.testing.assert_close(a[:, :7], b[:, :7])
    real = seq[:, 7] > 0
    assert (a[real, 7] - b[real, 7]).abs().max() > 1e-4  # the change is visible from position 7 on


@pytest.mark.parametrize("backbone", list_backbones())
def test_padding_does_not_change_real_positions(backbone):
    model = _model(backbone, "frozen").eval()
    g = torch.Generator().manual_seed(3)
    seq = torch.randint(1, N_ITEMS + 1, (3, 7), generator=g)
    left = torch.cat([torch.zeros(3, 5, dtype=torch.long), seq], 1)
    right = torch.cat([seq, torch.zeros(3, 5, dtype=torch.long)], 1)
    with torch.no_grad():
        plain, lhs, rhs = model(seq), model(left), model(right)
    torch.testing.assert_close(lhs[:, -1], plain[:, -1], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(rhs[:, 6], plain[:, -1], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(lhs[:, 5:], plain, atol=1e-5, rtol=1e-5)


def test_dropout_only_in_training_mode():
    model = _model("sasrec", "id", dropout=0.5)
    seq = _batch()
    model.eval()
    with torch.no_grad():
        torch.testing.assert_close(model(seq), model(seq))
    model.train()
    with torch.no_grad():
        assert (model(seq) - model(seq)).abs().max() > 1e-3


def test_scores_are_dot_products_with_item_vectors_without_pad_column():
    model = _model("sasrec", "finetune").eval()
    hidden = torch.randn(3, DIM)
    vectors = model.items.all_items()
    expected = torch.stack([torch.stack([hidden[b] @ vectors[j + 1] for j in range(N_ITEMS)]) for b in range(3)])
    torch.testing.assert_close(model.scores(hidden), expected)


def test_unknown_backbone_lists_valid_names():
    with pytest.raises(KeyError) as err:
        get_builder("sasrek")
    assert "sasrec" in str(err.value) and "valid" in str(err.value)
    with pytest.raises(KeyError, match="sasrec"):
        build_model(_cfg("sasrek", "id"), N_ITEMS, {})


def test_sasrec_rejects_sequences_longer_than_its_positions():
    model = _model("sasrec", "id")
    with pytest.raises(ValueError, match="max_len=12"):
        model(torch.randint(1, N_ITEMS + 1, (2, 13)))


def test_cpu_attention_dropout_path_matches_sdpa_when_nothing_is_dropped():
    from harness.models.layers import Dropout, attention

    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, 2, 6, 4, generator=g) for _ in range(3))
    mask = torch.ones(6, 6, dtype=torch.bool).tril().expand(2, 1, 6, 6)
    drop = Dropout(1e-12).train()  # takes the explicit-softmax path, drops nothing in practice
    expected = torch.nn.functional.scaled_dot_product_attention(q, k, v, mask)
    torch.testing.assert_close(attention(q, k, v, mask, drop), expected)


def test_cheap_dropout_keeps_the_right_fraction_and_is_unbiased():
    from harness.models.layers import Dropout

    torch.manual_seed(0)
    x = torch.ones(400_000)
    y = Dropout(0.3).train()(x)
    kept = (y > 0).float().mean()
    assert abs(float(kept) - 0.7) < 0.005
    assert abs(float(y.mean()) - 1.0) < 0.01
    torch.testing.assert_close(y[y > 0], torch.full_like(y[y > 0], 1 / 0.7))


def test_build_model_passes_a_finetune_initialisation_through():
    init = {"text": np.full((N_ITEMS, DIM), 0.5, dtype=np.float32), "image": np.zeros((N_ITEMS, 3), dtype=np.float32)}
    init["image"][:, 0] = np.arange(N_ITEMS)
    model = build_model(_cfg("sasrec", "finetune"), N_ITEMS, _features(), init=init)
    torch.testing.assert_close(model.items.tables["text"][1:].detach(), torch.full((N_ITEMS, DIM), 0.5))
    assert model.items.tables["image"].shape == (N_ITEMS + 1, DIM)  # width 3 != DIM: compressed by PCA


@pytest.mark.parametrize("backbone", list_backbones())
def test_every_backbone_learns_a_sequential_rule(backbone):
    """Next item = current + step (step 1 or 2, per sequence): needs order, not popularity."""
    n, length, batch = 30, 12, 64
    cfg = _cfg(backbone, "id", dropout=0.1)
    cfg.model.dim = 32
    torch.manual_seed(0)
    model = build_model(cfg, n, {})
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    g = torch.Generator().manual_seed(1)

    def sample() -> tuple[torch.Tensor, torch.Tensor]:
        start, step = torch.randint(0, n, (batch, 1), generator=g), torch.randint(1, 3, (batch, 1), generator=g)
        seq = (start + step * torch.arange(length + 1)) % n + 1
        return seq[:, :-1], seq[:, 1:] - 1

    model.train()
    for _ in range(200):
        x, y = sample()
        loss = torch.nn.functional.cross_entropy(model.scores(model(x).reshape(-1, 32)), y.reshape(-1))
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    x, y = sample()
    with torch.no_grad():
        accuracy = (model.scores(model(x)[:, -1]).argmax(-1) == y[:, -1]).float().mean()
    assert accuracy > 0.9, float(accuracy)  # chance 1/30; popularity cannot do better than chance here
