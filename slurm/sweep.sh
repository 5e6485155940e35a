#!/usr/bin/env bash
# sbatch slurm/sweep.sh [sweeps/figure4.yaml] [--set key=value ...]     (no file: sweeps/figure4.yaml)
# Submit step: creates the MLflow experiment + parent run once, pre-encodes missing features, then submits
# slurm/cell.sh as one job array over the unfinished cells and slurm/finalize.sh after it.
# sbatch cannot check arguments on the submitting host (no client-side hook without a site cli_filter plugin),
# so a wrong argument fails in this job's first seconds; `harness sweep FILE --submit` on the submitting host
# checks the whole sweep before anything is queued.
#SBATCH --job-name=sweep-submit
#SBATCH --cpus-per-task=1
#SBATCH --mem=8G
#SBATCH --time=04:00:00
#SBATCH --output=slurm-%x-%j.out
harness sweep "$@" --submit
