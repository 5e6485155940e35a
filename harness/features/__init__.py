"""The feature cache: layout, manifest, fingerprint, atomic shards, merge, loading.

Training reads ``load_features`` / ``ensure_features``; only ``harness.encode`` writes.
"""

from harness.features.cache import (
    CacheCorrupt,
    CacheMissing,
    Features,
    FingerprintMismatch,
    NoValidFeatures,
    ensure_features,
    load_features,
    read_cache,
)
from harness.features.fingerprint import fingerprint, item_raws
from harness.features.layout import default_cache_root, encoder_key, feature_dir
from harness.features.lock import FolderLocked

__all__ = [
    "CacheCorrupt",
    "CacheMissing",
    "Features",
    "FingerprintMismatch",
    "FolderLocked",
    "NoValidFeatures",
    "default_cache_root",
    "encoder_key",
    "ensure_features",
    "feature_dir",
    "fingerprint",
    "item_raws",
    "load_features",
    "read_cache",
]
