"""One training cell: ``harness train [--config FILE] key=value ...``.

``run(cfg, logger)`` goes data -> split -> features -> model (+ KDSR) -> epochs with early
stopping on the validation split -> test at the best-validation epoch, logging through a
``harness.tracking.Logger``. Causal backbones are trained on every position of a window of
``max_len`` items in one forward pass (the same next-item targets as RecBole's prefix
expansion, about ``max_len`` times fewer forward passes); other backbones get one sample per
target. The loss is cross-entropy over all items. See docs/TRAINING.md.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import random
import sys
import time
import traceback
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from harness.batching import SequenceStore, batches, to_tensor, training_samples, width_groups
from harness.config import Config, load, to_yaml
from harness.data import load_dataset, make_split
from harness.evaluation import PROTOCOL_AVERAGE, evaluate, metric_names, sample_targets, split_targets, targets_digest
from harness.encoding import ensure_features
from harness.kdsr import ForgettingMonitor, build_kdsr, embedding_lr_factor
from harness.kdsr.monitor import MONITOR_SEED
from harness import checkpoint
from harness.allocator import keep_freed_memory
from harness import run_schema as schema
from harness.models import build_model
from harness.progress import progress
from harness.run_schema import encoder_record, is_part_metric, machine_tags, part_metric, run_params, run_tags
from harness.archive.spool import SpoolLogger
from harness.tracking import Logger, run_exists, tracking_uri

DEVICES = ("auto", "cpu", "cuda")  # train.device
SAMPLES = ("windows", "prefixes")  # train.samples


@dataclass
class Cell:
    """Everything one run works on, built once by :func:`setup`."""

    cfg: Config
    device: torch.device
    dataset: Any
    split: Any
    store: SequenceStore
    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    kdsr: Any = None
    features: dict = field(default_factory=dict)
    monitor: Any = None  # callable(items) -> forgetting metrics, or None


def resolve_device(name: str) -> torch.device:
    """``auto`` -> CUDA when available, else CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("train.device=cuda but no CUDA device is visible; use train.device=cpu or auto")
    return torch.device(name)


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (CPU and CUDA) for a reproducible run."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def check_config(cfg: Config) -> None:
    """Training-specific checks that ``harness.config.validate`` cannot do."""
    valid = metric_names()
    if cfg.train.valid_metric not in valid:
        raise ValueError(f"train.valid_metric={cfg.train.valid_metric!r} is not a metric; valid: {', '.join(valid)}")
    for key in ("epochs", "batch_size", "eval_batch_size"):
        if getattr(cfg.train, key) < 1:
            raise ValueError(f"train.{key} must be >= 1, got {getattr(cfg.train, key)}")
    if cfg.dataset.max_len < 1:
        raise ValueError(f"dataset.max_len must be >= 1, got {cfg.dataset.max_len}")


def load_data(cfg: Config) -> tuple[Any, Any, SequenceStore]:
    """The dataset, its split and the packed sequences."""
    dataset = load_dataset(cfg.dataset.name, cfg.dataset.data_dir, cache_dir=cfg.features.cache_dir)
    split = make_split(dataset, cfg.dataset.protocol, cfg.dataset.valid_fraction, cache_dir=cfg.features.cache_dir)
    return dataset, split, SequenceStore(dataset.sequences)


def load_modalities(cfg: Config, dataset: Any) -> dict[str, Any]:
    """Modality name -> ``Features`` for every encoder the config names (encoded now if not cached)."""
    encoders = {"text": cfg.features.text_encoder, "image": cfg.features.image_encoder}
    if not any(encoders.values()):
        return {}
    return {m: ensure_features(dataset, enc, m, cfg.features.cache_dir, cfg.features.trust_remote_code) for m, enc in encoders.items() if enc}


def make_optimizer(cfg: Config, model: torch.nn.Module, extra: torch.nn.Module | None = None) -> torch.optim.Optimizer:
    """Adam with two groups: ``async`` (the item tables KDSR's asynchronous LR applies to, by
    ``kdsr.async_scope``) and ``other`` (backbone, ID table unless the scope is ``all``, and the
    trainable student heads of KDSR when ``extra`` has parameters)."""
    slow = list(model.items.async_parameters(cfg.kdsr.async_scope))
    slow_ids = {id(p) for p in slow}
    params = {id(p): p for p in [*model.parameters(), *(extra.parameters() if extra is not None else [])]}  # dedup shared
    rest = [p for key, p in params.items() if p.requires_grad and key not in slow_ids]
    groups = [{"params": slow, "name": "async"}, {"params": rest, "name": "other"}]
    return torch.optim.Adam([g for g in groups if g["params"]], lr=cfg.train.lr, weight_decay=cfg.train.weight_decay)


