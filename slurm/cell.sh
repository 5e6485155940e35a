#!/usr/bin/env bash
# One grid cell per array task; submitted by `harness sweep FILE --submit` with --array=<unfinished cells>.
# GPUs / partition: HARNESS_SBATCH_ARGS="--gres=gpu:1 --partition=gpu" or --sbatch-arg=... on the submit step.
# Time limit / preemption: Slurm sends USR1 to this script 5 minutes before the limit; it requeues the task, whose
# cell is then stopped (SIGTERM) and resumes from its last end-of-epoch checkpoint in the same MLflow run.
#SBATCH --cpus-per-task=1
#SBATCH --mem=4G
#SBATCH --time=12:00:00
#SBATCH --requeue
#SBATCH --open-mode=append
#SBATCH --signal=B:USR1@300
requeue() {
  echo "cell.sh: USR1 (time limit near): requeue job $SLURM_JOB_ID" >&2
  scontrol requeue "$SLURM_JOB_ID"
}
trap requeue USR1
# in the background: bash runs a trap only between commands, and `wait` returns when a signal arrives
harness sweep "$@" --index "$SLURM_ARRAY_TASK_ID" &
cell=$!
while true; do
  wait "$cell"; rc=$?
  kill -0 "$cell" 2>/dev/null || exit "$rc"
done
