#!/usr/bin/env bash
# One grid cell per array task; submitted by `harness sweep FILE --submit` with --array=<unfinished cells>.
# GPUs / partition: HARNESS_SBATCH_ARGS="--gres=gpu:1 --partition=gpu" or --sbatch-arg=... on the submit step.
# Time limit / preemption: 5 minutes before the limit Slurm sends USR1 to the batch shell, which `exec` makes the
# cell's own process: it runs `scontrol requeue`, is stopped (SIGTERM) and the task, started again, resumes from
# its last end-of-epoch checkpoint in the same MLflow run (docs/SWEEPS.md, "Requeue and checkpoints").
#SBATCH --cpus-per-task=1
#SBATCH --mem=4G
#SBATCH --time=12:00:00
#SBATCH --requeue
#SBATCH --open-mode=append
#SBATCH --signal=B:USR1@300
exec harness sweep "$@" --index "$SLURM_ARRAY_TASK_ID"
