"""``ensure_features``: load a feature cache, encoding it in this process first when it is missing.

It sits above both the read side (``harness.features``) and the encode job, so the arrow between
them points one way: encoding imports features, never the reverse.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from harness.encoding.job import encode_dataset
from harness.features.cache import CacheMissing, Features, load_features


def ensure_features(dataset: Any, encoder: str, modality: str, cache_root: str | Path | None = None,
                    trust_remote_code: bool = False) -> Features:
    """Load the cache, encoding in this process first (same code as the encode job) when it is missing,
    or re-merging it from its shards when its merged files are damaged. ``trust_remote_code``
    (config ``features.trust_remote_code``) lets remote-code checkpoints such as chatglm3-6b load."""
    try:
        return load_features(dataset, encoder, modality, cache_root)
    except CacheMissing:
        encode_dataset(dataset, encoder, modality, cache_root=cache_root, trust_remote_code=trust_remote_code)
        return load_features(dataset, encoder, modality, cache_root)