def resolved_kdsr(cfg: Config) -> Config:
    """A copy of ``cfg`` whose teacher seed follows ``train.seed`` unless ``kdsr.teacher_seed`` pins it,
    so the spread over training seeds includes the teacher's variance."""
    if cfg.kdsr.teacher_seed is not None:
        return cfg
    return dataclasses.replace(cfg, kdsr=dataclasses.replace(cfg.kdsr, teacher_seed=cfg.train.seed))


def kdsr_losses_on(cfg: Config) -> bool:
    """KDSR with at least one loss; ``kdsr.enabled`` with both losses off is the control arm that keeps only
    the asynchronous schedule (no teacher is fitted for it)."""
    return cfg.kdsr.enabled and (cfg.kdsr.holistic or cfg.kdsr.dissected)


def setup(cfg: Config) -> Cell:
    """Seeds, device, data, features, model, optimizer and (optionally) the KDSR teacher."""
    check_config(cfg)
    seed_everything(cfg.train.seed)
    if cfg.train.threads > 0:
        torch.set_num_threads(cfg.train.threads)
    device = resolve_device(cfg.train.device)
    if device.type == "cpu":  # each step's score matrix would otherwise be unmapped and faulted in again
        keep_freed_memory()
    dataset, split, store = load_data(cfg)
    with checkpoint.preserved_rng():  # encoded now or read from the cache: the same random stream afterwards
        features = load_modalities(cfg, dataset)
    model = build_model(cfg, dataset.num_items, features).to(device)
    kdsr = None
    if kdsr_losses_on(cfg):
        kdsr = build_kdsr(resolved_kdsr(cfg).kdsr, dataset, split, features, cfg.features.cache_dir, dim=cfg.model.dim)
        if isinstance(kdsr, torch.nn.Module):
            kdsr.to(device)
    heads = kdsr if isinstance(kdsr, torch.nn.Module) else None
    optimizer = make_optimizer(cfg, model, heads)
    return Cell(cfg, device, dataset, split, store, model, optimizer, kdsr, features, forgetting_monitor(cfg, kdsr, features, device))


def forgetting_monitor(cfg: Config, kdsr: Any, features: dict[str, Any], device: torch.device) -> Any:
    """KDSR's monitor, or (``kdsr.monitor`` on, modality tables, no KDSR) a standalone one: the
    fine-tuned baseline logs the same forgetting curve as its KDSR counterpart."""
    if kdsr is not None:
        return kdsr.forgetting  # None when kdsr.monitor is off
    if not (cfg.kdsr.monitor and features and cfg.model.items != "id"):
        return None
    return ForgettingMonitor(features, cfg.kdsr.monitor_pairs, MONITOR_SEED).to(device)


# ----------------------------------------------------------------------------- training


def uses_windows(cell: Cell) -> bool:
    """All-position windows need a causal backbone and ``train.samples=windows``."""
    return bool(getattr(cell.model, "causal", False)) and cell.cfg.train.samples == "windows"


def autocast(cell: Cell):
    """bf16 autocast on CUDA when ``train.amp``; a no-op context on CPU."""
    if cell.device.type == "cuda" and cell.cfg.train.amp:
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return nullcontext()


def groups(cell: Cell, item_seq: torch.Tensor) -> list[tuple[torch.Tensor, int]]:
    """Row groups to run the backbone on: by width for a causal one (same outputs, less padding)."""
    if getattr(cell.model, "causal", False):
        return width_groups((item_seq > 0).sum(1), item_seq.shape[1])
    return [(torch.arange(len(item_seq), device=item_seq.device), item_seq.shape[1])]


