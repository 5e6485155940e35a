"""The feature cache, read side: layout, manifest, fingerprint, merged-file checks, loading.

Training reads ``load_features``; only the encode job (``harness.encoding``) writes, and
``harness.encoding.ensure_features`` encodes a missing cache. Nothing here imports the encode job.
"""

from harness.features.cache import (
    CacheCorrupt,
    CacheMissing,
    Features,
    FingerprintMismatch,
    NoValidFeatures,
    load_features,
    read_cache,
)
from harness.features.fingerprint import fingerprint, item_raws
from harness.features.layout import encoder_key, feature_dir

__all__ = [
    "CacheCorrupt",
    "CacheMissing",
    "Features",
    "FingerprintMismatch",
    "NoValidFeatures",
    "encoder_key",
    "feature_dir",
    "fingerprint",
    "item_raws",
    "load_features",
    "read_cache",
]
