"""transformers text encoders: LLaMA, T5 (encoder only), GLM / GLM-4 (native), BERT.

Real names load from a local path or the HF cache; ``tiny-*`` names are the same classes with
tiny configs and seeded random weights, tokenised offline with MiniLM's WordPiece.
Decoder-only models (LLaMA, GLM) support a padding-free packed path (see ``encoders.packing``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from transformers import (
    BertConfig,
    BertModel,
    Glm4Config,
    Glm4Model,
    GlmConfig,
    GlmModel,
    LlamaConfig,
    LlamaModel,
    PretrainedConfig,
    T5Config,
    T5EncoderModel,
)

from encoders import packing
from encoders.base import Encoder, seeded_init
from encoders.pooling import pool_packed, pool_padded
from encoders.registry import RANDOM, EncoderSpec, LoadOptions, info_of, register_encoder
from encoders.text_preprocess import TextPreprocessor
from encoders.tokenizers import TINY_VOCAB, load_tokenizer, tiny_tokenizer
from encoders.weights import resolve_snapshot

DECODERS = ("llama", "glm", "glm4")


@dataclass(frozen=True, eq=False)
class HFTextSpec(EncoderSpec):
    """A transformers text model: its class, its config, and where its weights live."""

    model_class: type = LlamaModel
    config: Callable[[], PretrainedConfig] = LlamaConfig
    seed: int = 0
    normalize: bool = False  # L2-normalise pooled vectors (sentence-transformers Normalize module)
    remote_code: bool = False  # legacy checkpoint that only loads with trust_remote_code=True
    extra_params: int = 0  # parameters outside ``model_class`` that remote code adds (for metadata)
    model_kwargs: dict[str, Any] = field(default_factory=dict)
    checkpoint: str | None = None  # a local folder with the weights, when known (takes precedence over ``weights``)

    def skeleton(self) -> nn.Module:
        return self.model_class(self.config())

    def count_params(self) -> int:
        return super().count_params() + self.extra_params

    def load(self, options: LoadOptions) -> Encoder:
        model, tokenizer = self._load_model(options)
        packed = packing.use_packing(self.family in DECODERS, options)
        if packed:
            packing.enable(model)
        pre = TextPreprocessor(tokenizer, max_tokens=self.max_tokens or 512, packed=packed)
        return HFTextEncoder(info_of(self), model, pre, options.device, options.dtype, self)

    def _load_model(self, options: LoadOptions) -> tuple[nn.Module, Any]:
        if options.random_init(self):  # tiny test models, or a real architecture for benchmarks
            with seeded_init(self.seed, options.device):
                model = self.model_class(self.config())
            return model, tiny_tokenizer()
        if self.remote_code and not options.trust_remote_code:
            raise PermissionError(
                f"encoder {self.name!r} ({self.weights}) is a legacy remote-code checkpoint; it runs code "
                "from the checkpoint folder. Pass trust_remote_code=True (--trust-remote-code) to allow it, "
                "or use 'chatglm' (the GLM architecture transformers implements natively)."
            )
        path = local_or_snapshot(self, options)
        model_cls = self.model_class
        if self.remote_code:
            from transformers import AutoModel as model_cls
        model = model_cls.from_pretrained(
            str(path), dtype=options.dtype, local_files_only=True, trust_remote_code=options.trust_remote_code,
            **self.model_kwargs,
        )
        return model, load_tokenizer(path, trust_remote_code=options.trust_remote_code)


def local_or_snapshot(spec: EncoderSpec, options: LoadOptions):
    """The folder holding ``spec``'s checkpoint: a local path, or the override dir / HF cache."""
    checkpoint = getattr(spec, "checkpoint", None)
    if checkpoint is not None:
        return Path(checkpoint)
    if Path(spec.weights).is_dir():
        return Path(spec.weights)
    return resolve_snapshot(spec.name, spec.weights, allow_downloads=options.allow_downloads)


