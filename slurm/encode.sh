#!/usr/bin/env bash
# sbatch [--nodes=N] slurm/encode.sh --encoder llama-7b [--dataset amazon-beauty] [--modality text ...]
# Encodes item catalogues into the shared feature cache: srun starts `harness encode-node` once per node, which
# runs torchrun with one process per GPU of the node and c10d rendezvous on the job's first node; chunks are
# dealt over all ranks of all nodes, rank 0 merges. Without --dataset: every dataset present in the data folder.
# The cache root must be on a filesystem every node sees. CPU nodes: add --cpu (ENCODE_PROCS_PER_NODE processes
# per node) and --gres=none. See docs/ENCODE.md ("Multi-node").
#SBATCH --job-name=encode
#SBATCH --nodes=1
#SBATCH --ntasks-per-node=1
#SBATCH --gres=gpu:8
#SBATCH --cpus-per-task=32
#SBATCH --mem=256G
#SBATCH --time=24:00:00
#SBATCH --output=slurm-%x-%j.out
srun --ntasks-per-node=1 --kill-on-bad-exit=1 harness encode-node "$@"
