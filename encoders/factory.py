"""Names -> specs -> encoders: registered names from the registry, local directories inferred here.

``local-dir:/path`` (or an existing path) is parsed outside the registry, as timm keeps ``hf-hub:``
names out of its own, so the registry stays a leaf that no backend needs to see past.
"""

from __future__ import annotations

import dataclasses

import torch

from encoders import local
from encoders.base import Encoder, EncoderInfo, compile_blocks, resolve_dtype
from encoders.registry import RANDOM, EncoderSpec, LoadOptions, info_of, is_registered, registered_spec, unknown_encoder


def get_spec(name_or_path: str, trust_remote_code: bool = False) -> EncoderSpec:
    """The spec of a registered name or of a local model directory."""
    if is_registered(name_or_path):
        return registered_spec(name_or_path)
    path = local.as_local_dir(name_or_path)
    if path is None:
        raise unknown_encoder(name_or_path)
    return local.infer_spec(path, trust_remote_code=trust_remote_code)


def get_info(name: str, trust_remote_code: bool = False) -> EncoderInfo:
    """Metadata of a registered name or local directory; no weights are loaded."""
    return info_of(get_spec(name, trust_remote_code=trust_remote_code))


def create_encoder(name_or_path: str, device: str | torch.device = "cpu", dtype: str | torch.dtype | None = None,
                   trust_remote_code: bool = False, allow_downloads: bool = False,
                   packing: bool | None = None, random_weights: bool = False, compile: bool = False) -> Encoder:
    """Load an encoder by registered name or local directory, ready for ``preprocess`` / ``encode``.

    ``dtype=None`` picks float32 on CPU and the encoder's preferred dtype on an accelerator.
    Weights come from local files only unless ``allow_downloads=True``. ``packing`` forces the
    padding-free path on (decoder text models) or off; ``None`` packs where a varlen kernel runs.
    ``random_weights=True`` builds the real architecture with seeded random weights (throughput
    benchmarks; text models then use the offline MiniLM tokenizer) and reports ``weights="random"``.
    ``compile=True`` compiles the model's repeated blocks with dynamic shapes (see ``compile_blocks``).
    """
    spec = get_spec(name_or_path, trust_remote_code=trust_remote_code)
    device = torch.device(device)
    options = LoadOptions(device=device, dtype=resolve_dtype(dtype, device, spec.dtype),
                          trust_remote_code=trust_remote_code, allow_downloads=allow_downloads, packing=packing,
                          random_weights=random_weights, compile=compile)
    encoder = spec.load(options)
    if compile:
        compile_blocks(encoder.module)
    if random_weights:
        encoder.info = dataclasses.replace(encoder.info, weights=RANDOM)
    return encoder
