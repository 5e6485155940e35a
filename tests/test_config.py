"""Typed config: YAML + dotted overrides, closest-key errors, section scalars, type errors."""

from __future__ import annotations

import pytest

from harness.config import Config, ConfigError, cell_key, load, to_dict, to_yaml


def test_defaults_and_overrides():
    cfg = load(overrides=["train.epochs=3", "model.dim=128", "train.lr=1e-3", "train.amp=false", "features.text_encoder=minilm-l6"])
    assert (cfg.train.epochs, cfg.model.dim, cfg.train.lr, cfg.train.amp) == (3, 128, 0.001, False)
    assert cfg.features.text_encoder == "minilm-l6" and isinstance(cfg.train.lr, float)
    assert load().train.epochs == Config().train.epochs


def test_yaml_then_overrides_win(tmp_path):
    path = tmp_path / "cell.yaml"
    path.write_text("dataset: ml-1m\ntrain:\n  epochs: 7\n  lr: 5e-4\nmodel:\n  name: gru4rec\n")
    cfg = load(path, ["train.epochs=2"])
    assert (cfg.dataset.name, cfg.train.epochs, cfg.train.lr, cfg.model.name) == ("ml-1m", 2, 0.0005, "gru4rec")


def test_scalar_given_to_a_section_sets_its_name():
    cfg = load(overrides=["dataset=ml-1m", "model=mmsr", "features.text_encoder=minilm-l6", "model.items=finetune"])
    assert cfg.dataset.name == "ml-1m" and cfg.model.name == "mmsr"
    with pytest.raises(ConfigError, match="section without a name"):
        load(overrides=["tracking=foo"])


@pytest.mark.parametrize(
    ("override", "suggestion"),
    [("train.epoch=3", "train.epochs"), ("trian.epochs=3", "train"), ("model.dimm=3", "model.dim"), ("kdsr.lambda_holistc=1", "kdsr.lambda_holistic")],
)
def test_unknown_key_names_the_closest(override, suggestion):
    with pytest.raises(ConfigError, match=f"did you mean '{suggestion}'"):
        load(overrides=[override])


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("train.epochs=abc", "train.epochs: expected int, got 'abc'"),
        ("train.epochs=1.5", "expected int"),
        ("train.epochs=true", "expected int, got True"),
        ("train.lr=true", "expected float, got True"),
        ("train.amp=1", "expected bool, got 1"),
        ("train.epochs.x=1", "is a value, not a section"),
        ("train.epochs", "not of the form key=value"),
    ],
)
def test_type_errors(override, message):
    with pytest.raises(ConfigError, match=message.replace(".", r"\.")):
        load(overrides=[override])


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("model=bert4rec", "sasrec, gru4rec, mmsr"),
        ("dataset.protocol=random", "paper, leave-one-out"),
        ("train.eval_ties=random", "expected, pessimistic, optimistic"),
        ("model.items=finetune", "needs features.text_encoder"),
    ],
)
def test_invalid_choices_list_the_valid_ones(override, message):
    with pytest.raises(ConfigError, match=message):
        load(overrides=[override])


def test_optional_fields_accept_none_and_yaml_round_trip(tmp_path):
    cfg = load(overrides=["features.text_encoder=minilm-l6", "features.text_encoder=none", "tracking.experiment_id=12"])
    assert cfg.features.text_encoder is None and cfg.tracking.experiment_id == "12"
    path = tmp_path / "resolved.yaml"
    path.write_text(to_yaml(cfg))
    assert to_dict(load(path)) == to_dict(cfg)


def test_cell_key_ignores_where_a_run_is_recorded():
    base = load(overrides=["train.epochs=3"])
    assert cell_key(base) == cell_key(load(overrides=["train.epochs=3", "tracking.experiment=other", "train.device=cpu"]))
    assert cell_key(base) != cell_key(load(overrides=["train.epochs=4"]))
