"""Our SASRec vs RecBole's SASRec on the same sequences, split and hyper-parameters. Prints JSON lines.

    python benchmarks/bench_recbole.py                                  # ML-100K, both to early stop (cap 50)
    python benchmarks/bench_recbole.py --recbole-epochs 10 --threads 1  # cap RecBole (slow on CPU)

RecBole runs in its own venv (``--recbole-python``, default /tmp/recbole-venv/bin/python; see
shared/docs/RECBOLE_RECIPE.md for the install): it is never a dependency of this project.
Both sides read the same sequences: our loaded (5-core) dataset is written as a RecBole atomic
file whose timestamp is the item's position in the user's sequence, so RecBole's sort cannot
reorder items with equal timestamps. Protocol on both sides: leave-one-out, full ranking over all
items, history not masked, best epoch on valid NDCG@10, test at that epoch.

Hyper-parameters (RecBole's SASRec defaults): dim 64, 2 layers, 2 heads, dropout 0.5, max length 50,
Adam lr 1e-3, cross-entropy over all items, early stopping after 5 epochs without improvement.
Batches: RecBole's 256 is 256 prefixes (one target each). Ours runs as ``--ours`` variants
``samples:batch``: ``prefixes:256`` is RecBole's exact sampling; ``windows:B`` trains every
position of B windows of up to 50 items per step (our default, ~50x fewer forward passes).
RecBole's autograd anomaly mode (switched on at import by its sine.py) is switched off.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from harness.config import load
from harness.data import load_dataset
from harness.tracking import MemoryLogger
from harness.train import run

RECBOLE_DRIVER = r'''
import json, logging, os, re, sys, time
import torch
from logging import getLogger
from recbole.config import Config
from recbole.data import create_dataset, data_preparation
from recbole.utils import init_logger, init_seed, get_model, get_trainer

args = json.loads(sys.argv[1])
torch.set_num_threads(args["threads"])
config = Config(model="SASRec", dataset=args["dataset"], config_dict=args["config"])
init_seed(config["seed"], config["reproducibility"])
init_logger(config)
records = []
class Grab(logging.Handler):
    def emit(self, rec):
        records.append(re.sub(r"\x1b\[[0-9;]*m", "", rec.getMessage()))
getLogger().addHandler(Grab())
ds = create_dataset(config)
train_data, valid_data, test_data = data_preparation(config, ds)
init_seed(config["seed"], config["reproducibility"])
model = get_model("SASRec")(config, train_data._dataset).to(config["device"])
torch.autograd.set_detect_anomaly(False)  # RecBole's sine.py switches it on globally at import
trainer = get_trainer(config["MODEL_TYPE"], "SASRec")(config, model)
t0 = time.time()
best_score, best_valid = trainer.fit(train_data, valid_data, saved=True, show_progress=False)
t_fit = time.time() - t0
test = trainer.evaluate(test_data, load_best_model=True, show_progress=False)
train_s = [float(m) for r in records for m in re.findall(r"training \[time: ([0-9.]+)s", r)]
eval_s = [float(m) for r in records for m in re.findall(r"evaluating \[time: ([0-9.]+)s", r)]
valid_curve = [float(m) for r in records for m in re.findall(r"ndcg@10 : ([0-9.]+)", r)]
print("RESULT " + json.dumps(dict(
    users=ds.user_num - 1, items=ds.item_num - 1, train_samples=len(train_data._dataset),
    params=sum(p.numel() for p in model.parameters()), torch=torch.__version__, threads=torch.get_num_threads(),
    epochs_run=len(train_s), train_s_per_epoch=train_s, eval_s=eval_s, fit_s=t_fit,
    best_valid={k: float(v) for k, v in best_valid.items()}, test={k: float(v) for k, v in test.items()},
    valid_ndcg10_curve=valid_curve)))
'''

HYPER = {"dim": 64, "layers": 2, "heads": 2, "dropout": 0.5, "max_len": 50, "lr": 1e-3, "patience": 5, "seed": 2020}


def machine() -> str:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("model name")), platform.processor())
    return f"{platform.node()}: {os.cpu_count()} CPU cores ({cpu}), torch {torch.__version__}"


def emit(record: dict[str, Any]) -> None:
    print(json.dumps(record), flush=True)


def export_inter(name: str, root: Path) -> Path:
    """Our dataset as a RecBole .inter file (timestamp = position in the user's sequence)."""
    dataset = load_dataset(name)
    tag = f"{name}-harness"
    folder = root / tag
    folder.mkdir(parents=True, exist_ok=True)
    lines = ["user_id:token\titem_id:token\ttimestamp:float"]
    for user, seq in zip(dataset.user_ids, dataset.sequences):
        lines += [f"{user}\t{dataset.items.raw_ids[item]}\t{pos}" for pos, item in enumerate(seq.tolist())]
    (folder / f"{tag}.inter").write_text("\n".join(lines) + "\n")
    return folder


def recbole_config(data_root: Path, epochs: int, work: Path) -> dict[str, Any]:
    return {
        "data_path": str(data_root), "checkpoint_dir": str(work / "saved"), "use_gpu": False, "seed": HYPER["seed"],
        "reproducibility": True, "show_progress": False, "worker": 0, "USER_ID_FIELD": "user_id", "ITEM_ID_FIELD": "item_id",
        "TIME_FIELD": "timestamp", "load_col": {"inter": ["user_id", "item_id", "timestamp"]},
        "user_inter_num_interval": "[5,inf)", "item_inter_num_interval": "[5,inf)", "loss_type": "CE", "train_neg_sample_args": None,
        "train_batch_size": 256, "learning_rate": HYPER["lr"], "epochs": epochs, "stopping_step": HYPER["patience"], "eval_step": 1,
        "eval_args": {"split": {"LS": "valid_and_test"}, "group_by": "user", "order": "TO", "mode": "full"},
        "metrics": ["Hit", "MRR", "NDCG"], "topk": [5, 10, 20], "valid_metric": "NDCG@10", "eval_batch_size": 4096,
        "MAX_ITEM_LIST_LENGTH": HYPER["max_len"], "hidden_size": HYPER["dim"], "inner_size": 4 * HYPER["dim"],
        "n_layers": HYPER["layers"], "n_heads": HYPER["heads"], "hidden_dropout_prob": HYPER["dropout"],
        "attn_dropout_prob": HYPER["dropout"], "hidden_act": "gelu", "layer_norm_eps": 1e-12, "initializer_range": 0.02,
    }


def run_recbole(python: str, dataset: str, epochs: int, threads: int) -> dict[str, Any]:
    """RecBole's SASRec in its own interpreter; returns its timings and metrics."""
    work = Path(tempfile.mkdtemp(prefix="bench-recbole-"))
    folder = export_inter(dataset, work / "data")
    args = {"dataset": folder.name, "threads": threads, "config": recbole_config(work / "data", epochs, work)}
    (work / "driver.py").write_text(RECBOLE_DRIVER)
    env = {**os.environ, "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD": "1", "PYTHONWARNINGS": "ignore", "OMP_NUM_THREADS": str(threads)}
    done = subprocess.run([python, str(work / "driver.py"), json.dumps(args)], cwd=work, env=env, capture_output=True, text=True, check=False)
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    if done.returncode != 0 or not lines:
        raise RuntimeError(f"RecBole run failed (rc {done.returncode}):\n{done.stderr[-3000:]}")
    return json.loads(lines[-1][len("RESULT ") :])


def run_ours(dataset: str, epochs: int, samples: str, batch: int, threads: int) -> dict[str, Any]:
    """Our SASRec (ID only) through ``harness.train.run`` with the same protocol and hyper-parameters."""
    h = HYPER
    cfg = load(overrides=[
        f"dataset={dataset}", "dataset.protocol=leave-one-out", f"dataset.max_len={h['max_len']}", "model=sasrec",
        f"model.dim={h['dim']}", f"model.layers={h['layers']}", f"model.heads={h['heads']}", f"model.dropout={h['dropout']}",
        f"train.lr={h['lr']}", f"train.samples={samples}", f"train.batch_size={batch}", f"train.epochs={epochs}", f"train.patience={h['patience']}",
        "train.valid_metric=ndcg@10", f"train.seed={h['seed']}", "train.device=cpu", f"train.threads={threads}",
    ])
    log = MemoryLogger()
    tick = time.perf_counter()
    final = run(cfg, log)
    return {
        "epochs_run": int(final["epochs_run"]), "best_epoch": int(final["best_epoch"]), "fit_s": time.perf_counter() - tick,
        "train_s_per_epoch": [v for _, v in log.history("epoch_time_s")],
        "valid_ndcg10_curve": [v for _, v in log.history("valid/ndcg@10")],
        "test": {k.split("/", 1)[1]: v for k, v in final.items() if k.startswith("test/")},
    }


def mean(values: list[float]) -> float:
    return sum(values) / max(len(values), 1)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="ml-100k")
    parser.add_argument("--epochs", type=int, default=50, help="epoch cap for ours")
    parser.add_argument("--recbole-epochs", type=int, default=50, help="epoch cap for RecBole")
    parser.add_argument("--ours", default="prefixes:256,windows:256,windows:32", help="our variants, samples:batch, comma-separated")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--recbole-python", default="/tmp/recbole-venv/bin/python")
    parser.add_argument("--skip-recbole", action="store_true", help="only our side (e.g. to try --ours variants)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    where = machine()
    ref = None if args.skip_recbole else run_recbole(args.recbole_python, args.dataset, args.recbole_epochs, args.threads)
    if ref is not None:
        emit({"what": "recbole_sasrec", "dataset": args.dataset, "machine": where, **ref})
    for variant in args.ours.split(","):
        samples, batch = variant.split(":")
        ours = run_ours(args.dataset, args.epochs, samples, int(batch), args.threads)
        row = {"what": "ours_vs_recbole_sasrec", "dataset": args.dataset, "machine": where, "ours_samples": samples, "ours_batch": int(batch), "ours": ours}
        if ref is not None:
            row.update({
                "recbole": {"epochs_run": ref["epochs_run"], "train_s_per_epoch_mean": mean(ref["train_s_per_epoch"]),
                            "test": {k: ref["test"][k] for k in ("hit@20", "ndcg@10", "hit@10", "mrr@20")}},
                "hr@20": {"ours": ours["test"]["hr@20"], "recbole": ref["test"]["hit@20"]},
                "ndcg@10": {"ours": ours["test"]["ndcg@10"], "recbole": ref["test"]["ndcg@10"]},
                "epoch_time_ratio_recbole_over_ours": mean(ref["train_s_per_epoch"]) / mean(ours["train_s_per_epoch"]),
            })
        emit(row)
    return 0


if __name__ == "__main__":
    sys.exit(main())
