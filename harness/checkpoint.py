"""End-of-epoch training checkpoints, so that a cell killed by a time limit or preemption resumes where it was.

One file, ``<train.checkpoint_dir>/state.pt``, replaced atomically (``harness.atomic``) after every epoch:
model, optimizer and KDSR weights, the RNG states (Python, NumPy, torch CPU and CUDA), the early-stopping
state (best epoch, its metrics and weights), epochs done, train seconds so far, and the MLflow run id the
epochs were logged to (for an archive cell, its record so far: ``Logger.snapshot``). Everything is a tensor,
number, string, list or dict, so ``torch.load(weights_only=True)`` reads it. Deleted when the run has finished
(see docs/SWEEPS.md, "Requeue and checkpoints").
"""

from __future__ import annotations

import contextlib
import random
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from harness.atomic import atomic_path

FILE = "state.pt"
VERSION = 1


def path(checkpoint_dir: str | Path) -> Path:
    return Path(checkpoint_dir) / FILE


def load(checkpoint_dir: str | Path | None) -> dict[str, Any] | None:
    """The last checkpoint in ``checkpoint_dir``, or None (off, or nothing written yet)."""
    if not checkpoint_dir or not path(checkpoint_dir).is_file():
        return None
    state = torch.load(path(checkpoint_dir), map_location="cpu", weights_only=True)
    if state.get("version") != VERSION:
        raise ValueError(f"{path(checkpoint_dir)}: checkpoint version {state.get('version')}, expected {VERSION}; delete it")
    return state


def save(checkpoint_dir: str | Path, state: dict[str, Any]) -> None:
    """Write ``state`` atomically: a kill leaves the previous checkpoint, never a half-written one."""
    with atomic_path(path(checkpoint_dir)) as tmp:
        torch.save({**state, "version": VERSION}, tmp)


def remove(checkpoint_dir: str | Path | None) -> None:
    """Drop the checkpoint folder (the run finished; nothing to resume)."""
    if checkpoint_dir:
        shutil.rmtree(checkpoint_dir, ignore_errors=True)


def run_id(checkpoint_dir: str | Path | None) -> str | None:
    """The MLflow run id the checkpointed epochs were logged to (what a restarted cell continues)."""
    state = load(checkpoint_dir)
    return state.get("run_id") or None if state else None


# ----------------------------------------------------------------------------- RNG states


def rng_state() -> dict[str, Any]:
    """Python, NumPy (legacy global) and torch (CPU, every CUDA device) RNG states as tensors / ints / strings."""
    version, keys, pos = random.getstate()
    name, np_keys, np_pos, has_gauss, gauss = np.random.get_state()
    return {
        "python": {"version": version, "keys": torch.tensor(keys, dtype=torch.int64), "gauss": pos},
        "numpy": {"name": name, "keys": torch.from_numpy(np_keys.astype(np.int64)), "pos": int(np_pos),
                  "has_gauss": int(has_gauss), "gauss": float(gauss)},
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def set_rng_state(state: dict[str, Any]) -> None:
    py, npy = state["python"], state["numpy"]
    random.setstate((py["version"], tuple(int(k) for k in py["keys"].tolist()), py["gauss"]))
    np.random.set_state((npy["name"], npy["keys"].numpy().astype(np.uint32), npy["pos"], npy["has_gauss"], npy["gauss"]))
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


@contextlib.contextmanager
def preserved_rng() -> Iterator[None]:
    """Run a block without moving the global RNGs: work a run does only sometimes (encoding a missing feature
    cache, fitting a missing teacher) must not change what it draws afterwards (weights, dropout, pairs)."""
    state = rng_state()
    try:
        yield
    finally:
        set_rng_state(state)


# ----------------------------------------------------------------------------- one epoch's commit

_commit: dict[str, Any] = {"depth": 0, "pending": None}


@contextlib.contextmanager
def committing() -> Iterator[None]:
    """Logging an epoch and saving its checkpoint: a signal handler that calls :func:`defer` during this block
    runs its action at the end of the block, so the log and the checkpoint always agree on the epochs done."""
    _commit["depth"] += 1
    try:
        yield
    finally:
        _commit["depth"] -= 1
        action, _commit["pending"] = _commit["pending"], None
        if action is not None and _commit["depth"] == 0:
            action()


def defer(action: Callable[[], None]) -> bool:
    """Keep ``action`` for the end of the current :func:`committing` block and return True; outside one, return
    False: the caller runs it at once, and it is kept for the next block's end as well, in case that run is lost
    (an exception raised by a signal handler that lands in a ``__del__`` is swallowed by Python). Call
    :func:`cancel_deferred` once the action has taken effect."""
    _commit["pending"] = action
    return _commit["depth"] > 0


def cancel_deferred() -> None:
    _commit["pending"] = None
