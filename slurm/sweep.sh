#!/usr/bin/env bash
# sbatch slurm/sweep.sh sweeps/figure4.yaml [--set key=value ...]
# Submit step: creates the MLflow experiment + parent run once, pre-encodes missing features, then submits
# slurm/cell.sh as one job array over the unfinished cells and slurm/finalize.sh after it.
#SBATCH --job-name=sweep-submit
#SBATCH --cpus-per-task=1
#SBATCH --mem=8G
#SBATCH --time=04:00:00
#SBATCH --output=slurm-%x-%j.out
harness sweep "$@" --submit
