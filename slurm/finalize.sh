#!/usr/bin/env bash
# Runs after the array (afterany): closes the sweep's parent run (FINISHED / FAILED) and logs the cells table.
#SBATCH --cpus-per-task=1
#SBATCH --mem=2G
#SBATCH --time=00:30:00
harness sweep "$@" --finalize