def batch_loss(cell: Cell, inputs: torch.Tensor, targets: torch.Tensor) -> dict[str, torch.Tensor]:
    """Cross-entropy over all items at every position with a target, plus the KDSR terms."""
    hidden, wanted = [], []
    with autocast(cell):
        for rows, width in groups(cell, inputs):
            where = targets[rows, :width] > 0
            hidden.append(cell.model(inputs[rows, :width])[where])
            wanted.append(targets[rows, :width][where])
        logits = cell.model.scores(torch.cat(hidden))
    losses = {"rec": F.cross_entropy(logits.float(), torch.cat(wanted) - 1)}
    total = losses["rec"]
    if cell.kdsr is not None:
        with autocast(cell):
            extra = cell.kdsr.losses(cell.model.items, inputs)
        losses.update({k: v.float() for k, v in extra.items() if k != "total"})
        total = total + extra["total"].float()
    losses["loss"] = total
    return losses


def set_epoch_lr(cell: Cell, epoch: int) -> None:
    """Base LR everywhere; the ``async`` group follows KDSR's asynchronous schedule when ``kdsr.enabled``
    (with or without its losses) and ``kdsr.async_train``."""
    factor = embedding_lr_factor(epoch, cell.cfg.kdsr)
    for group in cell.optimizer.param_groups:
        group["lr"] = cell.cfg.train.lr * (factor if group.get("name") == "async" else 1.0)


