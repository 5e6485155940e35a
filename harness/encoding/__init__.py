"""The encode job: an item catalogue -> the feature cache (``harness/encode.py`` is its command line).

    options      EncodeOptions, the allowed strategies and dtypes
    dist         the process group, ``shard`` (the only rank arithmetic), rank-0 helpers
    plan         inputs, fingerprint, folder, dtype, budget; length-sorted chunks
    token_batches  token-budget batches of one chunk
    folder       rank 0: complete / merge / encode, --overwrite, pending chunks
    lock         one job per feature folder (flock)
    model        the encoder per rank (data parallel or ZeRO-3)
    loader       DataLoader workers: raw inputs -> preprocessed batches, per-item failures
    writer       encoded batches -> one shard per finished chunk
    shards       atomic, self-verifying shard files
    merge        shards -> features.npy / valid.npy
    encode_loop  one rank's share of the pending chunks
    job          the whole job: ``run`` / ``encode_dataset``
    ensure       ``ensure_features``: load, encoding first when missing

Reading a finished cache is ``harness.features``; nothing there imports this package.
"""

from harness.encoding.dist import shard
from harness.encoding.ensure import ensure_features
from harness.encoding.job import encode_dataset, run
from harness.encoding.lock import FolderLocked
from harness.encoding.options import EncodeOptions

__all__ = ["EncodeOptions", "FolderLocked", "encode_dataset", "ensure_features", "run", "shard"]
