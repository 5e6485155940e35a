"""Progress bars off a terminal (Slurm and cell logs): plain lines at most every LOG_EVERY_S, never carriage returns."""

from __future__ import annotations

import sys

import pytest

from harness import progress as P
from harness.config import load
from harness.train import setup, train_epoch


@pytest.fixture(autouse=True)
def _bars_on(monkeypatch):
    monkeypatch.delenv("TQDM_DISABLE", raising=False)


def test_off_a_terminal_each_status_is_one_plain_line(capfd):
    assert not sys.stderr.isatty()
    bar = P.progress(range(5), every_s=0, desc="demo", unit=" rows", leave=False)
    for step in bar:
        bar.set_postfix(step=step, refresh=False)
    err = capfd.readouterr().err
    lines = err.splitlines()
    assert "\r" not in err and "\x1b" not in err and err.endswith("\n")
    assert lines[0].startswith("demo:   0%") and "5/5" in lines[-1] and "step=4" in lines[-1]
    assert all(line.startswith("demo:") for line in lines)


def test_off_a_terminal_lines_are_throttled(capfd):
    for _ in P.progress(range(100_000), every_s=3600, desc="quiet"):
        pass
    assert capfd.readouterr().err == ""  # a loop shorter than the interval adds nothing to a log


def test_on_a_terminal_it_is_the_usual_bar(monkeypatch, capfd):
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True, raising=False)
    for _ in P.progress(range(3), desc="tty"):
        pass
    assert "\rtty: 100%" in capfd.readouterr().err  # redrawn in place


def test_training_epoch_reports_plain_lines(capfd, monkeypatch):
    """A training epoch in a log: 'epoch 0: ... loss=...' lines, no carriage-return updates."""
    monkeypatch.setattr(P, "LOG_EVERY_S", 0.0)
    from harness.batching import training_samples

    cell = setup(load(overrides=["dataset=ml-100k", "dataset.max_len=20", "model.dim=16", "model.layers=1",
                                 "train.device=cpu", "train.batch_size=512", "train.threads=1"]))
    capfd.readouterr()
    samples = training_samples(cell.split, 20, False)
    train_epoch(cell, tuple(part[:4096] for part in samples), 0)  # 8 batches
    err = capfd.readouterr().err
    assert "\r" not in err and err.count("\nepoch 0:") >= 2 and "loss=" in err, err[-2000:]


def test_every_epoch_ends_with_one_summary_line(capfd):
    """A log shows each epoch's loss and validation metric (and the best so far), whatever the bars print."""
    from harness.tracking import MemoryLogger
    from harness.train import fit

    cell = setup(load(overrides=["dataset=ml-100k", "dataset.max_len=20", "model.dim=16", "model.layers=1",
                                 "train.device=cpu", "train.batch_size=512", "train.threads=1", "train.epochs=2",
                                 "train.patience=0", "train.valid_targets=200"]))
    log = MemoryLogger()
    capfd.readouterr()
    fit(cell, log)
    lines = [line for line in capfd.readouterr().err.splitlines() if line.startswith("epoch ") and "/2: " in line]
    assert [line.split(":")[0] for line in lines] == ["epoch 0/2", "epoch 1/2"]
    for epoch, line in enumerate(lines):
        for key in ("train/loss", "valid/ndcg@10"):
            assert f"{key} {log.history(key)[epoch][1]:.4f}" in line, line
