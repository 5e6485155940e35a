#!/usr/bin/env bash
# sbatch slurm/sweep.sh [sweeps/figure4.yaml] [--set key=value ...]     (no argument: sweeps/figure4.yaml)
# Submit step: creates the MLflow experiment + parent run once, pre-encodes missing features, then submits
# slurm/cell.sh as one job array over the unfinished cells and slurm/finalize.sh after it.
# sbatch cannot check arguments on the submitting host (no client-side hook without a site cli_filter plugin),
# so a wrong argument fails in this job's first seconds. Checked before submitting: `harness sweep FILE --submit`
# (on the submitting host), or `bash slurm/sweep.sh FILE ...`, which checks the sweep here, then sbatch's itself.
#SBATCH --job-name=sweep-submit
#SBATCH --cpus-per-task=1
#SBATCH --mem=8G
#SBATCH --time=04:00:00
#SBATCH --output=slurm-%x-%j.out
set -euo pipefail
if [[ $# -eq 0 || $1 == -* ]]; then
  set -- sweeps/figure4.yaml "$@"
fi
if [[ ! -f $1 ]]; then
  echo "slurm/sweep.sh: sweep file '$1' not found (in $PWD); usage: sbatch slurm/sweep.sh [SWEEP.yaml] [--set key=value ...]" >&2
  exit 2
fi
if [[ -z ${SLURM_JOB_ID:-} ]]; then  # run with bash on the submitting host: check the whole sweep, then submit this script
  harness sweep "$@" --list >/dev/null
  exec sbatch "${BASH_SOURCE[0]}" "$@"
fi
exec harness sweep "$@" --submit
