"""The training loop on real ML-100K: beats most-popular, logs the expected names, early stops,
restores the best epoch, is deterministic on CPU, and writes a real MLflow run through ``main``."""

from __future__ import annotations

import numpy as np
import pytest
from mlflow import MlflowClient

from harness.config import load
from harness.evaluation import MostPopular, evaluate, metric_names, sample_targets, split_targets
from harness.tracking import MemoryLogger, mlflow_key
from harness.kdsr import teacher_spec
from harness.run_schema import method_label
from harness.train import evaluate_part, fit, main, model_scorer, resolved_kdsr, run, set_epoch_lr, setup

TINY = ["dataset=ml-100k", "dataset.protocol=leave-one-out", "dataset.max_len=20", "model.dim=16", "model.layers=1",
        "train.device=cpu", "train.batch_size=128", "train.threads=1"]


@pytest.fixture(autouse=True)
def _quiet(monkeypatch):
    monkeypatch.setenv("TQDM_DISABLE", "1")


@pytest.mark.slow
def test_sasrec_beats_most_popular_on_ml100k():
    cfg = load(overrides=["dataset=ml-100k", "dataset.protocol=leave-one-out", "model=sasrec", "model.layers=1",
                          "train.device=cpu", "train.threads=1", "train.epochs=4", "train.batch_size=32", "train.lr=5e-3"])
    cell = setup(cfg)
    popular = evaluate_part(cell, "test", MostPopular(cell.store, cell.split.valid_start, cell.dataset.num_items))
    final = run(cfg, MemoryLogger())
    # measured on the 2-core box: most-popular HR@10 0.0498 / NDCG@10 0.0225; SASRec after 4 epochs 0.111 / 0.051
    assert popular["test/hr@10"] == pytest.approx(0.0498, abs=0.002)
    assert final["test/hr@10"] > 1.6 * popular["test/hr@10"], (final, popular)
    assert final["test/ndcg@10"] > 1.6 * popular["test/ndcg@10"]


def test_logger_receives_the_expected_names():
    log = MemoryLogger()
    final = run(load(overrides=TINY + ["train.epochs=2"]), log)
    per_epoch = {"train/loss", "train/rec", "epoch_time_s"} | {f"valid/{m}" for m in metric_names()}
    assert {name for name in per_epoch if len(log.history(name)) == 2} == per_epoch
    assert [step for step, _ in log.history("train/loss")] == [0, 1]
    assert {f"test/{m}" for m in metric_names()} <= set(final) and {"best_epoch", "epochs_run"} <= set(final)
    assert log.history("test/hr@20") == [(final["best_epoch"], final["test/hr@20"])]
    assert log.params["train.epochs"] == 2 and log.params["data.items"] == 1349 and log.params["data.users"] == 943
    assert "train:\n" in log.artifacts["config.yaml"] and log.artifacts["results.json"] == final
    assert log.tags["harness.dataset"] == "ml-100k" and len(log.tags["harness.cell_key"]) == 16
    assert log.metrics[0][:2] == ("encoder.params", 0.0)  # ID-only: no encoder, a number the MLflow UI can chart


def test_cpu_runs_are_deterministic():
    a, b = MemoryLogger(), MemoryLogger()
    run(load(overrides=TINY + ["train.epochs=1"]), a)
    run(load(overrides=TINY + ["train.epochs=1"]), b)
    assert [m for m in a.metrics if "time" not in m[0]] == [m for m in b.metrics if "time" not in m[0]]


def test_early_stopping_and_best_state_restored():
    cell = setup(load(overrides=TINY + ["train.epochs=10", "train.lr=0", "train.patience=2"]))
    result = fit(cell, MemoryLogger())
    assert (result.best_epoch, result.epochs) == (0, 3)  # nothing can improve with lr=0: stop after 2 more epochs
    cell = setup(load(overrides=TINY + ["train.epochs=3", "train.lr=0.01", "train.patience=0"]))
    log = MemoryLogger()
    result = fit(cell, log)
    assert result.epochs == 3
    assert evaluate_part(cell, "valid") == result.best_valid  # the model now holds the best epoch's weights
    assert result.best_valid["valid/ndcg@10"] == max(v for _, v in log.history("valid/ndcg@10"))


