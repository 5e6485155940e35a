"""KDSR teacher: autoencoder, codebooks (nearest codeword, fitted on real MiniLM features),
teacher signals (on the fly vs tables) and the safetensors cache."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from harness.config import KDSRConfig
from harness.data import load_dataset, make_split, train_sequences
from harness.features import encoder_key
from harness.kdsr import build_kdsr
from harness.kdsr.autoencoder import fit_autoencoder
from harness.kdsr.cache import sequences_digest, teacher_key, teacher_path
from harness.kdsr.pairs import cooccurring_pairs
from harness.kdsr.quantize import fit_codebook, fit_kmeans, fit_vq, nearest_code
from harness.kdsr.scoring import paired_correlation_vectors, paired_scores
from harness.kdsr.teacher import Teacher, TeacherSpec, TeacherTable, fit_teacher

# ---------------------------------------------------------------- codebooks

def test_nearest_code_is_brute_force_argmin():
    rng = np.random.default_rng(0)
    x, book = rng.normal(size=(500, 8)), rng.normal(size=(20, 8))
    expected = [int(np.argmin([np.sqrt(((row - c) ** 2).sum()) for c in book])) for row in x]
    got = nearest_code(torch.tensor(x, dtype=torch.float32).view(5, 100, 8), torch.tensor(book, dtype=torch.float32), chunk=37)
    assert got.shape == (5, 100) and got.flatten().tolist() == expected


def blobs(n: int = 3000, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centres = np.array([[0.0, 0.0, 0.0], [5.0, 5.0, 0.0], [0.0, 5.0, 5.0]])
    label = rng.integers(0, 3, n)
    return (centres[label] + 0.3 * rng.normal(size=(n, 3))).astype(np.float32), label


@pytest.mark.parametrize("fit", [fit_kmeans, lambda x, k, seed: fit_vq(x, k, seed, progress=False)], ids=["kmeans", "vq"])
def test_codebooks_recover_separated_clusters(fit):
    x, label = blobs()
    book = fit(x, 3, seed=0)
    codes = nearest_code(torch.from_numpy(x), torch.from_numpy(book)).numpy()
    mapping = {lab: set(codes[label == lab]) for lab in range(3)}
    assert all(len(c) == 1 for c in mapping.values())  # each cluster is one code
    assert len(set.union(*mapping.values())) == 3  # and the codes differ


def test_codebook_errors():
    with pytest.raises(ValueError, match="did you mean 'vq'"):
        fit_codebook(np.zeros((10, 2)), 3, "vqq")
    with pytest.raises(ValueError, match="raise fit_pairs"):
        fit_kmeans(np.zeros((2, 2), dtype=np.float32), 3)
    with pytest.raises(ValueError, match=r"\[2, 255\]"):
        fit_vq(np.zeros((1000, 2), dtype=np.float32), 300)


# ---------------------------------------------------------------- autoencoder

def test_autoencoder_compresses_low_rank_data_and_stops_early():
    rng = np.random.default_rng(0)
    x = (rng.normal(size=(600, 4)) @ rng.normal(size=(4, 40))).astype(np.float32)  # rank 4
    kwargs = {"seed": 0, "lr": 1e-2, "max_epochs": 300, "patience": 3, "min_delta": 1e-3, "progress": False}
    z, history = fit_autoencoder(x, 8, **kwargs)
    assert z.shape == (600, 8) and ((z > 0) & (z < 1)).all()  # sigmoid code
    assert len(history) < 300 and history[-1] < 0.05 * history[0]
    best = min(history[:-3])  # stopped: none of the last 3 epochs beat the best before them by 0.1%
    assert all(h >= best * (1 - 1e-3) for h in history[-3:])
    z2, history2 = fit_autoencoder(x, 8, **kwargs)
    assert history2 == history and np.array_equal(z, z2)  # seeded


# ---------------------------------------------------------------- teacher signals

@pytest.fixture(scope="module")
def small() -> tuple[dict[str, Teacher], list[np.ndarray], np.ndarray]:
    rng = np.random.default_rng(1)
    feats = rng.normal(size=(120, 24)).astype(np.float32)
    valid = np.ones(120, dtype=bool)
    valid[7] = False
    seqs = [rng.integers(0, 120, size=rng.integers(4, 30)) for _ in range(80)]
    out = {}
    for score in ("cosine", "dot", "euclidean", "manhattan"):
        spec = TeacherSpec(latent_dim=16, score=score, quantizer="kmeans", sub_vectors=4, codes=12, fit_pairs=4000, ae_max_epochs=30)
        out[score], _ = fit_teacher(feats, valid, seqs, spec, progress=False)
    return out, seqs, valid


@pytest.mark.parametrize("score", ["cosine", "dot", "euclidean", "manhattan"])
def test_teacher_grid_scores_and_codes(small, score):
    teacher = small[0][score]
    ids = torch.randint(0, 120, (3, 6), generator=torch.Generator().manual_seed(0))
    scores, codes = teacher.grid(ids)
    z = teacher.latents
    for b in range(3):
        for i in range(6):
            for j in range(6):
                if ids[b, i] == ids[b, j]:
                    continue
                za, zb = z[ids[b, i]], z[ids[b, j]]
                expected = (paired_scores(za, zb, score).item() - teacher.mean) / teacher.std
                assert scores[b, i, j].item() == pytest.approx(expected, rel=1e-4, abs=1e-4)
                vec = paired_correlation_vectors(za, zb, 4, score)
                dists = [float(torch.linalg.norm(vec - c)) for c in teacher.codebook]
                assert codes[b, i, j].item() == int(np.argmin(dists))  # nearest codeword


@pytest.mark.parametrize("score", ["cosine", "dot", "euclidean", "manhattan"])
def test_teacher_scores_are_z_scores_over_fit_pairs(small, score):
    teachers, seqs, valid = small
    teacher = teachers[score]
    a, b = torch.from_numpy(cooccurring_pairs(seqs, 4000, seed=0, valid=valid)).T  # the pairs it was fitted on
    scores, _ = teacher.paired(a, b)
    assert float(scores.mean()) == pytest.approx(0.0, abs=1e-4)
    assert float(scores.std(unbiased=False)) == pytest.approx(1.0, rel=1e-4)


def test_tables_equal_on_the_fly(small):
    teacher = small[0]["cosine"]
    table = TeacherTable(teacher)
    ids = torch.randint(0, 120, (4, 9), generator=torch.Generator().manual_seed(1))
    s1, c1 = teacher.grid(ids)
    s2, c2 = table.grid(ids)
    torch.testing.assert_close(s1, s2, rtol=2e-3, atol=2e-3)  # fp16 table
    assert (c1 == c2).float().mean() > 0.99  # only exact codeword ties may flip


# ---------------------------------------------------------------- real MiniLM features on ML-100K

@pytest.fixture(scope="module")
def ml100k():
    """ML-100K with real MiniLM text features from the feature cache (encoded once per session)."""
    from harness.encoding import ensure_features

    dataset = load_dataset("ml-100k")
    return dataset, make_split(dataset), ensure_features(dataset, "minilm-l6", "text")


@pytest.mark.parametrize("quantizer", ["vq", "kmeans"])
def test_codebook_fitted_on_real_features_uses_many_codes(ml100k, quantizer):
    dataset, split, features = ml100k
    spec = TeacherSpec(latent_dim=64, score="cosine", quantizer=quantizer, sub_vectors=8, codes=50, fit_pairs=50_000)
    teacher, summary = fit_teacher(features.matrix, features.valid, train_sequences(dataset, split), spec, progress=False)
    assert summary["codes_used"] > 1
    # codes of the co-occurring pairs of real sequences spread over many codewords
    seq = torch.from_numpy(np.asarray(dataset.sequences[0][:40]))
    _, codes = teacher.grid(seq[None])
    assert len(codes.unique()) > 5, summary


def test_teacher_cache_hit_on_second_build(ml100k, tmp_path):
    dataset, split, features = ml100k
    cfg = KDSRConfig(enabled=True, latent_dim=32, codes=20, fit_pairs=20_000, quantizer="kmeans")
    first = build_kdsr(cfg, dataset, split, {"text": features}, tmp_path, progress=False)
    info = first.teacher_info["text"]
    assert info["cached"] is False
    files = list((tmp_path / "teachers" / "ml-100k" / "minilm-l6" / "text").glob("*.safetensors"))
    assert [str(f) for f in files] == [info["path"]]  # one file, no temporary left behind
    second = build_kdsr(cfg, dataset, split, {"text": features}, tmp_path, progress=False)
    assert second.teacher_info["text"]["cached"] is True and second.teacher_info["text"]["path"] == info["path"]
    a, b = first.teachers["text"], second.teachers["text"]
    assert torch.equal(a.latents, b.latents) and torch.equal(a.codebook, b.codebook) and torch.equal(a.valid, b.valid)
    assert (a.mean, a.std, a.spec) == (b.mean, b.std, b.spec)


def test_teacher_key_changes_with_settings_features_and_split():
    dataset = load_dataset("ml-100k")
    paper, loo = make_split(dataset), make_split(dataset, protocol="leave-one-out")
    digest = sequences_digest(train_sequences(dataset, paper))
    base = teacher_key(TeacherSpec(), "f1", digest)
    assert base == teacher_key(TeacherSpec(), "f1", sequences_digest(train_sequences(dataset, paper)))
    others = {
        teacher_key(TeacherSpec(score="euclidean"), "f1", digest),
        teacher_key(TeacherSpec(quantizer="kmeans"), "f1", digest),
        teacher_key(TeacherSpec(codes=20), "f1", digest),
        teacher_key(TeacherSpec(seed=1), "f1", digest),
        teacher_key(TeacherSpec(), "f2", digest),
        teacher_key(TeacherSpec(), "f1", sequences_digest(train_sequences(dataset, loo))),
    }
    assert len(others) == 6 and base not in others
    assert str(teacher_path("/c", "ml-1m", "minilm-l6", "text", base)) == f"/c/teachers/ml-1m/minilm-l6/text/{base}.safetensors"
    local = teacher_path("/c", "ml-1m", "/models/my llm", "text", base)  # a local path: the features' folder name
    assert local.parent.parent.name == encoder_key("/models/my llm") and local.parent.parent.name.startswith("my_llm-")
