"""The only place that knows about ranks: the process group, the pure sharding function, rank-0 helpers."""

from __future__ import annotations

import datetime
import os
import socket
import sys
from dataclasses import dataclass
from typing import Any

import torch

from harness.encoding.options import EncodeOptions
from harness.features.manifest import PlanMismatch


def shard(n_items: int, rank: int, world_size: int) -> range:
    """The strided slice ``rank, rank + world_size, ...`` of ``range(n_items)`` that ``rank`` owns:
    disjoint, covering, sizes within one. Strided rather than contiguous because the chunks are
    sorted by length: every rank gets a mix of long and short chunks, so all finish together."""
    if not 0 <= rank < world_size:
        raise ValueError(f"rank {rank} is outside world size {world_size}")
    return range(rank, n_items, world_size)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Dist:
    """The process group as the job sees it: rank, world, device, and four collectives."""

    rank: int
    world: int
    device: torch.device

    def barrier(self) -> None:
        if self.world > 1:
            torch.distributed.barrier()

    def broadcast(self, obj: Any) -> Any:
        """``obj`` from rank 0 on every rank."""
        if self.world == 1:
            return obj
        box = [obj]
        torch.distributed.broadcast_object_list(box, src=0)
        return box[0]

    def gather(self, obj: Any) -> list[Any]:
        """Every rank's ``obj``, in rank order, on every rank."""
        if self.world == 1:
            return [obj]
        out: list[Any] = [None] * self.world
        torch.distributed.all_gather_object(out, obj)
        return out

    def max(self, value: int) -> int:
        return max(self.gather(value))


def start_distributed(opts: EncodeOptions, strategy: str) -> Dist:
    """Join the process group set up by torchrun / accelerate launch (gloo on CPU, NCCL on GPUs)."""
    from accelerate import PartialState

    if strategy == "zero3" and "LOCAL_RANK" not in os.environ:  # DeepSpeed needs a group, even of one
        os.environ.update(RANK="0", LOCAL_RANK="0", WORLD_SIZE="1", MASTER_ADDR="127.0.0.1",
                          MASTER_PORT=os.environ.get("MASTER_PORT", str(_free_port())))
    cpu = opts.cpu or not torch.cuda.is_available()
    state = PartialState(cpu=cpu, timeout=datetime.timedelta(hours=6))
    return Dist(rank=state.process_index, world=state.num_processes, device=torch.device(state.device))


def on_rank0(ctx: Dist, fn: Any) -> Any:
    """Run ``fn()`` on rank 0 and give its result to every rank; an error there is raised everywhere."""
    result: tuple[str, Any] = ("ok", None)
    if ctx.rank == 0:
        try:
            result = ("ok", fn())
        except Exception as exc:
            ctx.broadcast(("error", f"{type(exc).__name__}: {exc}"))
            raise
    result = ctx.broadcast(result)
    if result[0] == "error":
        raise PlanMismatch(f"rank 0 refused the job: {result[1]}")
    return result[1]


def say(message: str) -> None:
    """A progress line on stderr (called on rank 0 only)."""
    print(message, file=sys.stderr, flush=True)


def say_on_rank0(ctx: Dist, message: str) -> None:
    if ctx.rank == 0:
        say(message)
