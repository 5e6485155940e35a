"""ItemRepresentation: the three modes, invalid feature rows, KDSR hooks, frozen buffers."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest
import torch

from harness.models.items import ItemRepresentation, compress, normalise

N, D = 30, 8


@dataclass
class FakeFeatures:  # the Features shape (.matrix, .valid): a plain container, not a mock of any behaviour
    matrix: np.ndarray
    valid: np.ndarray


def _text(invalid=(3, 7)) -> FakeFeatures:
    rng = np.random.default_rng(0)
    matrix = rng.normal(size=(N, 12)).astype(np.float32) * 5 + 2
    valid = np.ones(N, dtype=bool)
    valid[list(invalid)] = False
    matrix[list(invalid)] = 99.0  # garbage in invalid rows must never leak
    return FakeFeatures(matrix, valid)


def _items(mode: str, **kw) -> ItemRepresentation:
    torch.manual_seed(0)
    return ItemRepresentation(N, D, mode, {"text": _text()}, **kw)


def test_unknown_mode_and_missing_features_are_clear_errors():
    with pytest.raises(ValueError, match="id, frozen, finetune"):
        ItemRepresentation(N, D, "tuned", {"text": _text()})
    with pytest.raises(ValueError, match="needs modality features"):
        ItemRepresentation(N, D, "frozen", None)
    with pytest.raises(ValueError, match="rows"):
        ItemRepresentation(N + 1, D, "frozen", {"text": _text()})
    with pytest.raises(KeyError, match="text"):
        _items("finetune").supervised("image", torch.ones(1, 1, dtype=torch.long))


@pytest.mark.parametrize("mode", ["id", "frozen", "finetune"])
def test_embed_matches_all_items_and_padding_is_zero(mode):
    items = _items(mode)
    seq = torch.tensor([[0, 1, 4, 8], [0, 0, 30, 2]])
    table = items.all_items()
    assert table.shape == (N + 1, D)
    torch.testing.assert_close(items.embed(seq), table[seq])
    assert table[0].abs().max() == 0


@pytest.mark.parametrize("mode", ["frozen", "finetune"])
def test_invalid_feature_rows_are_id_only(mode):
    items = _items(mode)
    rows = torch.tensor([4, 8])  # items 3 and 7 (shifted by one) are invalid
    torch.testing.assert_close(items.all_items()[rows], items.id.weight[rows])
    assert items.supervised("text", rows[None]).abs().max() == 0
    valid_row = torch.tensor([[2]])
    assert items.supervised("text", valid_row).abs().max() > 0
    expected = items.id.weight[2] + items.supervised("text", valid_row)[0, 0]
    torch.testing.assert_close(items.all_items()[2], expected)


def test_frozen_features_get_no_gradient_and_stay_fixed():
    items = _items("frozen")
    buffer = items.feature_text.clone()
    opt = torch.optim.Adam(items.parameters(), lr=0.1)
    for _ in range(3):
        loss = items.embed(torch.tensor([[1, 2, 5, 6]])).pow(2).sum() + items.all_items().sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert not items.feature_text.requires_grad and items.feature_text.grad is None
    torch.testing.assert_close(items.feature_text, buffer)
    assert items.projections["text"].weight.grad.abs().sum() > 0
    assert "feature_text" not in items.state_dict()  # rebuilt from the cache, not checkpointed
    assert all(p.requires_grad for p in items.parameters())


def test_frozen_features_are_centred_and_scaled_but_keep_geometry():
    text = _text()
    items = _items("frozen")
    rows = items.feature_text[1:][torch.from_numpy(text.valid)]
    assert rows.norm(dim=1).mean() == pytest.approx(1.0, abs=1e-5)
    assert rows.mean(0).abs().max() < 1e-5
    raw = torch.from_numpy(text.matrix[text.valid])
    ratio = torch.cdist(rows, rows)[0, 1:] / torch.cdist(raw, raw)[0, 1:]
    torch.testing.assert_close(ratio, torch.full_like(ratio, float(ratio[0])))


def test_finetune_table_is_the_pca_of_the_features():
    text = _text()
    items = _items("finetune")
    table = items.tables["text"].detach()[1:][torch.from_numpy(text.valid)]
    raw = torch.from_numpy(text.matrix[text.valid]).double()
    centred = raw - raw.mean(0)
    _, _, vt = torch.linalg.svd(centred, full_matrices=False)
    exact = centred @ vt[:D].T
    # PCA up to the sign of each component and one global scale
    t = table.double()
    signs = torch.sign((t * exact).sum(0))
    scale = (t * signs).norm() / exact.norm()
    torch.testing.assert_close(t * signs, exact * scale, atol=2e-3, rtol=2e-2)
    assert float(table.std()) == pytest.approx(0.02, rel=0.05)


def test_finetune_uses_a_given_initialisation_of_width_dim():
    init = np.arange(N * D, dtype=np.float32).reshape(N, D)
    items = _items("finetune", init={"text": init})
    torch.testing.assert_close(items.tables["text"][1:3].detach(), torch.from_numpy(init[:2]))
    assert items.tables["text"][4].abs().max() == 0  # item 3 invalid


def test_compress_pads_extra_columns_when_dim_exceeds_rank():
    m = torch.randn(10, 3)
    valid = torch.ones(10, dtype=torch.bool)
    valid[0] = False
    out = compress(m, valid, 6)
    assert out.shape == (10, 6) and out[0].abs().max() == 0
    assert torch.linalg.matrix_rank(out[1:]) == 6


def test_normalise_with_no_valid_row_is_zero():
    assert normalise(torch.ones(3, 2), torch.zeros(3, dtype=torch.bool)).abs().max() == 0


@pytest.mark.parametrize("mode", ["id", "frozen", "finetune"])
def test_supervised_and_async_parameters_per_mode(mode):
    items = _items(mode)
    seq = torch.tensor([[1, 2, 0]])
    out = items.supervised("text", seq)
    assert out.shape == (1, 3, D)
    modality = items.async_parameters()  # default scope: the modality part only (the paper's slow start)
    assert len(modality) == {"id": 0, "frozen": 2, "finetune": 1}[mode]  # projection weight and bias | table
    assert all(p is not items.id.weight for p in modality)
    every = items.async_parameters("all")
    assert every[0] is items.id.weight and every[1:] == modality
    out.sum().backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in every)
    if mode == "id":
        torch.testing.assert_close(out, items.id(seq))
    assert items.modalities == ["text"]
    with pytest.raises(ValueError, match="valid: modality, all"):
        items.async_parameters("ids")


def test_bare_arrays_count_zero_rows_as_invalid():
    matrix = np.random.default_rng(1).normal(size=(N, 4)).astype(np.float32)
    matrix[5] = 0
    items = ItemRepresentation(N, D, "finetune", {"text": matrix})
    assert not bool(items.valid("text")[6]) and bool(items.valid("text")[5])


def test_compress_matches_exact_pca_when_features_are_wider_than_dim():
    g = torch.Generator().manual_seed(0)
    basis = torch.linalg.qr(torch.randn(64, 64, generator=g))[0]
    spectrum = 0.7 ** torch.arange(64.0)
    m = (torch.randn(300, 64, generator=g) * spectrum) @ basis.T + 3.0
    valid = torch.ones(300, dtype=torch.bool)
    out = compress(m, valid, 8).double()
    centred = (m - m.mean(0)).double()
    exact = centred @ torch.linalg.svd(centred, full_matrices=False)[2][:8].T
    signs = torch.sign((out * exact).sum(0))
    torch.testing.assert_close(out * signs, exact * (0.02 / exact.std()), atol=1e-4, rtol=1e-3)
