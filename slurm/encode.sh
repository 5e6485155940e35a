#!/usr/bin/env bash
# sbatch slurm/encode.sh --encoder llama-7b --dataset amazon-beauty [--modality text ...]
# Encodes an item catalogue into the shared feature cache on one multi-GPU node (one process per GPU,
# DeepSpeed ZeRO-3 for encoders that do not fit one device: see accelerate_config.yaml / docs).
#SBATCH --job-name=encode
#SBATCH --nodes=1
#SBATCH --ntasks=1
#SBATCH --gres=gpu:8
#SBATCH --cpus-per-task=32
#SBATCH --mem=256G
#SBATCH --time=24:00:00
#SBATCH --output=slurm-%x-%j.out
accelerate launch --config_file accelerate_config.yaml harness/encode.py "$@"
