"""The encode job: an item catalogue -> the feature cache (``harness/encode.py`` is its command line).

    options      EncodeOptions, the allowed strategies and dtypes
    dist         the process group, ``shard`` (the only rank arithmetic), rank-0 helpers, collective timeouts
    plan         inputs, fingerprint, folder, dtype, budget; length-sorted chunks
    token_batches  token-budget batches of one chunk
    folder       rank 0: complete / merge / encode, --overwrite, pending chunks
    lock         one job per feature folder (flock)
    model        the encoder per rank (data parallel or ZeRO-3)
    threads      CPU intra-op threads of a job (one per process unless asked)
    loader       DataLoader workers: raw inputs -> preprocessed batches, per-item failures
    writer       encoded batches -> one shard per finished chunk
    shards       atomic, self-verifying shard files
    merge        shards -> features.npy / valid.npy
    encode_loop  one rank's share of the pending chunks
    progress     rank 0's report for the whole job (all ranks, all nodes)
    job          the whole job: ``run`` / ``encode_dataset``
    ensure       ``ensure_features``: load, encoding first when missing
    catalogue    several targets in one run (every present dataset; a sweep's list), with a summary

Reading a finished cache is ``harness.features``; nothing there imports this package.
"""

from harness.encoding.catalogue import Outcome, encode_many, encode_present, present_datasets, summary
from harness.encoding.dist import NoGPU, RankFailed, shard
from harness.encoding.ensure import ensure_features
from harness.encoding.job import encode_dataset, run
from harness.encoding.lock import FolderLocked
from harness.encoding.options import EncodeOptions

__all__ = ["EncodeOptions", "FolderLocked", "NoGPU", "Outcome", "RankFailed", "encode_dataset", "encode_many",
           "encode_present", "ensure_features", "present_datasets", "run", "shard", "summary"]
