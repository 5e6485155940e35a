"""timm image encoders: ResNet-18/34/50/101/152 and Swin-T/B (pooled features, classifier removed).

Real names load timm's own checkpoint files from ``$HARNESS_WEIGHTS_DIR/<name>`` or the HF cache;
``tiny-resnet`` / ``tiny-swin`` are the same timm classes with tiny configs and seeded init.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import timm
from timm.data import (
    IMAGENET_DEFAULT_MEAN,
    IMAGENET_DEFAULT_STD,
    create_transform,
    resolve_model_data_config,
)
from timm.models.resnet import BasicBlock, ResNet
from timm.models.swin_transformer import SwinTransformer
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
from encoders.weights import resolve_file

WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")


@dataclass(frozen=True, eq=False)
class TimmSpec(EncoderSpec):
    """A timm model: its registered timm name (real) or a constructor (tiny)."""

    timm_name: str = ""  # "resnet50.tv_in1k": architecture plus pretrained tag
    constructor: Callable[[], nn.Module] | None = None  # tiny models: build the class directly
    seed: int = 0

    def skeleton(self) -> nn.Module:
        if self.constructor is not None:
            return self.constructor()
        return timm.create_model(self.timm_name, pretrained=False, num_classes=0)

    def load(self, options: LoadOptions) -> Encoder:
        if options.random_init(self):
            with seeded_init(self.seed, options.device):
                model = self.skeleton()
        else:
            path = resolve_file(self.name, self.weights, WEIGHT_FILES, allow_downloads=options.allow_downloads)
            model = timm.create_model(self.timm_name, pretrained=True, num_classes=0,
                                      pretrained_cfg_overlay={"file": str(path)})
        return TimmEncoder(info_of(self), model, ImagePreprocessor(self.transform(model), self.image_size),
                           options.device, options.dtype)

    def transform(self, model: nn.Module) -> Callable:
        """timm's eval transform for the model (its pretrained config; ImageNet defaults for tiny models)."""
        if self.constructor is None:
            return create_transform(**resolve_model_data_config(model), is_training=False)
        size = self.image_size
        return create_transform(input_size=(3, size, size), interpolation="bicubic", crop_pct=0.875,
                                mean=IMAGENET_DEFAULT_MEAN, std=IMAGENET_DEFAULT_STD, is_training=False)


class TimmEncoder(ImageEncoderMixin, Encoder):
    """Global-average-pooled features of the last stage (``num_classes=0``)."""


_REAL: dict[str, tuple[str, int, str]] = {  # name -> (timm name with tag, dim, family)
    "resnet18": ("resnet18.tv_in1k", 512, "resnet"),
    "resnet34": ("resnet34.tv_in1k", 512, "resnet"),
    "resnet50": ("resnet50.tv_in1k", 2048, "resnet"),
    "resnet101": ("resnet101.tv_in1k", 2048, "resnet"),
    "resnet152": ("resnet152.tv_in1k", 2048, "resnet"),
    "swin-t": ("swin_tiny_patch4_window7_224.ms_in1k", 768, "swin"),
    "swin-b": ("swin_base_patch4_window7_224.ms_in22k_ft_in1k", 1024, "swin"),
}


def _real(name: str) -> TimmSpec:
    timm_name, dim, family = _REAL[name]
    return TimmSpec(name=name, modality="image", backend="timm", family=family, weights=f"timm/{timm_name}",
                    pooling="avg", dim=dim, image_size=224, dtype="bfloat16", timm_name=timm_name)


for _name in _REAL:
    register_encoder(_name)(lambda n=_name: _real(n))


def _tiny(name: str, family: str, constructor: Callable[[], nn.Module], dim: int, size: int, **kw: Any) -> TimmSpec:
    return TimmSpec(name=name, modality="image", backend="timm", family=family, weights=RANDOM, pooling="avg",
                    dim=dim, image_size=size, dtype="float32", constructor=constructor, **kw)


@register_encoder("tiny-resnet")
def tiny_resnet() -> TimmSpec:
    build = lambda: ResNet(BasicBlock, layers=(1, 1, 1, 1), channels=(8, 16, 32, 64), stem_width=8, num_classes=0)
    return _tiny("tiny-resnet", "resnet", build, dim=64, size=32)


@register_encoder("tiny-swin")
def tiny_swin() -> TimmSpec:
    build = lambda: SwinTransformer(img_size=32, patch_size=4, window_size=4, embed_dim=16, depths=(1, 1),
                                    num_heads=(1, 2), num_classes=0)
    return _tiny("tiny-swin", "swin", build, dim=32, size=32)