def test_bad_valid_metric_names_valid_ones():
    with pytest.raises(ValueError, match="hr@5, mrr@5"):
        setup(load(overrides=TINY + ["train.valid_metric=recall@10"]))


def test_main_writes_an_mlflow_run(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    uri = f"sqlite:///{tmp_path / 'runs.db'}"
    assert main(TINY + ["train.epochs=2", f"tracking.uri={uri}", "tracking.experiment=e2e", "tracking.run_name=tiny"]) == 0
    client = MlflowClient(uri)
    (run_,) = client.search_runs([client.get_experiment_by_name("e2e").experiment_id])
    assert run_.info.status == "FINISHED" and run_.info.run_name == "tiny"
    assert run_.data.params["model.dim"] == "16" and run_.data.params["dataset.protocol"] == "leave-one-out"
    for name in ("train/loss", "valid/ndcg@10", "epoch_time_s"):
        assert [m.step for m in client.get_metric_history(run_.info.run_id, mlflow_key(name))] == [0, 1]
    assert "test/hr_at_20" in run_.data.metrics
    assert {a.path for a in client.list_artifacts(run_.info.run_id)} >= {"config.yaml", "results.json"}
    local = client.download_artifacts(run_.info.run_id, "config.yaml", str(tmp_path / "dl"))
    assert load(local).model.dim == 16  # the saved config resolves back to the same run
    assert '"test/hr@20"' in capsys.readouterr().out


def test_failed_run_is_marked_failed(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    uri = f"sqlite:///{tmp_path / 'runs.db'}"
    with pytest.raises(KeyError, match="no-such-dataset"):
        main(TINY + ["dataset=no-such-dataset", f"tracking.uri={uri}", "tracking.experiment=bad"])
    client = MlflowClient(uri)
    (run_,) = client.search_runs([client.get_experiment_by_name("bad").experiment_id])
    assert run_.info.status == "FAILED" and "no-such-dataset" in run_.data.tags["error"]


def test_every_training_target_is_fed_once():
    """Windows predict every training next-item target once; the most recent one sees a full max_len history."""
    from harness.batching import batches, training_samples

    cell = setup(load(overrides=TINY + ["dataset.max_len=5"]))
    samples = training_samples(cell.split, 5, windows=True)
    fed, pairs = [], set()
    for inputs, targets in batches(cell.store, samples, True, 512, 5, np.random.default_rng(0)):
        assert inputs.shape[1] <= 5 and ((targets > 0) == (inputs > 0)).all()
        fed.append(targets[targets > 0] - 1)
        pairs.update((tuple(row_in), int(row_t[-1])) for row_in, row_t in zip(inputs, targets) if row_t[-1] > 0)
    train = [seq[1:v] for seq, v in zip(cell.dataset.sequences, cell.split.valid_start)]
    want = np.bincount(np.concatenate(train), minlength=cell.dataset.num_items)
    assert np.array_equal(np.bincount(np.concatenate(fed), minlength=cell.dataset.num_items), want)
    seq = cell.dataset.sequences[0][: cell.split.valid_start[0]] + 1
    assert (tuple(seq[-6:-1]), int(seq[-1])) in pairs


TEXT = ["model.items=finetune", "features.text_encoder=minilm-l6"]  # real MiniLM features, encoded once per session


def test_kdsr_cell_logs_its_losses_and_follows_the_async_schedule():
    cfg = load(overrides=TINY + TEXT + ["kdsr.enabled=true", "kdsr.async_epochs=4", "kdsr.async_start=0.25", "train.epochs=2"])
    cell = setup(cfg)
    in_optimizer = {id(p) for g in cell.optimizer.param_groups for p in g["params"]}
    assert {id(p) for p in cell.kdsr.parameters()} <= in_optimizer  # the student heads are trained
    log = MemoryLogger()
    fit(cell, log)
    lrs = {g["name"]: g["lr"] for g in cell.optimizer.param_groups}
    assert lrs == {"async": pytest.approx(cfg.train.lr * (0.25 + 0.75 * 1 / 4)), "other": cfg.train.lr}  # epoch 1
    slow = cell.optimizer.param_groups[0]["params"]
    assert [id(p) for p in slow] == [id(cell.model.items.tables["text"])]  # the ID table learns at the full rate
    for name in ("train/holistic", "train/dissected", "train/rec", "monitor/pearson_text"):
        assert len(log.history(name)) == 2, name
    rec, loss = log.history("train/rec")[0][1], log.history("train/loss")[0][1]
    hol, dis = log.history("train/holistic")[0][1], log.history("train/dissected")[0][1]
    assert loss == pytest.approx(rec + cfg.kdsr.lambda_holistic * hol + cfg.kdsr.lambda_dissected * dis, rel=1e-4)


def test_async_scope_all_also_slows_the_id_table():
    cell = setup(load(overrides=TINY + TEXT + ["kdsr.enabled=true", "kdsr.async_scope=all", "kdsr.monitor=false"]))
    slow = {id(p) for p in cell.optimizer.param_groups[0]["params"]}
    assert cell.optimizer.param_groups[0]["name"] == "async"
    assert slow == {id(cell.model.items.id.weight), id(cell.model.items.tables["text"])}
    set_epoch_lr(cell, 0)
    assert [g["lr"] for g in cell.optimizer.param_groups] == pytest.approx([cell.cfg.train.lr * 0.1, cell.cfg.train.lr])


def test_async_control_arm_has_the_schedule_but_no_teacher_or_kdsr_loss():
    cfg = load(overrides=TINY + TEXT + ["kdsr.enabled=true", "kdsr.holistic=false", "kdsr.dissected=false",
                                        "kdsr.async_epochs=2", "train.epochs=1"])
    cell = setup(cfg)
    assert cell.kdsr is None and cell.monitor is not None  # no teacher fitted; forgetting still measured
    log = MemoryLogger()
    fit(cell, log)
    assert {g["name"]: g["lr"] for g in cell.optimizer.param_groups} == {"async": pytest.approx(cfg.train.lr * 0.1),
                                                                          "other": cfg.train.lr}
    assert not log.history("train/holistic") and len(log.history("monitor/pearson_text")) == 1
    assert method_label(cfg) == "finetune+async" and method_label(load(overrides=TINY + TEXT)) == "finetune"


def test_teacher_seed_follows_the_training_seed_unless_pinned():
    seeded = [resolved_kdsr(load(overrides=TINY + TEXT + ["kdsr.enabled=true", f"train.seed={s}"])) for s in (3, 4)]
    assert [c.kdsr.teacher_seed for c in seeded] == [3, 4]
    assert teacher_spec(seeded[0].kdsr) != teacher_spec(seeded[1].kdsr)  # two teachers, two cache entries
    pinned = resolved_kdsr(load(overrides=TINY + TEXT + ["kdsr.enabled=true", "train.seed=3", "kdsr.teacher_seed=0"]))
    assert pinned.kdsr.teacher_seed == 0


def test_validation_on_a_target_sample_and_the_test_in_full():
    cell = setup(load(overrides=TINY + ["dataset.protocol=paper", "train.valid_targets=300"]))
    users, positions = split_targets(cell.split.valid_start, cell.split.test_start, cell.store.lengths, "valid")
    assert len(users) > 300
    u, p = sample_targets(users, positions, 300)
    cell.model.eval()  # as evaluate_part does (no dropout)
    want = evaluate(model_scorer(cell), cell.store, u, p, cell.cfg.dataset.max_len, average="targets")
    assert evaluate_part(cell, "valid") == {f"valid/{k}": v for k, v in want.items()}
    full = evaluate(model_scorer(cell), cell.store, users, positions, cell.cfg.dataset.max_len, average="targets")
    assert evaluate_part(cell, "valid") != {f"valid/{k}": v for k, v in full.items()}
    tu, tp = split_targets(cell.split.valid_start, cell.split.test_start, cell.store.lengths, "test")
    test = evaluate(model_scorer(cell), cell.store, tu, tp, cell.cfg.dataset.max_len, average="targets")
    assert len(tu) > 300 and evaluate_part(cell, "test") == {f"test/{k}": v for k, v in test.items()}  # never sampled
    cell.cfg.train.valid_targets = 0
    assert evaluate_part(cell, "valid") == {f"valid/{k}": v for k, v in full.items()}


def test_finetuned_baseline_logs_the_forgetting_curve_without_kdsr():
    """The monitor does not need KDSR: the fine-tuned baseline gets the same curve; ID-only runs get none."""
    log = MemoryLogger()
    cell = setup(load(overrides=TINY + TEXT + ["train.epochs=2"]))
    assert cell.kdsr is None
    best = fit(cell, log)
    curve = [v for _, v in log.history("monitor/pearson_text")]
    assert len(curve) == 2 and all(-1.0 <= v <= 1.0 for v in curve)
    # the logged value is the monitor of that epoch's weights: recomputed on the restored best state
    assert curve[best.best_epoch] == pytest.approx(cell.monitor(cell.model.items)["monitor/pearson_text"], abs=1e-9)
    assert setup(load(overrides=TINY + TEXT + ["model.items=id"])).monitor is None
    assert setup(load(overrides=TINY + TEXT + ["kdsr.monitor=false"])).monitor is None


@pytest.mark.parametrize("backbone", ["mmsr", "gru4rec"])
def test_other_backbones_train_with_modality_features(backbone):
    final = run(load(overrides=TINY + TEXT + [f"model={backbone}", "train.epochs=1"]), MemoryLogger())
    assert 0.0 < final["test/hr@20"] < 1.0


def test_prefix_samples_match_recbole_augmentation():
    """train.samples=prefixes: one sample per training target, its last max_len items as input."""
    from harness.batching import batches, training_samples

    cell = setup(load(overrides=TINY + ["dataset.max_len=5", "train.samples=prefixes"]))
    samples = training_samples(cell.split, 5, windows=False)
    n_targets = int((cell.split.valid_start - 1).clip(min=0).sum())
    assert len(samples[0]) == n_targets
    seen = 0
    for inputs, targets in batches(cell.store, samples, False, 4096, 5, np.random.default_rng(0)):
        assert ((targets > 0).sum(1) == 1).all()  # one target per row, right after the last input item
        last = (inputs > 0).sum(1) - 1
        assert (targets[np.arange(len(targets)), last] > 0).all()
        seen += len(inputs)
    assert seen == n_targets
    final = run(load(overrides=TINY + ["train.samples=prefixes", "train.epochs=1", "train.batch_size=1024"]), MemoryLogger())
    assert 0.0 < final["test/hr@20"] < 1.0


@pytest.mark.slow
def test_a_fresh_cache_and_a_warm_one_give_the_same_run(tmp_path):
    """Encoding the features and fitting the teacher in-process draws from the RNGs; a run on a fresh cache must
    still start from exactly the weights, student heads and random stream of a rerun on the warm cache."""
    import torch

    cfg = load(overrides=TINY + ["model.items=finetune", "features.text_encoder=tiny-bert", "kdsr.enabled=true",
                                 "kdsr.fit_pairs=2000", f"features.cache_dir={tmp_path / 'cache'}"])
    starts = []
    for _ in ("fresh", "warm"):
        cell = setup(cfg)
        state = {**cell.model.state_dict(), **{f"kdsr.{k}": v for k, v in cell.kdsr.state_dict().items()}}
        starts.append((state, torch.rand(4), np.random.rand()))
    (fresh, fresh_draw, fresh_np), (warm, warm_draw, warm_np) = starts
    assert fresh.keys() == warm.keys()
    assert all(torch.equal(fresh[k], warm[k]) for k in fresh)
    assert torch.equal(fresh_draw, warm_draw) and fresh_np == warm_np
