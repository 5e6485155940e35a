"""What an encode job is asked to do: ``EncodeOptions`` (the CLI flags) and their allowed values."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DEFAULT_DS_CONFIG = REPO / "configs" / "deepspeed_zero3.json"
STRATEGIES = ("ddp", "zero3")
DTYPES = ("float32", "bfloat16", "float16")


@dataclass
class EncodeOptions:
    """Everything the job is asked to do (the CLI flags; ``encode_dataset`` takes them as keywords)."""

    encoder: str
    modality: str | None = None  # default: the encoder's own modality
    cache_dir: str | None = None  # default: $HARNESS_CACHE_DIR or ./.cache/harness
    cpu: bool = False
    strategy: str | None = None  # ddp | zero3; default: the encoder's registered strategy
    batch_tokens: int | None = None  # text: padded tokens per batch; default 16384 on GPU, 4096 on CPU
    batch_size: int = 256  # images per batch
    dtype: str | None = None  # default: float32 on CPU, the encoder's preferred dtype on GPU
    num_workers: int | None = None  # default: 0 on CPU, up to 8 per GPU process
    threads: int | None = None  # CPU intra-op threads per process; default: OMP_NUM_THREADS when set, else 1
    limit: int | None = None  # encode only the first N items (cached as '<dataset>.first<N>')
    chunk_size: int | None = None  # items per shard; default from the item count (never the world size)
    trust_remote_code: bool = False
    overwrite: bool = False  # refused while another job holds the folder
    wait: bool = True  # another job holds the folder: wait for it (False: fail at once, --no-wait)
    ds_config: str | None = None  # ZeRO-3 config; default configs/deepspeed_zero3.json
    random_weights: bool = False  # the real architecture with seeded random weights (throughput benchmarks)
    compile: bool = False  # torch.compile the encoder's repeated blocks (GPU, long jobs)
    progress: bool = True
    collective_timeout: float = 1800.0  # seconds a collective waits for the other ranks (a dead rank ends the job)


def check_choice(name: str, value: str | None, choices: tuple[str, ...]) -> None:
    if value is not None and value not in choices:
        raise ValueError(f"{name} {value!r} is not one of {', '.join(choices)}")
