"""Typed run configuration: dataclasses from YAML plus dotted ``key=value`` overrides.

``dataset=ml-100k`` (a scalar given to a section) sets that section's ``name``.
Unknown keys are errors that name the closest valid key.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import hashlib
import json
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml


@dataclass
class DataConfig:
    name: str = "ml-100k"
    data_dir: str | None = None  # default: $HARNESS_DATA_DIR
    protocol: str = "paper"  # paper | leave-one-out
    valid_fraction: float = 0.1  # share of each user's training part held out for model selection
    max_len: int = 50  # history length seen by the model


@dataclass
class FeatureConfig:
    text_encoder: str | None = None  # e.g. "minilm-l6"; None = no text modality
    image_encoder: str | None = None  # e.g. "resnet50"; None = no image modality
    cache_dir: str | None = None  # the cache root of datasets, splits, features, teachers; default $HARNESS_CACHE_DIR
    trust_remote_code: bool = False  # allow remote-code checkpoints (e.g. chatglm3-6b) to run their own code


@dataclass
class ModelConfig:
    name: str = "sasrec"  # sasrec | gru4rec | mmsr
    items: str = "id"  # id | frozen (features + IDs, SASRM) | finetune
    dim: int = 64
    layers: int = 2
    heads: int = 2
    dropout: float = 0.2
    clusters: int = 20  # MMSR: k-means clusters per modality
    cluster_links: int = 2  # MMSR: nearest clusters each item links to


@dataclass
class TrainConfig:
    epochs: int = 50
    batch_size: int = 256
    lr: float = 1e-3
    weight_decay: float = 0.0
    patience: int = 5  # early stopping, in epochs without validation improvement
    valid_metric: str = "ndcg@10"
    eval_batch_size: int = 1024
    valid_targets: int = 0  # validate on a fixed random sample of at most this many targets (0 = all); test is complete
    seed: int = 42
    device: str = "auto"  # auto | cpu | cuda
    amp: bool = True  # bf16 autocast on GPU
    threads: int = 0  # torch CPU threads; 0 = torch default
    eval_ties: str = "expected"  # expected | pessimistic | optimistic (see harness/evaluation.py)
    mask_history: bool = False  # drop already-seen items from the ranking (RecBole's sequential models: no)
    samples: str = "windows"  # windows: every position of max_len windows (causal backbones) | prefixes: one per target
    checkpoint_dir: str | None = None  # end-of-epoch checkpoints to resume from (None = off; sweeps set one per cell)


@dataclass
class KDSRConfig:
    enabled: bool = False
    latent_dim: int = 128  # d' of the teacher autoencoder
    score: str = "cosine"  # cosine | dot | euclidean | manhattan
    quantizer: str = "vq"  # vq | kmeans
    sub_vectors: int = 8  # m
    codes: int = 50  # K
    fit_pairs: int = 200_000  # sampled co-occurring pairs the codebook is fitted on
    tau: float = 1.5
    soft_match: bool = True
    holistic: bool = True
    dissected: bool = True
    lambda_holistic: float = 0.5
    lambda_dissected: float = 0.1
    async_train: bool = True
    async_epochs: int = 5  # E: epochs for the embedding LR to reach the base LR
    async_start: float = 0.1  # starting fraction of the base LR
    async_scope: str = "modality"  # modality: the modality tables / projections only (the paper) | all: also the ID table
    pairs: str = "sample"  # all | sample
    max_pairs: int = 64  # per sequence, when pairs=sample
    monitor: bool = True  # modality-forgetting Pearson monitor each epoch
    monitor_pairs: int = 20_000  # fixed random item pairs the monitor correlates over
    dissected_hidden: int = 64  # width of W1 in the student's dissected head
    teacher_seed: int | None = None  # seeds the teacher fit (autoencoder, pair sample, codebook); None = train.seed
    signals: str = "auto"  # auto | onthefly | table: teacher signals computed per batch or gathered from N x N tables


@dataclass
class TrackingConfig:
    uri: str | None = None  # default: $MLFLOW_TRACKING_URI or sqlite:///mlruns.db
    experiment: str = "harness"
    experiment_id: str | None = None  # set by the sweep submitter (avoids the set_experiment race)
    parent_run_id: str | None = None
    run_name: str | None = None
    system_metrics: bool = False


@dataclass
class Config:
    dataset: DataConfig = field(default_factory=DataConfig)
    features: FeatureConfig = field(default_factory=FeatureConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    kdsr: KDSRConfig = field(default_factory=KDSRConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)


class ConfigError(ValueError):
    """A config key or value that cannot be applied."""


def _closest(key: str, valid: list[str]) -> str:
    close = difflib.get_close_matches(key, valid, n=1, cutoff=0.0)
    return f"; did you mean {close[0]!r}?" if close else ""


def _field_type(obj: Any, name: str) -> Any:
    hints = typing.get_type_hints(type(obj))
    return hints[name]


def _coerce(value: Any, tp: Any, key: str) -> Any:
    """Convert a YAML/CLI value to the annotated field type."""
    args = typing.get_args(tp)
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        if value is None or (isinstance(value, str) and value.lower() in ("none", "null", "~")):
            if type(None) in args:
                return None
        tp = next(a for a in args if a is not type(None))
    if isinstance(value, str) and tp is not str:
        value = yaml.safe_load(value)
    if tp is float and isinstance(value, str):  # YAML 1.1 reads "1e-3" (no dot) as a string
        try:
            value = float(value)
        except ValueError:
            pass
    try:
        if isinstance(value, bool) != (tp is bool):  # bool is an int subclass: reject it as a number
            raise TypeError
        if tp is float and isinstance(value, int):
            return float(value)
        if not isinstance(value, tp):
            raise TypeError
    except TypeError:
        raise ConfigError(f"{key}: expected {tp.__name__}, got {value!r}") from None
    return value


def _set(node: Any, dotted: str, value: Any, prefix: str = "") -> None:
    head, _, rest = dotted.partition(".")
    names = [f.name for f in dataclasses.fields(node)]
    if head not in names:
        valid = [f"{prefix}{n}" for n in names]
        raise ConfigError(f"unknown config key {prefix + head!r}{_closest(prefix + head, valid)} (valid: {', '.join(valid)})")
    current = getattr(node, head)
    if dataclasses.is_dataclass(current):
        if rest:
            _set(current, rest, value, f"{prefix}{head}.")
        elif isinstance(value, dict):
            for k, v in value.items():
                _set(current, k, v, f"{prefix}{head}.")
        elif "name" in {f.name for f in dataclasses.fields(current)}:  # dataset=ml-1m, model=sasrec
            _set(current, "name", value, f"{prefix}{head}.")
        else:
            raise ConfigError(f"{prefix + head!r} is a section without a name; set its keys, e.g. {prefix + head}.<key>=...")
        return
    if rest:
        raise ConfigError(f"{prefix + head!r} is a value, not a section")
    setattr(node, head, _coerce(value, _field_type(node, head), prefix + head))


def apply(cfg: Config, values: dict[str, Any]) -> Config:
    """Apply nested or dotted keys to ``cfg`` (in place) and return it."""
    for key, value in values.items():
        _set(cfg, key, value)
    return cfg


def parse_override(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise ConfigError(f"override {text!r} is not of the form key=value")
    return key.strip(), value


def load(path: str | Path | None = None, overrides: list[str] | None = None, base: dict | None = None) -> Config:
    """Defaults <- ``base`` dict <- YAML file <- ``key=value`` overrides."""
    cfg = Config()
    if base:
        apply(cfg, base)
    if path is not None:
        data = yaml.safe_load(Path(path).read_text()) or {}
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: expected a mapping at top level")
        apply(cfg, data)
    for item in overrides or []:
        key, value = parse_override(item)
        _set(cfg, key, value)
    validate(cfg)
    return cfg


@functools.cache
def _choices() -> dict[str, tuple[str, ...]]:
    """Valid values per key, read from the modules that implement them (the backbone registry, KDSR's scores ...)."""
    # imported here, not at the top: they import torch (~3 s measured, against ~0.1 s for this module, which every
    # command imports) and import harness.config themselves
    from harness.data.split import PROTOCOLS
    from harness.evaluation import TIES
    from harness.kdsr import QUANTIZERS, SCORES
    from harness.kdsr.pairs import PAIRS
    from harness.models import MODES, list_backbones
    from harness.models.items import ASYNC_SCOPES
    from harness.train import DEVICES, SAMPLES

    return {
        "dataset.protocol": PROTOCOLS,
        "model.name": tuple(list_backbones()),
        "model.items": MODES,
        "kdsr.score": SCORES,
        "kdsr.quantizer": QUANTIZERS,
        "kdsr.pairs": PAIRS,
        "kdsr.async_scope": ASYNC_SCOPES,
        "train.device": DEVICES,
        "train.eval_ties": TIES,
        "train.samples": SAMPLES,
    }


def validate(cfg: Config) -> None:
    flat = to_dict(cfg, flat=True)
    for key, choices in _choices().items():
        if flat[key] not in choices:
            raise ConfigError(f"{key}={flat[key]!r} is not one of {', '.join(choices)}")
    if cfg.model.items != "id" and not (cfg.features.text_encoder or cfg.features.image_encoder):
        raise ConfigError(f"model.items={cfg.model.items} needs features.text_encoder or features.image_encoder")
    if cfg.kdsr.enabled and not (cfg.features.text_encoder or cfg.features.image_encoder):
        raise ConfigError("kdsr.enabled=true needs a teacher: set features.text_encoder or features.image_encoder")


def to_dict(cfg: Config, flat: bool = False) -> dict[str, Any]:
    data = dataclasses.asdict(cfg)
    if not flat:
        return data
    out: dict[str, Any] = {}
    for section, values in data.items():
        for k, v in values.items():
            out[f"{section}.{k}"] = v
    return out


def to_yaml(cfg: Config) -> str:
    return yaml.safe_dump(to_dict(cfg), sort_keys=False)


# Keys that describe where/how a run is recorded, not what it computes.
_NOT_IDENTITY = ("tracking.", "dataset.data_dir", "features.cache_dir", "features.trust_remote_code", "train.device",
                 "train.threads", "train.checkpoint_dir")


def cell_key(cfg: Config) -> str:
    """Deterministic key of what a run computes (hash of the resolved config)."""
    flat = {k: v for k, v in to_dict(cfg, flat=True).items() if not k.startswith(_NOT_IDENTITY)}
    return hashlib.sha256(json.dumps(flat, sort_keys=True).encode()).hexdigest()[:16]
