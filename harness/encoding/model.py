"""The encoder on each rank: a full copy (data parallel) or partitioned across ranks (DeepSpeed ZeRO-3).

``encoders`` and ``deepspeed`` are imported where a job loads its encoder: they take ~4 s and ~2 s to
import (measured), which ``ensure_features`` on an existing cache and the merge-only path never pay.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from harness.encoding.dist import Dist, group_timeouts
from harness.encoding.options import DEFAULT_DS_CONFIG, EncodeOptions
from harness.encoding.plan import Job


def _zero3_config(path: str | None, job: Job) -> dict:
    """The shipped ZeRO-3 inference config with its "auto" values filled for this model and dtype."""
    config = json.loads(Path(path or DEFAULT_DS_CONFIG).read_text())
    hidden = job.info.dim
    auto = {"stage3_param_persistence_threshold": 10 * hidden, "stage3_prefetch_bucket_size": int(0.9 * hidden * hidden),
            "reduce_bucket_size": hidden * hidden}
    zero = config.setdefault("zero_optimization", {})
    for key, value in auto.items():
        if zero.get(key, "auto") == "auto":
            zero[key] = value
    config.setdefault("bf16", {})["enabled"] = job.dtype == "bfloat16"
    config.setdefault("fp16", {})["enabled"] = job.dtype == "float16"
    return config


def _create_kwargs(job: Job, opts: EncodeOptions, ctx: Dist) -> dict:
    kwargs: dict[str, Any] = {"device": ctx.device, "dtype": job.dtype, "trust_remote_code": opts.trust_remote_code}
    if opts.random_weights:
        kwargs["random_weights"] = True
    if opts.compile:
        kwargs["compile"] = True
    return kwargs


def _load_zero3(job: Job, opts: EncodeOptions, ctx: Dist) -> tuple[Any, Any]:
    """Load under ``HfDeepSpeedConfig`` (so ``from_pretrained`` partitions parameters as it loads),
    then wrap in a ZeRO-3 engine whose hooks gather each layer's parameters for its forward."""
    import deepspeed
    from transformers.integrations import HfDeepSpeedConfig

    from encoders import create_encoder

    config = _zero3_config(opts.ds_config, job)
    hf_config = HfDeepSpeedConfig(config)  # must be alive while the weights load
    encoder = create_encoder(opts.encoder, **_create_kwargs(job, opts, ctx))
    partitioned_at_load = any(hasattr(p, "ds_id") for p in encoder.module.parameters())
    engine, *_ = ctx.in_collective("ZeRO-3 initialisation", deepspeed.initialize, model=encoder.module, config=config,
                                   dist_init_required=False)
    engine.module.eval()
    params = list(encoder.module.parameters())
    job.extra["zero3"] = {"partitioned_at_load": partitioned_at_load,
                          "rank0_param_numel": sum(p.ds_tensor.numel() for p in params),
                          "total_param_numel": sum(p.ds_numel for p in params),
                          "group_timeouts_s": group_timeouts()}  # DeepSpeed's own groups included
    return encoder, (engine, hf_config)


def load_encoder(job: Job, opts: EncodeOptions, ctx: Dist) -> tuple[Any, Any]:
    """The encoder on this rank's device (data parallel), or partitioned across ranks (ZeRO-3)."""
    if job.strategy == "zero3":
        return _load_zero3(job, opts, ctx)
    from encoders import create_encoder

    return create_encoder(opts.encoder, **_create_kwargs(job, opts, ctx)), None
