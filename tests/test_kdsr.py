"""KDSR as the training loop uses it: losses on real ItemRepresentations (every mode), ablation
switches, pair sampling, the forgetting monitor, and that the supervision does what it claims."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from harness.config import KDSRConfig
from harness.kdsr import KDSR, fit_teacher
from harness.kdsr.signals import use_tables
from harness.kdsr.student import dissected_loss, holistic_loss, pair_mask
from harness.kdsr.teacher import TeacherSpec
from harness.models import ItemRepresentation

N, DIM = 200, 16


@pytest.fixture(scope="module")
def world():
    """Items in 8 feature clusters, sequences that mix clusters, one invalid item, a fitted teacher."""
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(8, 32)) * 3
    feats = (centres[rng.integers(0, 8, N)] + rng.normal(size=(N, 32))).astype(np.float32)
    feats[3] = 0.0
    valid = np.ones(N, dtype=bool)
    valid[3] = False
    seqs = [rng.integers(0, N, size=rng.integers(5, 60)) for _ in range(150)]
    spec = TeacherSpec(latent_dim=16, sub_vectors=4, codes=10, fit_pairs=20_000, quantizer="kmeans", ae_max_epochs=60)
    teacher, _ = fit_teacher(feats, valid, seqs, spec, progress=False)
    batch = torch.zeros(6, 40, dtype=torch.long)
    for row in range(6):
        items = torch.from_numpy(seqs[row][:40]) + 1
        batch[row, -len(items):] = items  # left padded, shifted ids
    return feats, valid, teacher, batch


def make(world, cfg: KDSRConfig | None = None, monitor: bool = True) -> KDSR:
    feats, _, teacher, _ = world
    cfg = cfg or KDSRConfig(enabled=True, pairs="all")
    return KDSR({"text": teacher}, cfg, dim=DIM, monitor_features={"text": feats} if monitor else None)


@pytest.mark.parametrize("mode", ["id", "frozen", "finetune"])
def test_losses_backpropagate_to_item_tables_and_heads(world, mode):
    feats, _, _, batch = world
    torch.manual_seed(0)
    items = ItemRepresentation(N, DIM, mode, {"text": feats})
    kdsr = make(world)
    out = kdsr.losses(items, batch)
    assert set(out) == {"holistic", "dissected", "total"}
    assert all(torch.isfinite(v) and v > 0 for v in out.values())
    assert out["total"].item() == pytest.approx(0.5 * out["holistic"].item() + 0.1 * out["dissected"].item(), rel=1e-6)
    out["total"].backward()
    supervised = {"id": lambda: items.id.weight, "frozen": lambda: items.projections["text"].weight, "finetune": lambda: items.tables["text"]}[mode]()
    assert supervised.grad is not None and supervised.grad.abs().sum() > 0
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in kdsr.parameters())


def test_losses_compose_the_documented_terms(world):
    feats, valid, teacher, batch = world
    torch.manual_seed(0)
    items = ItemRepresentation(N, DIM, "finetune", {"text": feats})
    kdsr = make(world, KDSRConfig(enabled=True, pairs="all", tau=0.7, signals="onthefly"))
    out = kdsr.losses(items, batch)
    ids = (batch - 1).clamp_min(0)
    mask = pair_mask(batch, torch.from_numpy(valid)[ids])
    t_scores, t_codes = teacher.grid(ids)
    emb = items.supervised("text", batch)
    heads = kdsr.heads["text"]
    expected_h = holistic_loss(heads.holistic_scores(emb), t_scores, mask, 0.7, True)
    expected_d = dissected_loss(heads.dissected_logits(emb), t_codes, mask)
    assert out["holistic"].item() == pytest.approx(expected_h.item(), rel=1e-6)
    assert out["dissected"].item() == pytest.approx(expected_d.item(), rel=1e-6)
    assert not mask[batch == 4].any()  # item 3 (shifted 4) has no feature: never supervised


@pytest.mark.parametrize(
    "switches, zero",
    [
        ({"holistic": False}, {"holistic"}),
        ({"dissected": False}, {"dissected"}),
        ({"holistic": False, "dissected": False}, {"holistic", "dissected", "total"}),
    ],
)
def test_ablation_switches(world, switches, zero):
    feats, _, _, batch = world
    items = ItemRepresentation(N, DIM, "finetune", {"text": feats})
    out = make(world, KDSRConfig(enabled=True, pairs="all", **switches)).losses(items, batch)
    assert {k for k, v in out.items() if v.item() == 0.0} == zero


def test_hard_match_switch(world):
    feats, _, teacher, batch = world
    items = ItemRepresentation(N, DIM, "finetune", {"text": feats})
    torch.manual_seed(0)
    soft = make(world, KDSRConfig(enabled=True, pairs="all", signals="onthefly"))
    hard = make(world, KDSRConfig(enabled=True, pairs="all", soft_match=False, signals="onthefly"))
    hard.load_state_dict(soft.state_dict())
    ids = (batch - 1).clamp_min(0)
    t_scores, _ = teacher.grid(ids)
    student = soft.heads["text"].holistic_scores(items.supervised("text", batch))
    mask = pair_mask(batch, teacher.valid[ids])
    r = np.corrcoef(student[mask].detach().numpy(), t_scores[mask].numpy())[0, 1]
    assert hard.losses(items, batch)["holistic"].item() == pytest.approx(2 * (1 - r), rel=1e-4)
    assert soft.losses(items, batch)["holistic"].item() != pytest.approx(2 * (1 - r), rel=1e-2)


class RecordingItems(ItemRepresentation):
    """A real ItemRepresentation that records the shape KDSR asks it for."""

    shapes: list

    def supervised(self, modality, item_seq):
        self.shapes.append(tuple(item_seq.shape))
        return super().supervised(modality, item_seq)


def test_sampled_pairs_bound_the_grid(world):
    feats, _, _, batch = world
    items = RecordingItems(N, DIM, "finetune", {"text": feats})
    items.shapes = []
    make(world, KDSRConfig(enabled=True, pairs="sample", max_pairs=10)).losses(items, batch)
    make(world, KDSRConfig(enabled=True, pairs="all")).losses(items, batch)
    assert items.shapes == [(6, 5), (6, 40)]  # 5 positions = 10 unordered pairs per sequence


def test_two_modalities_sum(world):
    feats, _, teacher, batch = world
    items = ItemRepresentation(N, DIM, "finetune", {"text": feats, "image": feats[:, ::-1].copy()})
    cfg = KDSRConfig(enabled=True, pairs="all")
    kdsr = KDSR({"text": teacher, "image": teacher}, cfg, dim=DIM)
    out = kdsr.losses(items, batch)
    parts = [kdsr.modality_losses(items, m, batch) for m in ("text", "image")]
    assert out["holistic"].item() == pytest.approx(sum(h.item() for h, _ in parts), rel=1e-6)
    assert out["dissected"].item() == pytest.approx(sum(d.item() for _, d in parts), rel=1e-6)


# ---------------------------------------------------------------- forgetting monitor

def np_cos(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def test_monitor_matches_numpy(world):
    feats, _, _, _ = world
    torch.manual_seed(1)
    items = ItemRepresentation(N, DIM, "finetune", {"text": feats})
    kdsr = make(world, KDSRConfig(enabled=True, monitor_pairs=500))
    got = kdsr.monitor(items)
    pairs = kdsr.forgetting.items_text[kdsr.forgetting.pairs_text].numpy()  # [P, 2] 0-based items
    assert len(pairs) == 500 and (pairs[:, 0] != pairs[:, 1]).all() and not np.isin(pairs, [3]).any()
    table = items.tables["text"].detach().numpy()[1:]
    ids = items.id.weight.detach().numpy()[1:]
    sims = np_cos(table[pairs[:, 0]], table[pairs[:, 1]])
    assert got["monitor/pearson_text"] == pytest.approx(np.corrcoef(sims, np_cos(feats[pairs[:, 0]], feats[pairs[:, 1]]))[0, 1], abs=1e-5)
    assert got["monitor/pearson_id_text"] == pytest.approx(np.corrcoef(sims, np_cos(ids[pairs[:, 0]], ids[pairs[:, 1]]))[0, 1], abs=1e-5)
    # finetune tables start from the features (PCA): strongly correlated before any training
    assert got["monitor/pearson_text"] > 0.8


def test_monitor_id_mode_and_off(world):
    feats, _, _, _ = world
    items = ItemRepresentation(N, DIM, "id", {"text": feats})
    got = make(world).monitor(items)
    assert got["monitor/pearson_id_text"] == pytest.approx(1.0)
    assert abs(got["monitor/pearson_text"]) < 0.2  # random ID table: unrelated to the features
    assert make(world, KDSRConfig(enabled=True, monitor=False)).monitor(items) == {}


def test_kdsr_supervision_restores_modality_correlation(world):
    """Training random ID embeddings on the KDSR losses alone makes their similarities follow the features."""
    feats, _, _, _ = world
    torch.manual_seed(0)
    items = ItemRepresentation(N, DIM, "id", {"text": feats})
    kdsr = make(world, KDSRConfig(enabled=True, pairs="sample", max_pairs=45, lambda_holistic=1.0, lambda_dissected=0.5))
    opt = torch.optim.Adam([*items.parameters(), *kdsr.parameters()], lr=1e-2)
    before = kdsr.monitor(items)["monitor/pearson_text"]
    gen = torch.Generator().manual_seed(0)
    first = last = None
    for _ in range(150):
        batch = torch.randint(1, N + 1, (32, 20), generator=gen)
        out = kdsr.losses(items, batch)
        opt.zero_grad()
        out["total"].backward()
        opt.step()
        first = first or out["total"].item()
        last = out["total"].item()
    after = kdsr.monitor(items)["monitor/pearson_text"]
    assert last < first
    print(f'pearson before {before:.3f} after {after:.3f}; loss {first:.3f} -> {last:.3f}')
    assert after > before + 0.3, (before, after)


def test_signal_source_choice():
    assert use_tables("auto", "all", 3416) and not use_tables("auto", "sample", 3416)
    assert not use_tables("auto", "all", 20_000)  # 1.2 GB of tables: over the budget
    assert use_tables("table", "sample", 20_000) and not use_tables("onthefly", "all", 10)
    with pytest.raises(ValueError, match="auto, onthefly, table"):
        use_tables("precomputed", "all", 10)


def test_tables_give_the_same_losses(world):
    feats, _, _, batch = world
    items = ItemRepresentation(N, DIM, "finetune", {"text": feats})
    torch.manual_seed(0)
    fly = make(world, KDSRConfig(enabled=True, pairs="all", signals="onthefly"))
    table = make(world, KDSRConfig(enabled=True, pairs="all"))  # auto: tables for pairs=all
    table.load_state_dict(fly.state_dict())
    assert "text" in table.tables and "text" not in fly.tables
    a, b = fly.losses(items, batch), table.losses(items, batch)
    assert a["dissected"].item() == pytest.approx(b["dissected"].item(), rel=1e-3)
    assert a["holistic"].item() == pytest.approx(b["holistic"].item(), rel=1e-2)  # fp16 table scores
