"""``harness encode-node ARGS``: this node's launcher of a (multi-node) encode job, as ``slurm/encode.sh`` runs it
under ``srun --ntasks-per-node=1``: one torchrun per node, one process per GPU of the node, c10d rendezvous
on the job's first node. Outside Slurm it is one node on this host.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys

import torch

PORT = 29500


def gpus_on_node() -> int:
    """Slurm's count for this node (``SLURM_GPUS_ON_NODE``, e.g. ``4`` or ``a100:4``), else what torch sees."""
    count = os.environ.get("SLURM_GPUS_ON_NODE", "").split("(")[0].rsplit(":", 1)[-1]
    return int(count) if count.isdigit() else torch.cuda.device_count()


def first_node() -> str:
    """The rendezvous host: the first of the job's nodes (``scontrol show hostnames``), else this host."""
    nodelist = os.environ.get("SLURM_JOB_NODELIST")
    if nodelist and shutil.which("scontrol"):
        names = subprocess.run(["scontrol", "show", "hostnames", nodelist], capture_output=True, text=True).stdout.split()
        if names:
            return names[0]
    return socket.gethostname()


def torchrun_command(argv: list[str]) -> list[str]:
    """The torchrun command line for this node; ``SystemExit`` with one clear line when it has no GPU for it."""
    if "--cpu" in argv:
        per_node = int(os.environ.get("ENCODE_PROCS_PER_NODE", "1"))
    else:
        per_node = int(os.environ.get("ENCODE_PROCS_PER_NODE", "0")) or gpus_on_node()
        if per_node < 1:
            raise SystemExit(f"harness encode-node: no GPU on {socket.gethostname()} (SLURM_GPUS_ON_NODE unset, CUDA "
                             "sees none): ask Slurm for GPUs (--gres=gpu:N) or pass --cpu to encode with "
                             "ENCODE_PROCS_PER_NODE CPU processes per node")
    job = os.environ.get("SLURM_JOB_ID", str(os.getpid()))
    return [sys.executable, "-m", "torch.distributed.run", "--nnodes", os.environ.get("SLURM_JOB_NUM_NODES", "1"),
            "--nproc_per_node", str(per_node), "--rdzv_backend", "c10d",
            "--rdzv_endpoint", f"{first_node()}:{os.environ.get('ENCODE_PORT', PORT)}", "--rdzv_id", f"encode-{job}",
            "-m", "harness.encode", *argv]


def main(argv: list[str] | None = None) -> int:
    cmd = torchrun_command(list(sys.argv[1:] if argv is None else argv))
    os.environ.setdefault("ACCELERATE_MIXED_PRECISION", "bf16")  # as accelerate_config.yaml: bf16 on GPUs
    os.execv(cmd[0], cmd)  # torchrun replaces this process: Slurm signals and exit codes reach it directly
    return 0  # not reached


if __name__ == "__main__":
    sys.exit(main())
