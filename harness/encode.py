"""The encode job's command line: an item catalogue -> the feature cache.

    accelerate launch --config_file accelerate_config.yaml --num_processes 8 harness/encode.py --encoder llama-7b --dataset amazon-beauty
    accelerate launch harness/encode.py --encoder llama-7b      # every dataset present, one process per GPU
    torchrun --nproc_per_node 2 harness/encode.py --cpu --encoder tiny-llama --dataset ml-1m
    python -m harness.encode --encoder minilm-l6 --dataset ml-1m

The job itself (ranks, chunks, shards, merge, locks) is the package ``harness.encoding``; this file
stays a file so that launchers can run it by path. See docs/ENCODE.md and docs/RELIABILITY.md.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

if __name__ == "__main__" and not __package__:  # run as a file: `accelerate launch harness/encode.py`
    sys.path[0] = str(Path(__file__).resolve().parents[1])

import argparse

from harness.data import load_dataset
from harness.encoding.catalogue import encode_present, summary
from harness.encoding.dist import NoGPU, RankFailed, check_gpus, end_distributed
from harness.encoding.job import run
from harness.encoding.options import DEFAULT_DS_CONFIG, DTYPES, REPO, STRATEGIES, EncodeOptions
from harness.features.layout import MODALITIES


def parse_args(argv: list[str] | None) -> tuple[str, str | None, EncodeOptions]:
    p = argparse.ArgumentParser(prog="harness encode", description="Encode an item catalogue into the feature cache.")
    p.add_argument("--encoder", required=True, help="registered name (see `harness encoders list`) or a local checkpoint folder")
    p.add_argument("--dataset", help="dataset name (see `harness data list`); default: every dataset present in the "
                                      "data folder, each into its own cache (complete ones skipped)")
    p.add_argument("--modality", choices=MODALITIES, help="default: the encoder's modality")
    p.add_argument("--cache-dir", help="cache root (default $HARNESS_CACHE_DIR or ./.cache/harness)")
    p.add_argument("--data-dir", help="dataset root (default $HARNESS_DATA_DIR)")
    p.add_argument("--cpu", action="store_true", help="run on CPU (gloo) even where GPUs exist")
    p.add_argument("--strategy", choices=STRATEGIES, help="ddp (data parallel) or zero3 (DeepSpeed ZeRO-3 inference)")
    p.add_argument("--batch-tokens", type=int, help="padded tokens per text batch (default 16384 GPU / 4096 CPU)")
    p.add_argument("--batch-size", type=int, default=256, help="images per batch")
    p.add_argument("--dtype", choices=DTYPES, help="default float32 on CPU, the encoder's preferred dtype on GPU")
    p.add_argument("--num-workers", type=int, help="DataLoader workers per process (default 0 on CPU)")
    p.add_argument("--threads", type=int, help="CPU: torch threads per process (default OMP_NUM_THREADS when set, else 1: "
                                                "the count can change a last bit; for more CPU run more processes)")
    p.add_argument("--limit", type=int, help="encode only the first N items")
    p.add_argument("--chunk-size", type=int, help="items per shard (default from the item count)")
    p.add_argument("--ds-config", help=f"DeepSpeed config for --strategy zero3 (default {DEFAULT_DS_CONFIG.relative_to(REPO)})")
    p.add_argument("--trust-remote-code", action="store_true", help="allow legacy checkpoints that run their own code")
    p.add_argument("--random-weights", action="store_true", help="real architecture, seeded random weights (benchmarks)")
    p.add_argument("--compile", action="store_true", help="torch.compile the encoder's repeated blocks")
    p.add_argument("--overwrite", action="store_true",
                   help="discard an existing or partial cache for this encoder (refused while another job uses it)")
    p.add_argument("--no-wait", action="store_true",
                   help="fail at once when another encode job holds the feature folder (default: wait for it)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--collective-timeout", type=float, default=1800.0, metavar="SECONDS",
                   help="how long a rank waits for the others in a collective before the job stops with an error "
                        "(a dead rank; default 1800)")
    a = p.parse_args(argv)
    opts = EncodeOptions(encoder=a.encoder, modality=a.modality, cache_dir=a.cache_dir, cpu=a.cpu, strategy=a.strategy,
                         batch_tokens=a.batch_tokens, batch_size=a.batch_size, dtype=a.dtype, num_workers=a.num_workers,
                         threads=a.threads, limit=a.limit, chunk_size=a.chunk_size,
                         trust_remote_code=a.trust_remote_code, overwrite=a.overwrite, wait=not a.no_wait, ds_config=a.ds_config, random_weights=a.random_weights,
                         compile=a.compile, progress=not a.no_progress, collective_timeout=a.collective_timeout)
    return a.dataset, a.data_dir, opts


def main(argv: list[str] | None = None) -> int:
    """``harness encode ...`` / ``python -m harness.encode ...`` / ``torchrun ... harness/encode.py ...``."""
    name, data_dir, opts = parse_args(argv)
    try:
        check_gpus(opts.cpu)
        if name is not None:
            run(load_dataset(name, data_dir=data_dir), opts)
            end_distributed()
            return 0
        outcomes = encode_present(data_dir, opts)
    except (NoGPU, RankFailed) as exc:  # one clear line, no traceback per process
        if str(exc):
            print(exc, file=sys.stderr, flush=True)
        return 1
    end_distributed()
    if int(os.environ.get("RANK", "0")) == 0:
        print(summary(outcomes), file=sys.stderr, flush=True)
    return 1 if any(o.state == "failed" for o in outcomes) else 0


if __name__ == "__main__":
    sys.exit(main())