class HFTextEncoder(Encoder):
    """Token states of one layer, pooled (mean / cls / last token), optionally L2-normalised."""

    def __init__(self, info, model, preprocessor, device, dtype, spec: HFTextSpec):
        super().__init__(info, model, preprocessor, device, dtype)
        self.spec = spec
        self.forward_kwargs = {"use_cache": False} if spec.family in DECODERS or spec.remote_code else {}

    def _hidden(self, **inputs: torch.Tensor) -> torch.Tensor:
        want_layers = self.spec.layer != -1
        out = self.module(**inputs, output_hidden_states=want_layers, **self.forward_kwargs)
        hidden = out.hidden_states[self.spec.layer] if want_layers else out.last_hidden_state
        batch = inputs["input_ids"].shape[0]
        if hidden.shape[0] != batch and hidden.shape[1] == batch:  # legacy ChatGLM returns [L, N, D]
            hidden = hidden.transpose(0, 1)
        return hidden

    def _forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        if "cu_seqlens" in batch:
            feats = self._forward_packed(batch)
        else:
            ids = batch["input_ids"].to(self.device, non_blocking=True)
            mask = batch["attention_mask"].to(self.device, non_blocking=True)
            feats = pool_padded(self._hidden(input_ids=ids, attention_mask=mask), mask, self.spec.pooling)
        return torch.nn.functional.normalize(feats.float(), p=2, dim=1) if self.spec.normalize else feats

    def _forward_packed(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        ids = batch["input_ids"].to(self.device, non_blocking=True)
        cu = batch["cu_seqlens"].to(self.device, non_blocking=True)
        kwargs = packing.packed_inputs(ids, cu)
        hidden = self._hidden(**kwargs)[0]
        return pool_packed(hidden, cu, self.spec.pooling)


# ----------------------------------------------------------------------------- real names

_LLAMA = {  # LLaMA-1 sizes (Touvron et al. 2023); any compatible local checkpoint loads by path
    "llama-7b": ("huggyllama/llama-7b", {"hidden_size": 4096, "intermediate_size": 11008, "num_hidden_layers": 32, "num_attention_heads": 32}),
    "llama-13b": ("huggyllama/llama-13b", {"hidden_size": 5120, "intermediate_size": 13824, "num_hidden_layers": 40, "num_attention_heads": 40}),
    "llama-65b": ("huggyllama/llama-65b", {"hidden_size": 8192, "intermediate_size": 22016, "num_hidden_layers": 80, "num_attention_heads": 64}),
}
_T5 = {
    "t5-small": ("google-t5/t5-small", {"d_model": 512, "d_ff": 2048, "d_kv": 64, "num_layers": 6, "num_heads": 8}),
    "t5-base": ("google-t5/t5-base", {"d_model": 768, "d_ff": 3072, "d_kv": 64, "num_layers": 12, "num_heads": 12}),
    "t5-large": ("google-t5/t5-large", {"d_model": 1024, "d_ff": 4096, "d_kv": 64, "num_layers": 24, "num_heads": 16}),
}


def _config(cls: type, **kw: Any) -> Callable[[], PretrainedConfig]:
    return lambda: cls(**kw)


def _llama(name: str) -> HFTextSpec:
    repo, dims = _LLAMA[name]
    cfg = _config(LlamaConfig, vocab_size=32000, max_position_embeddings=2048, rms_norm_eps=1e-6, **dims)
    return HFTextSpec(name=name, modality="text", backend="transformers", family="llama", weights=repo,
                      pooling="last", dim=dims["hidden_size"], max_tokens=512, model_class=LlamaModel, config=cfg)


def _t5(name: str) -> HFTextSpec:
    repo, dims = _T5[name]
    cfg = _config(T5Config, vocab_size=32128, **dims)
    return HFTextSpec(name=name, modality="text", backend="transformers", family="t5", weights=repo,
                      pooling="mean", dim=dims["d_model"], max_tokens=512, model_class=T5EncoderModel, config=cfg)


for _name in _LLAMA:
    register_encoder(_name)(lambda n=_name: _llama(n))
for _name in _T5:
    register_encoder(_name)(lambda n=_name: _t5(n))


@register_encoder("chatglm")
def chatglm() -> HFTextSpec:
    """GLM-4-9B through transformers' native GlmModel (no remote code)."""
    return HFTextSpec(name="chatglm", modality="text", backend="transformers", family="glm",
                      weights="THUDM/glm-4-9b-hf", pooling="last", dim=4096, max_tokens=512,
                      model_class=GlmModel, config=GlmConfig)


@register_encoder("glm4-9b")
def glm4_9b() -> HFTextSpec:
    """GLM-4-9B-0414 through transformers' native Glm4Model."""
    return HFTextSpec(name="glm4-9b", modality="text", backend="transformers", family="glm4",
                      weights="THUDM/GLM-4-9B-0414", pooling="last", dim=4096, max_tokens=512,
                      model_class=Glm4Model, config=_config(Glm4Config, max_position_embeddings=32768))


@register_encoder("chatglm3-6b")
def chatglm3_6b() -> HFTextSpec:
    """Legacy remote-code ChatGLM3-6B; loads only with trust_remote_code=True.

    Its parameters are counted on the equivalent native GLM layout (same blocks: RMSNorm,
    fused SwiGLU, grouped-query attention with qkv bias) plus the output layer ChatGLMModel holds.
    """
    vocab, hidden = 65024, 4096
    cfg = _config(GlmConfig, vocab_size=vocab, hidden_size=hidden, intermediate_size=13696, num_hidden_layers=28,
                  num_attention_heads=32, num_key_value_heads=2, head_dim=128, attention_bias=True, pad_token_id=0)
    return HFTextSpec(name="chatglm3-6b", modality="text", backend="transformers", family="glm",
                      weights="THUDM/chatglm3-6b", pooling="last", dim=hidden, max_tokens=512,
                      model_class=GlmModel, config=cfg, remote_code=True, extra_params=vocab * hidden)


# ----------------------------------------------------------------------------- tiny test models

_TINY_COMMON = {"vocab_size": TINY_VOCAB, "pad_token_id": 0}


def _tiny(name: str, family: str, model_class: type, cfg: Callable[[], PretrainedConfig], dim: int, pooling: str) -> HFTextSpec:
    return HFTextSpec(name=name, modality="text", backend="transformers", family=family, weights=RANDOM,
                      pooling=pooling, dim=dim, max_tokens=128, dtype="float32", model_class=model_class, config=cfg)


@register_encoder("tiny-llama")
def tiny_llama() -> HFTextSpec:
    cfg = _config(LlamaConfig, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                  num_key_value_heads=2, max_position_embeddings=256, **_TINY_COMMON)
    return _tiny("tiny-llama", "llama", LlamaModel, cfg, 32, "last")


@register_encoder("tiny-t5")
def tiny_t5() -> HFTextSpec:
    cfg = _config(T5Config, d_model=32, d_ff=64, d_kv=8, num_layers=2, num_heads=4, decoder_start_token_id=0,
                  **_TINY_COMMON)
    return _tiny("tiny-t5", "t5", T5EncoderModel, cfg, 32, "mean")


@register_encoder("tiny-glm")
def tiny_glm() -> HFTextSpec:
    cfg = _config(GlmConfig, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                  num_key_value_heads=2, head_dim=8, max_position_embeddings=256, **_TINY_COMMON)
    return _tiny("tiny-glm", "glm", GlmModel, cfg, 32, "last")


@register_encoder("tiny-glm4")
def tiny_glm4() -> HFTextSpec:
    cfg = _config(Glm4Config, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                  num_key_value_heads=2, head_dim=8, max_position_embeddings=256, **_TINY_COMMON)
    return _tiny("tiny-glm4", "glm4", Glm4Model, cfg, 32, "last")


@register_encoder("tiny-bert")
def tiny_bert() -> HFTextSpec:
    cfg = _config(BertConfig, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                  max_position_embeddings=256, **_TINY_COMMON)
    return _tiny("tiny-bert", "bert", BertModel, cfg, 32, "mean")


_T5_TYPES = ("t5", "mt5", "umt5", "longt5")


def model_class_for(config: PretrainedConfig) -> type:
    """The transformers class that returns token states for ``config`` (T5 family: encoder only)."""
    from transformers import MODEL_MAPPING

    if config.model_type in _T5_TYPES:
        return T5EncoderModel if config.model_type == "t5" else _encoder_class(config.model_type)
    try:
        return MODEL_MAPPING[type(config)]
    except KeyError:
        raise ValueError(f"no transformers model class for model_type {config.model_type!r}") from None


def _encoder_class(model_type: str) -> type:
    import transformers

    names = {"mt5": "MT5EncoderModel", "umt5": "UMT5EncoderModel", "longt5": "LongT5EncoderModel"}
    return getattr(transformers, names[model_type])


def default_pooling(config: PretrainedConfig) -> str:
    """Bidirectional encoders (BERT-like, T5 encoders) pool the mean of their tokens; causal decoders the last token."""
    from transformers.models.auto.modeling_auto import (
        MODEL_FOR_CAUSAL_LM_MAPPING_NAMES,
        MODEL_FOR_MASKED_LM_MAPPING_NAMES,
    )

    causal = config.model_type in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES
    bidirectional = config.model_type in MODEL_FOR_MASKED_LM_MAPPING_NAMES or config.model_type in _T5_TYPES
    return "last" if causal and not bidirectional else "mean"
