"""Encoders named by a local directory: ``local-dir:/path`` or an existing path.

A sentence-transformers folder (modules.json) keeps its pooling and normalisation; any other
folder with a config.json is a transformers text model (mean pooling for bidirectional encoders,
last token for decoders). Checkpoints whose architecture transformers does not implement
(legacy ChatGLM, ``auto_map`` remote code) load only with ``trust_remote_code=True``.
"""

from __future__ import annotations

import json
from functools import partial
from pathlib import Path

from transformers import AutoConfig, AutoModel

from encoders.hf_text import DECODERS, HFTextSpec, default_pooling, model_class_for
from encoders.registry import EncoderSpec
from encoders.sentence_transformers_backend import (
    is_sentence_transformers_dir,
    sentence_transformers_spec,
)

PREFIX = "local-dir:"


def as_local_dir(name: str) -> Path | None:
    """The directory a name points to, or None when it is not a path."""
    if name.startswith(PREFIX):
        path = Path(name[len(PREFIX):]).expanduser()
        if not path.is_dir():
            raise FileNotFoundError(f"{name!r}: {path} is not a directory")
        return path.resolve()
    path = Path(name).expanduser()
    return path.resolve() if path.is_dir() else None


def _needs_remote_code(path: Path) -> bool:
    cfg = json.loads((path / "config.json").read_text())
    from transformers import CONFIG_MAPPING

    return "auto_map" in cfg and cfg.get("model_type") not in CONFIG_MAPPING


def infer_spec(path: Path, trust_remote_code: bool = False) -> EncoderSpec:
    """A text-model spec inferred from the files in ``path``."""
    if is_sentence_transformers_dir(path):
        return sentence_transformers_spec(path)
    if not (path / "config.json").is_file():
        raise ValueError(f"{path} holds no config.json (nor modules.json): not a model folder this registry can read")
    remote = _needs_remote_code(path)
    if remote and not trust_remote_code:
        raise PermissionError(
            f"{path} is a remote-code checkpoint (config.json has auto_map, model_type unknown to transformers); "
            "it runs code from that folder. Pass trust_remote_code=True (--trust-remote-code) to allow it."
        )
    config = AutoConfig.from_pretrained(str(path), local_files_only=True, trust_remote_code=remote)
    make_config = partial(AutoConfig.from_pretrained, str(path), local_files_only=True, trust_remote_code=remote)
    model_class = partial(AutoModel.from_config, trust_remote_code=True) if remote else model_class_for(config)
    dim = getattr(config, "hidden_size", None) or config.d_model
    max_pos = getattr(config, "max_position_embeddings", None) or getattr(config, "seq_length", None) or 512
    family = config.model_type
    return HFTextSpec(
        name=str(path), modality="text", backend="transformers", family=family, weights=str(path),
        pooling="last" if remote else default_pooling(config), dim=int(dim), max_tokens=min(512, int(max_pos)),
        model_class=model_class, config=make_config, remote_code=remote, checkpoint=str(path),
        dtype="bfloat16" if family in DECODERS or remote or dim >= 1024 else "float32",
    )
