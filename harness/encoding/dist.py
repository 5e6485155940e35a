"""The only place that knows about ranks: the process group, the pure sharding function, rank-0 helpers."""

from __future__ import annotations

import datetime
import os
import socket
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch

from harness.encoding.options import EncodeOptions
from harness.features.manifest import PlanMismatch


class RankFailed(RuntimeError):
    """A collective failed or timed out: another rank of the job died or stopped responding."""


class NoGPU(RuntimeError):
    """A multi-process GPU launch on a node with fewer GPUs than processes (and no ``--cpu``)."""


def check_gpus(cpu: bool) -> None:
    """Before anything starts: a launcher that put more processes on this node than it has GPUs (a
    MULTI_GPU config on a CPU machine) gets one clear error from the node's first process; the others
    exit quietly (raising ``NoGPU`` with an empty message)."""
    per_node = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
    if cpu or per_node <= 1 or torch.cuda.device_count() >= per_node:
        return
    if os.environ.get("LOCAL_RANK", "0") != "0":
        raise NoGPU("")
    raise NoGPU(f"encode: {socket.gethostname()} has {torch.cuda.device_count()} CUDA GPU(s) but the launcher started "
                f"{per_node} processes on it (one per GPU is meant: accelerate_config.yaml is MULTI_GPU). "
                "Pass --num_processes <number of GPUs> to accelerate launch (slurm/encode.sh does), "
                "or add --cpu to run the processes on CPU (gloo).")


def shard(n_items: int, rank: int, world_size: int) -> range:
    """The strided slice ``rank, rank + world_size, ...`` of ``range(n_items)`` that ``rank`` owns:
    disjoint, covering, sizes within one. Strided rather than contiguous because the chunks are
    sorted by length: every rank gets a mix of long and short chunks, so all finish together."""
    if not 0 <= rank < world_size:
        raise ValueError(f"rank {rank} is outside world size {world_size}")
    return range(rank, n_items, world_size)


def comm_failure(exc: BaseException) -> bool:
    """A failed or timed-out collective: torch's DistError family (NCCL), or the RuntimeError gloo raises."""
    return isinstance(exc, torch.distributed.DistError) or (isinstance(exc, RuntimeError) and "gloo" in str(exc))


_SET_ENV: list[str] = []  # launcher variables start_distributed set itself (end_distributed removes them)


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
    timeout: float = 1800.0  # seconds a collective may wait for the other ranks

    def _collective(self, what: str, fn: Any, *args: Any, **kwargs: Any) -> None:
        """Run one collective; a dead or stuck peer becomes one clear ``RankFailed`` on this rank."""
        try:
            fn(*args, **kwargs)
        except Exception as exc:  # gloo: connection closed / timed out; NCCL: DistBackendError
            raise self._failed(what, exc) from exc

    def in_collective(self, what: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        """``fn(*args, **kwargs)``, which runs collectives of its own (DeepSpeed's: ZeRO-3 initialisation, the
        parameter all-gathers of each forward): a failed one (a dead or stuck peer) is the same ``RankFailed``
        as ours, instead of a traceback from inside DeepSpeed; any other error is raised as it is."""
        try:
            return fn(*args, **kwargs)
        except Exception as exc:
            if not comm_failure(exc):
                raise
            raise self._failed(what, exc) from exc

    def _failed(self, what: str, exc: Exception) -> RankFailed:
        first = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else type(exc).__name__
        return RankFailed(
            f"encode: rank {self.rank} of {self.world} on {socket.gethostname()}: the {what} collective failed "
            f"({first}): another rank of this job died or did not answer within --collective-timeout "
            f"{self.timeout:g}s. Finished shards are kept; rerun the same command to resume.")

    def barrier(self) -> None:
        if self.world > 1:
            self._collective("barrier", torch.distributed.barrier)

    def broadcast(self, obj: Any) -> Any:
        """``obj`` from rank 0 on every rank."""
        if self.world == 1:
            return obj
        box = [obj]
        self._collective("broadcast", torch.distributed.broadcast_object_list, box, src=0)
        return box[0]

    def gather(self, obj: Any) -> list[Any]:
        """Every rank's ``obj``, in rank order, on every rank."""
        if self.world == 1:
            return [obj]
        out: list[Any] = [None] * self.world
        self._collective("all-gather", torch.distributed.all_gather_object, out, obj)
        return out

    def max(self, value: int) -> int:
        return max(self.gather(value))


def start_distributed(opts: EncodeOptions, strategy: str) -> Dist:
    """Join the process group set up by torchrun / accelerate launch (gloo on CPU, NCCL on GPUs)."""
    from accelerate import PartialState

    if strategy == "zero3" and "LOCAL_RANK" not in os.environ:  # DeepSpeed needs a group, even of one
        group_of_one = dict(RANK="0", LOCAL_RANK="0", WORLD_SIZE="1", MASTER_ADDR="127.0.0.1", MASTER_PORT=str(_free_port()))
        added = {name: value for name, value in group_of_one.items() if name not in os.environ}
        os.environ.update(added)
        _SET_ENV.extend(added)
    cpu = opts.cpu or not torch.cuda.is_available()
    state = PartialState(cpu=cpu, timeout=datetime.timedelta(seconds=opts.collective_timeout))
    return Dist(rank=state.process_index, world=state.num_processes, device=torch.device(state.device),
                timeout=opts.collective_timeout)


def end_distributed() -> None:
    """Leave the process group once the job has succeeded. A gloo group left to interpreter teardown can abort
    the process after its work is written ("terminate called without an active exception": a gloo worker
    thread outlives the interpreter, pytorch#190489). Not after a failure: a group whose peer died can hang
    in its teardown. The accelerate state and the launcher variables set for a one-process ZeRO-3 group are
    cleared too: a later job in this process joins anew, and child processes (sweep cells) inherit no rank."""
    from accelerate import PartialState

    if torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()
    PartialState._reset_state()
    while _SET_ENV:
        os.environ.pop(_SET_ENV.pop(), None)


@contextmanager
def groups_keep_timeout(ctx: Dist) -> Iterator[None]:
    """Process groups made inside without a timeout get --collective-timeout, not torch's default (30 min
    gloo, 10 min NCCL). DeepSpeed makes its own: ``TorchBackend.new_group(ranks)`` passes no timeout
    (``DEEPSPEED_TIMEOUT`` only reaches a group DeepSpeed initialises itself), and ``deepspeed.initialize``
    broadcasts the model over its clone of the world group, where a stuck rank held the others 30 min."""
    c10d = torch.distributed.distributed_c10d  # _get_default_timeout reads these two names at each call
    saved = c10d.default_pg_timeout, c10d.default_pg_nccl_timeout
    c10d.default_pg_timeout = c10d.default_pg_nccl_timeout = datetime.timedelta(seconds=ctx.timeout)
    try:
        yield
    finally:
        c10d.default_pg_timeout, c10d.default_pg_nccl_timeout = saved


def group_timeouts() -> list[float]:
    """The distinct collective timeouts (seconds) of every process group of this process (what the manifest
    records under ZeRO-3: DeepSpeed's groups included)."""
    c10d, cpu = torch.distributed.distributed_c10d, torch.device("cpu")
    return sorted({pg._get_backend(cpu).options._timeout.total_seconds() for pg in c10d._world.pg_map})


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