def train_epoch(cell: Cell, samples: tuple[np.ndarray, ...], epoch: int) -> dict[str, float]:
    """One pass over the training samples; returns mean losses (``train/loss``, ``train/holistic`` ...)."""
    cfg, windows = cell.cfg, uses_windows(cell)
    rng = np.random.default_rng([cfg.train.seed, epoch])
    set_epoch_lr(cell, epoch)
    cell.model.train()
    sums: dict[str, float] = {}
    n_batches = -(-len(samples[0]) // cfg.train.batch_size)
    stream = batches(cell.store, samples, windows, cfg.train.batch_size, cfg.dataset.max_len, rng)
    bar = progress(stream, total=n_batches, desc=f"epoch {epoch}", leave=False, mininterval=2, dynamic_ncols=True)
    for step, (inputs, targets) in enumerate(bar):
        losses = batch_loss(cell, to_tensor(inputs, cell.device), to_tensor(targets, cell.device))
        cell.optimizer.zero_grad(set_to_none=True)
        losses["loss"].backward()
        cell.optimizer.step()
        for key, value in losses.items():  # summed on the device: no host sync per step
            sums[key] = sums.get(key, 0.0) + value.detach()
        if step % 50 == 0:
            bar.set_postfix(loss=f"{float(sums['loss']) / (step + 1):.4f}", refresh=False)
    if not sums:
        raise ValueError("no training samples: every user's training part has fewer than 2 items")
    return {part_metric("train", k): float(v) / n_batches for k, v in sums.items()}


# ----------------------------------------------------------------------------- evaluation


def model_scorer(cell: Cell):
    """``score_fn`` for :func:`harness.evaluation.evaluate`: hidden state at each row's last item -> scores.

    The backbone may run under bf16 autocast; the final product with the item table is float32
    so that low-precision rounding does not create ties."""

    def score(item_seq: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        last = None
        with autocast(cell):
            for rows, width in groups(cell, item_seq):
                hidden = cell.model(item_seq[rows, :width])[torch.arange(len(rows), device=rows.device), lengths[rows] - 1]
                last = hidden.new_empty(len(item_seq), hidden.shape[1]) if last is None else last
                last[rows] = hidden
        return cell.model.scores(last.float())

    return score


def evaluate_part(cell: Cell, part: str, score_fn=None, logger: Logger | None = None) -> dict[str, float]:
    """Full-ranking metrics on ``part`` ("valid" | "test"), named ``<part>/<metric>``; with a ``logger``,
    the per-target rank counts are logged too (``Logger.log_ranks``: what paired significance tests read)."""
    cfg = cell.cfg
    users, positions = split_targets(cell.split.valid_start, cell.split.test_start, cell.store.lengths, part)
    if part == "valid":  # model selection may use a fixed sample (the same targets every epoch); the test never does
        users, positions = sample_targets(users, positions, cfg.train.valid_targets)
    cell.model.eval()
    metrics, ranks = evaluate(
        score_fn or model_scorer(cell),
        cell.store,
        users,
        positions,
        cfg.dataset.max_len,
        batch_size=cfg.train.eval_batch_size,
        ties=cfg.train.eval_ties,
        average=PROTOCOL_AVERAGE[cfg.dataset.protocol],
        mask_history=cfg.train.mask_history,
        device=cell.device,
        progress=True,
        return_ranks=True,
    )
    if logger is not None:
        logger.log_ranks(part, ranks["above"], ranks["tied"], targets_digest(users, positions))
    return {part_metric(part, k): v for k, v in metrics.items()}


# ----------------------------------------------------------------------------- the run


@dataclass
class FitResult:
    best_epoch: int
    best_valid: dict[str, float]
    epochs: int
    train_time_s: float


def _checkpoint_state(cell: Cell, best: FitResult, best_state: dict, stop: bool, logger: Logger) -> dict[str, Any]:
    """What :func:`fit` needs to continue after the epochs done so far (see harness/checkpoint.py)."""
    return {"model": cell.model.state_dict(), "optimizer": cell.optimizer.state_dict(),
            "kdsr": cell.kdsr.state_dict() if isinstance(cell.kdsr, torch.nn.Module) else {},
            "rng": checkpoint.rng_state(), "best_epoch": best.best_epoch, "best_valid": best.best_valid,
            "best_state": best_state, "epochs": best.epochs, "train_time_s": best.train_time_s, "stop": stop,
            "run_id": getattr(logger, "run_id", None) or "", "log": logger.snapshot()}


def _resume(cell: Cell, state: dict[str, Any]) -> tuple[FitResult, dict, bool]:
    """Load a checkpoint into ``cell``; returns the early-stopping state and whether training had stopped."""
    cell.model.load_state_dict(state["model"])
    cell.optimizer.load_state_dict(state["optimizer"])
    if state["kdsr"]:
        cell.kdsr.load_state_dict(state["kdsr"])
    checkpoint.set_rng_state(state["rng"])
    best = FitResult(state["best_epoch"], dict(state["best_valid"]), state["epochs"], state["train_time_s"])
    print(f"resumed from {checkpoint.path(cell.cfg.train.checkpoint_dir)} after {best.epochs} epochs", flush=True)
    return best, state["best_state"], bool(state["stop"])


def epoch_line(epoch: int, epochs: int, metrics: dict[str, float], key: str, best: FitResult) -> str:
    """``epoch 3/100: train/loss 6.8648, valid/ndcg@10 0.0412 (best 0.0415 at epoch 2), 31 s``: one line per epoch
    in a log, where the epoch's bar (``leave=False``, and off a terminal silent for epochs under 30 s) leaves none."""
    loss = part_metric("train", "loss")
    return (f"epoch {epoch}/{epochs}: {loss} {metrics.get(loss, float('nan')):.4f}, {key} {metrics[key]:.4f} "
            f"(best {best.best_valid[key]:.4f} at epoch {best.best_epoch}), {metrics[schema.EPOCH_SECONDS]:.0f} s")


def fit(cell: Cell, logger: Logger, budget_s: float = 0.0) -> FitResult:
    """Epochs until ``train.epochs`` or ``train.patience`` epochs without a better validation metric
    (or, when ``budget_s > 0``, the first epoch that ends after ``budget_s`` seconds; for benchmarks).

    The best epoch's weights are kept in memory (CPU copy) and loaded back at the end.
    ``patience <= 0`` disables early stopping. With ``train.checkpoint_dir``, every epoch ends with a
    checkpoint there and a restarted run continues from the last one (same result as one uninterrupted run)."""
    cfg = cell.cfg
    key = part_metric("valid", cfg.train.valid_metric)
    samples = training_samples(cell.split, cfg.dataset.max_len, uses_windows(cell))
    best = FitResult(-1, {}, 0, 0.0)
    best_state: dict[str, torch.Tensor] | None = None
    stop = False
    saved = checkpoint.load(cfg.train.checkpoint_dir)
    if saved is not None:
        best, best_state, stop = _resume(cell, saved)
    start = time.perf_counter() - best.train_time_s
    for epoch in range(best.epochs, 0 if stop else cfg.train.epochs):
        tick = time.perf_counter()
        metrics = train_epoch(cell, samples, epoch)
        metrics[schema.EPOCH_SECONDS] = time.perf_counter() - tick
        metrics.update(evaluate_part(cell, "valid"))
        if cell.monitor is not None:
            metrics.update(cell.monitor(cell.model.items))
        best.epochs = epoch + 1
        if best_state is None or metrics[key] > best.best_valid[key]:
            best.best_epoch, best.best_valid = epoch, {k: v for k, v in metrics.items() if is_part_metric(k, "valid")}
            best_state = {k: v.detach().to("cpu", copy=True) for k, v in cell.model.state_dict().items()}
        elif 0 < cfg.train.patience <= epoch - best.best_epoch:
            stop = True
        if budget_s > 0 and time.perf_counter() - start > budget_s:
            stop = True
        best.train_time_s = time.perf_counter() - start
        print(epoch_line(epoch, cfg.train.epochs, metrics, key, best), file=sys.stderr, flush=True)
        with checkpoint.committing():  # a SIGTERM waits: the log and the checkpoint agree on the epochs done
            logger.log_metrics(metrics, step=epoch)
            if cfg.train.checkpoint_dir:
                checkpoint.save(cfg.train.checkpoint_dir, _checkpoint_state(cell, best, best_state, stop, logger))
        if stop:
            break
    best.train_time_s = time.perf_counter() - start
    cell.model.load_state_dict(best_state)
    return best


def log_run_header(cell: Cell, logger: Logger) -> None:
    """Resolved config (params + YAML artifact), data statistics and identifying tags."""
    cfg, data = cell.cfg, cell.dataset
    logger.log_params(run_params(cfg, len(data.sequences), data.num_items, int(cell.store.lengths.sum()),
                                 sum(p.numel() for p in cell.model.parameters())))
    logger.log_text(to_yaml(cfg), "config.yaml")
    if cell.kdsr is not None and getattr(cell.kdsr, "teacher_info", None):
        logger.log_dict(cell.kdsr.teacher_info, "kdsr_teachers.json")
    encoder_tags, encoder_metrics = encoder_record(cfg)
    logger.set_tags({**run_tags(cfg), **encoder_tags, **machine_tags(), schema.TAG_DEVICE: str(cell.device)})
    logger.log_metrics(encoder_metrics)


def run(cfg: Config, logger: Logger) -> dict[str, float]:
    """Train one cell and return the final metrics (``test/*`` at the best-validation epoch, ``best_epoch`` ...).

    A run resumed from ``train.checkpoint_dir`` logs no header again (it is in the run already); the caller
    deletes the checkpoint once the run is closed FINISHED."""
    cell = setup(cfg)
    if checkpoint.load(cfg.train.checkpoint_dir) is None:
        log_run_header(cell, logger)
    result = fit(cell, logger)
    final = evaluate_part(cell, "test", logger=logger)
    final.update({schema.BEST_EPOCH: result.best_epoch, schema.EPOCHS_RUN: result.epochs,
                  schema.TRAIN_SECONDS: result.train_time_s})
    final.update({schema.best_metric(k): v for k, v in result.best_valid.items()})
    logger.log_metrics(final, step=result.best_epoch)
    logger.log_dict(final, "results.json")
    return final


def open_logger(cfg: Config, tags: dict[str, Any] | None = None) -> SpoolLogger:
    """The run to log to, through the spool (an MLflow outage loses nothing): the one a checkpoint in
    ``train.checkpoint_dir`` was logged to (a restarted run continues it), else a new one. A checkpoint whose
    run this store lacks is dropped: training restarts."""
    run_id = checkpoint.run_id(cfg.train.checkpoint_dir)
    if run_id and not run_exists(tracking_uri(cfg.tracking), run_id):
        print(f"checkpoint's MLflow run {run_id} is not in this store; starting over", flush=True)
        checkpoint.remove(cfg.train.checkpoint_dir)
        run_id = None
    return SpoolLogger(cfg.tracking, tags=tags, run_id=run_id)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="harness train", description="Train one recommender (optionally with KDSR).")
    parser.add_argument("--config", help="YAML file with config sections (dataset, model, train, kdsr, ...)")
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="dotted overrides, e.g. train.epochs=1 model=gru4rec")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """CLI entry: resolve the config, open an MLflow run, train, print the final metrics as JSON."""
    args = parse_args(argv)
    cfg = load(args.config, args.overrides)
    logger = open_logger(cfg)
    try:
        final = run(cfg, logger)
    except BaseException as exc:
        logger.finish("KILLED" if isinstance(exc, KeyboardInterrupt) else "FAILED", error=traceback.format_exc())
        raise
    logger.finish("FINISHED")
    checkpoint.remove(cfg.train.checkpoint_dir)
    print(json.dumps({"run_id": getattr(logger, "run_id", None), **final}, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
