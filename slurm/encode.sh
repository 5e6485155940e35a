#!/usr/bin/env bash
# sbatch [--nodes=N] slurm/encode.sh --encoder llama-7b [--dataset amazon-beauty] [--modality text ...]
# Encodes item catalogues into the shared feature cache: one torchrun launcher per node (srun), one process
# per GPU the node has, c10d rendezvous on the job's first node; chunks are dealt over all ranks of all nodes,
# rank 0 merges. Without --dataset: every dataset present in the data folder. The cache root must be on a
# filesystem every node sees. See docs/ENCODE.md ("Multi-node").
#SBATCH --job-name=encode
#SBATCH --nodes=1
#SBATCH --ntasks-per-node=1
#SBATCH --gres=gpu:8
#SBATCH --cpus-per-task=32
#SBATCH --mem=256G
#SBATCH --time=24:00:00
#SBATCH --output=slurm-%x-%j.out
set -euo pipefail
PYTHON=${PYTHON:-python}
nodes=${SLURM_JOB_NUM_NODES:-1}
head=$(scontrol show hostnames "${SLURM_JOB_NODELIST:-$(hostname)}" 2>/dev/null | head -n 1 || true)
head=${head:-$(hostname)}
port=${ENCODE_PORT:-29500}
if [[ " $* " == *" --cpu "* ]]; then
  per_node=${ENCODE_PROCS_PER_NODE:-1}
else  # one process per GPU of the node (Slurm's count, else what nvidia-smi sees)
  per_node=${ENCODE_PROCS_PER_NODE:-${SLURM_GPUS_ON_NODE:-$(nvidia-smi -L 2>/dev/null | grep -c '^GPU' || true)}}
  per_node=${per_node%%(*}; per_node=${per_node##*:}  # SLURM_GPUS_ON_NODE may read "a100:4"
  if [[ -z $per_node || $per_node -lt 1 ]]; then
    echo "slurm/encode.sh: no GPU on $(hostname) (SLURM_GPUS_ON_NODE unset, nvidia-smi finds none): ask for GPUs" \
         "(--gres=gpu:N) or pass --cpu to encode on CPU processes (ENCODE_PROCS_PER_NODE of them)" >&2
    exit 1
  fi
fi
export ACCELERATE_MIXED_PRECISION=${ACCELERATE_MIXED_PRECISION:-bf16}  # as accelerate_config.yaml: bf16 on GPUs
launch=("$PYTHON" -m torch.distributed.run --nnodes "$nodes" --nproc_per_node "$per_node"
        --rdzv_backend c10d --rdzv_endpoint "$head:$port" --rdzv_id "encode-${SLURM_JOB_ID:-$$}"
        harness/encode.py "$@")
if [[ -n ${SLURM_JOB_ID:-} ]]; then
  exec srun --nodes "$nodes" --ntasks-per-node 1 --kill-on-bad-exit=1 "${launch[@]}"
fi
exec "${launch[@]}"
