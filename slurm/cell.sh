#!/usr/bin/env bash
# One grid cell per array task; submitted by `harness sweep FILE --submit` with --array=<unfinished cells>.
# GPUs / partition: HARNESS_SBATCH_ARGS="--gres=gpu:1 --partition=gpu" or --sbatch-arg=... on the submit step.
#SBATCH --cpus-per-task=1
#SBATCH --mem=4G
#SBATCH --time=12:00:00
harness sweep "$@" --index "$SLURM_ARRAY_TASK_ID"
