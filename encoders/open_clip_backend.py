"""open_clip CLIP encoders: the image tower (``clip-vit-*``) and the text tower (``clip-vit-*-text``).

Features are the towers' projected embeddings (``pooling="proj"``, the space CLIP aligns), not
normalised. Real names load OpenAI's weights from ``$HARNESS_WEIGHTS_DIR/<name>`` or the HF cache;
``tiny-clip`` / ``tiny-clip-text`` are a tiny ``open_clip.model.CLIP`` with seeded init.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import open_clip
import torch
from open_clip.constants import OPENAI_DATASET_MEAN, OPENAI_DATASET_STD
from open_clip.model import CLIP
from open_clip.tokenizer import SimpleTokenizer
from torch import nn

from encoders.base import Encoder, seeded_init
from encoders.images import ImageEncoderMixin, ImagePreprocessor
from encoders.registry import (
    RANDOM,
    EncoderSpec,
    LoadOptions,
    info_of,
    register_encoder,
)
from encoders.text_preprocess import clean_texts
from encoders.weights import resolve_file

WEIGHT_FILES = ("open_clip_model.safetensors", "open_clip_pytorch_model.bin")
OPENAI_PREPROCESS = {"mean": OPENAI_DATASET_MEAN, "std": OPENAI_DATASET_STD, "interpolation": "bicubic",
                     "resize_mode": "shortest"}  # OpenAI CLIP's eval transform (the checkpoints registered here)


@dataclass(frozen=True, eq=False)
class ClipSpec(EncoderSpec):
    """One tower of an open_clip CLIP model (architecture name, config for tiny models)."""

    model_name: str = ""  # open_clip architecture, e.g. "ViT-B-32-quickgelu"
    model_cfg: dict[str, Any] | None = None  # tiny models: CLIP(**model_cfg)
    seed: int = 0

    def _clip(self) -> CLIP:
        cfg = dict(self.model_cfg or open_clip.get_model_config(self.model_name))
        cfg.setdefault("quick_gelu", self.model_name.endswith("-quickgelu"))
        return CLIP(**cfg)

    def skeleton(self) -> nn.Module:
        return tower(self._clip(), self.modality)

    def load(self, options: LoadOptions) -> Encoder:
        if options.random_init(self):
            with seeded_init(self.seed, options.device):
                clip = self._clip()
        else:
            repo = self.weights
            path = resolve_file(self.name, repo, WEIGHT_FILES, allow_downloads=options.allow_downloads)
            clip = open_clip.create_model(self.model_name, pretrained=str(path))
        context = clip.context_length
        pre_cfg = {**OPENAI_PREPROCESS, **getattr(clip.visual, "preprocess_cfg", {})}
        module = tower(clip, self.modality)
        if self.modality == "image":
            transform = open_clip.image_transform(self.image_size, is_train=False, mean=pre_cfg["mean"],
                                                  std=pre_cfg["std"], interpolation=pre_cfg["interpolation"],
                                                  resize_mode=pre_cfg["resize_mode"])
            return ClipImageEncoder(info_of(self), module, ImagePreprocessor(transform, self.image_size),
                                    options.device, options.dtype)
        return ClipTextEncoder(info_of(self), module, ClipTextPreprocessor(context), options.device, options.dtype)


def tower(clip: CLIP, modality: str) -> nn.Module:
    """The image tower (``clip.visual``), or the CLIP with its image tower and logit scales removed."""
    if modality == "image":
        return clip.visual
    del clip.visual
    for name in ("logit_scale", "logit_bias"):
        if getattr(clip, name, None) is not None:
            delattr(clip, name)
    return clip


class ClipImageEncoder(ImageEncoderMixin, Encoder):
    """``clip.visual(pixels)``: the projected image embedding."""


@dataclass
class ClipTextPreprocessor:
    """CLIP's BPE tokenizer (ships with open_clip, offline): ``input_ids`` [N, context_length]."""

    context_length: int

    def __post_init__(self) -> None:
        self.tokenizer = SimpleTokenizer(context_length=self.context_length)

    def lengths(self, raws: list[Any]) -> list[int]:
        texts, valid = clean_texts(raws)
        return [min(len(self.tokenizer.encode(t)) + 2, self.context_length) if ok else 1 for t, ok in zip(texts, valid)]

    def __call__(self, raws: list[Any]) -> dict[str, torch.Tensor]:
        texts, valid = clean_texts(raws)
        return {"input_ids": self.tokenizer(texts), "valid": torch.tensor(valid, dtype=torch.bool)}


class ClipTextEncoder(Encoder):
    """``clip.encode_text(tokens)``: the projected embedding at the end-of-text token."""

    def _forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.module.encode_text(batch["input_ids"].to(self.device, non_blocking=True))


_REAL = {  # name -> (open_clip architecture, HF repo with OpenAI's weights, embed dim, image size)
    "clip-vit-b-32": ("ViT-B-32-quickgelu", "timm/vit_base_patch32_clip_224.openai", 512, 224),
    "clip-vit-l-14": ("ViT-L-14-quickgelu", "timm/vit_large_patch14_clip_224.openai", 768, 224),
}


def _real(name: str, modality: str) -> ClipSpec:
    arch, repo, dim, size = _REAL[name]
    return ClipSpec(name=name if modality == "image" else f"{name}-text", modality=modality, backend="open_clip",
                    family="clip", weights=repo, pooling="proj", dim=dim, image_size=size if modality == "image" else None,
                    max_tokens=77 if modality == "text" else None, dtype="bfloat16", model_name=arch)


for _name in _REAL:
    register_encoder(_name)(lambda n=_name: _real(n, "image"))
    register_encoder(f"{_name}-text")(lambda n=_name: _real(n, "text"))

_TINY_CFG = {
    "embed_dim": 16,
    "vision_cfg": {"image_size": 32, "layers": 2, "width": 32, "head_width": 16, "patch_size": 8},
    "text_cfg": {"context_length": 32, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 2},
}


def _tiny(modality: str) -> ClipSpec:
    name = "tiny-clip" if modality == "image" else "tiny-clip-text"
    return ClipSpec(name=name, modality=modality, backend="open_clip", family="clip", weights=RANDOM, pooling="proj",
                    dim=16, image_size=32 if modality == "image" else None,
                    max_tokens=32 if modality == "text" else None, dtype="float32", model_cfg=_TINY_CFG)


register_encoder("tiny-clip")(lambda: _tiny("image"))
register_encoder("tiny-clip-text")(lambda: _tiny("text"))
