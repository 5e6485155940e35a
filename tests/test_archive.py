"""Archives (harness.archive): rank logging, ArchiveLogger records, MLflow export/import round trips, the CLI.

Every MLflow store here is a real sqlite file in tmp_path; no training runs (seconds).
"""

from __future__ import annotations

import json
import os
import shutil

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient

from harness import archive as A
from harness.cli import main as cli
from harness.config import TrackingConfig
from harness.tracking import MemoryLogger, MLflowLogger, load_ranks

EXP = "arch-exp"


@pytest.fixture(scope="module")
def blank_db(tmp_path_factory):
    """An empty sqlite store with MLflow's schema, created once (the migrations take seconds); copied per use."""
    path = tmp_path_factory.mktemp("blank") / "mlflow.db"
    MlflowClient(f"sqlite:///{path}").search_experiments(max_results=1)
    return path


def new_store(blank_db, path) -> str:
    shutil.copy(blank_db, path)
    return f"sqlite:///{path}"


@pytest.fixture
def uri(tmp_path, monkeypatch, blank_db) -> str:
    monkeypatch.chdir(tmp_path)  # MLflow's default artifact root is relative to the working directory
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("MLFLOW_EXPERIMENT_ID", raising=False)
    yield new_store(blank_db, tmp_path / "mlflow.db")
    mlflow.set_tracking_uri(None)


def counts(seed: int, n: int = 257) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    above = rng.integers(0, 2_000_000_000, n)  # large values: int32 must survive bit-exactly
    above[:5] = [0, 1, 19, 20, np.iinfo(np.int32).max]
    return above.astype(np.int64), rng.integers(0, 3, n)


def fill(log, key: str, seed: int, ranks: bool = True, epochs: int = 3, tags: dict | None = None) -> None:
    """What a training cell records: tags, nested params, per-epoch metrics, final metrics, rank counts."""
    log.set_tags({"harness.cell_key": key, "harness.role": "cell", "harness.dataset": "ml-100k", "harness.seed": seed,
                  **(tags or {})})
    log.log_params({"model": {"name": "sasrec", "dim": 16}, "train": {"seed": seed, "lr": 1e-3}, "kdsr": {"enabled": False}})
    for epoch in range(epochs):
        log.log_metrics({"train/loss": 3.0 - epoch / 7, "valid/hr@20": 0.1 + epoch / 30 + seed / 1000,
                         "monitor/pearson_text": 0.9 - epoch / 11}, step=epoch)
    log.log_metrics({"test/hr@20": 0.2 + seed / 997, "test/mrr@20": 0.05 + seed / 3001, "best_epoch": epochs - 1},
                    step=epochs - 1)
    if ranks:
        log.log_ranks("test", *counts(seed), targets_digest=f"digest-{seed % 2}")


def mlflow_run(uri: str, key: str, seed: int, parent: str | None = None, **kw) -> str:
    client = MlflowClient(uri)
    found = client.get_experiment_by_name(EXP)
    exp = found.experiment_id if found else client.create_experiment(EXP)
    log = MLflowLogger(TrackingConfig(uri=uri, experiment_id=exp, run_name=f"seed={seed}", parent_run_id=parent))
    fill(log, key, seed, **kw)
    log.finish()
    return log.run_id


def sweep_parent(uri: str) -> str:
    client = MlflowClient(uri)
    found = client.get_experiment_by_name(EXP)
    exp = found.experiment_id if found else client.create_experiment(EXP)
    tags = {"harness.role": "sweep", "harness.sweep": "arch", "harness.sweep_id": "abc123", "harness.axes.0": "dataset,seed"}
    run_id = client.create_run(exp, tags=tags, run_name="sweep:arch").info.run_id
    client.set_terminated(run_id)
    return run_id


def comparable(df: pd.DataFrame) -> pd.DataFrame:
    """search_runs columns that must travel unchanged (ids, artifact locations and the parent id do not)."""
    keep = [c for c in df.columns if c.startswith(("metrics.", "params.", "tags.")) and c != "tags.mlflow.parentRunId"]
    return df[sorted(keep) + ["status"]].sort_values("tags.harness.cell_key").reset_index(drop=True)


# ---------------------------------------------------------------------------------------------- ranks


def test_log_ranks_memory_and_mlflow_bit_exact(uri, tmp_path):
    above, tied = counts(3)
    mem = MemoryLogger()
    mem.log_ranks("test", above, tied, "d3")
    assert mem.ranks["test"]["digest"] == "d3" and mem.ranks["test"]["above"].dtype == np.int32
    assert np.array_equal(mem.ranks["test"]["above"], above) and np.array_equal(mem.ranks["test"]["tied"], tied)
    (tmp_path / "r.npz").write_bytes(mem.artifacts["ranks/test.npz"])
    back = load_ranks(tmp_path / "r.npz")
    assert np.array_equal(back["above"], above) and back["digest"] == "d3"
    run_id = mlflow_run(uri, "k1", 3)
    local = MlflowClient(uri).download_artifacts(run_id, "ranks/test.npz", str(tmp_path / "dl"))
    back = load_ranks(local)
    assert back["above"].dtype == np.int32 and np.array_equal(back["above"], above) and np.array_equal(back["tied"], tied)


def test_log_ranks_refuses_bad_counts_and_is_silent_off_rank_zero(monkeypatch):
    mem = MemoryLogger()
    with pytest.raises(ValueError, match="one entry per target"):
        mem.log_ranks("test", np.arange(3), np.arange(2), "d")
    with pytest.raises(ValueError, match="1-D integer array"):
        mem.log_ranks("test", np.ones(3), np.zeros(3, dtype=int), "d")
    with pytest.raises(ValueError, match="non-negative"):
        mem.log_ranks("test", np.array([-1]), np.array([0]), "d")
    monkeypatch.setenv("RANK", "1")
    quiet = MemoryLogger()
    quiet.log_ranks("test", np.arange(3), np.arange(3), "d")
    assert quiet.ranks == {} and quiet.artifacts == {}


def test_counts_encoding_round_trips_bit_exactly():
    above, _ = counts(5, 10_000)
    text = A.encode_counts(above)
    assert text.isascii() and np.array_equal(A.decode_counts(text, len(above)), above)
    assert A.decode_counts(A.encode_counts(np.zeros(0, dtype=np.int32)), 0).shape == (0,)
    with pytest.raises(ValueError, match="n=3"):
        A.decode_counts(text, 3)


# ------------------------------------------------------------------------------------- ArchiveLogger


def test_archive_logger_record_reads_back_like_search_runs(uri, tmp_path):
    folder = tmp_path / "arch"
    for seed in (1, 2):
        log = A.ArchiveLogger(folder, run_name=f"seed={seed}")
        fill(log, f"key{seed}", seed)
        log.finish()
        assert log.path == folder / f"key{seed}.json"
        mlflow_run(uri, f"key{seed}", seed)
    text = (folder / "key1.json").read_text()
    record = json.loads(text)
    assert list(record) == sorted(record) and list(record["tags"]) == sorted(record["tags"])
    assert record["schema"] == 1 and record["status"] == "FINISHED" and record["cell_key"] == "key1"
    assert record["params"]["train.lr"] == "0.001" and record["params"]["kdsr.enabled"] == "False"
    assert record["history"]["valid/hr_at_20"] == [[0, 0.1 + 1 / 1000], [1, 0.1 + 1 / 30 + 1 / 1000], [2, 0.1 + 2 / 30 + 1 / 1000]]
    assert record["metrics"]["test/hr_at_20"] == 0.2 + 1 / 997  # written as logged
    assert '"valid/hr_at_20": [[0, 0.101], [1, ' in text  # one line per history: diffs stay readable

    mlflow.set_tracking_uri(uri)
    ref = mlflow.search_runs([MlflowClient(uri).get_experiment_by_name(EXP).experiment_id])
    got = A.read(folder)
    assert list(got.columns[:6]) == list(A.INFO_COLUMNS) and set(got.columns) == set(ref.columns)
    pd.testing.assert_frame_equal(comparable(got), comparable(ref), check_dtype=False)
    assert got["start_time"].dt.tz is not None and (got["end_time"] >= got["start_time"]).all()
    archive = A.Archive(folder)
    run_id = got.loc[got["tags.harness.cell_key"] == "key2", "run_id"].iloc[0]
    client = MlflowClient(uri)
    ref_id = ref.loc[ref["tags.harness.cell_key"] == "key2", "run_id"].iloc[0]
    assert archive.history(run_id, "train/loss") == [(m.step, m.value) for m in client.get_metric_history(ref_id, "train/loss")]
    ranks = archive.ranks(run_id)
    assert np.array_equal(ranks["above"], counts(2)[0]) and ranks["digest"] == "digest-0"


def test_archive_logger_needs_a_cell_key_and_keeps_finished_records(tmp_path):
    log = A.ArchiveLogger(tmp_path)
    with pytest.raises(ValueError, match="harness.cell_key"):
        log.record()
    done = A.ArchiveLogger(tmp_path, tags={"harness.cell_key": "k"})
    fill(done, "k", 1)
    done.finish()
    before = (tmp_path / "k.json").read_text()
    failed = A.ArchiveLogger(tmp_path, tags={"harness.cell_key": "k"})
    failed.finish("FAILED", error="Traceback\nRuntimeError: boom")
    assert failed.path is None and (tmp_path / "k.json").read_text() == before  # FAILED never replaces FINISHED
    other = A.ArchiveLogger(tmp_path, tags={"harness.cell_key": "k2"})
    other.finish("FAILED", error="Traceback\nRuntimeError: boom")
    assert json.loads((tmp_path / "k2.json").read_text())["tags"]["error"] == "RuntimeError: boom"
    assert list(A.read(tmp_path)["tags.harness.cell_key"]) == ["k"]  # FINISHED only, like the reports
    assert set(A.read(tmp_path, status=None)["tags.harness.cell_key"]) == {"k", "k2"}


def test_writes_are_atomic(tmp_path, monkeypatch):
    path = tmp_path / "k.json"
    A.write_json(path, {"a": 1})

    def broken(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", broken)
    with pytest.raises(OSError, match="disk full"):
        A.write_json(path, {"a": 2, "b": "x" * 100_000})
    monkeypatch.undo()
    with pytest.raises(TypeError):
        A.write_json(tmp_path / "new.json", {"a": object()})
    assert json.loads(path.read_text()) == {"a": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["k.json"]  # no partial file, no temporary left


def test_several_archives_read_together_newest_per_cell_key(tmp_path):
    for folder, value, start in (("a", 0.1, 1000), ("b", 0.3, 3000), ("c", 0.2, 2000)):
        log = A.ArchiveLogger(tmp_path / folder, tags={"harness.cell_key": "same"})
        log.start_time = start
        log.log_metrics({"test/hr@20": value})
        log.finish()
    only = A.ArchiveLogger(tmp_path / "a", tags={"harness.cell_key": "other"})
    only.finish()
    df = A.read([tmp_path / "a", tmp_path / "c", tmp_path / "b"])
    assert dict(zip(df["tags.harness.cell_key"], df["metrics.test/hr_at_20"])) == {"other": pytest.approx(np.nan, nan_ok=True), "same": 0.3}
    assert len(A.read(tmp_path)) == 2  # the folder holding archives: one level down


# ------------------------------------------------------------------------------------ export / import


def test_export_then_import_into_a_fresh_store_equals(uri, tmp_path, blank_db):
    parent = sweep_parent(uri)
    for seed in (1, 2, 3):
        mlflow_run(uri, f"key{seed}", seed, parent=parent, ranks=seed != 3)
    mlflow_run(uri, "key1", 1, parent=parent)  # a newer FINISHED run of key1: the one exported
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name(EXP).experiment_id
    failed = MLflowLogger(TrackingConfig(uri=uri, experiment_id=exp))
    failed.set_tags({"harness.cell_key": "key4", "harness.role": "cell"})
    failed.finish("FAILED", error="Traceback\nValueError: x")

    folder = A.export(EXP, tmp_path / "out", uri=uri)
    assert folder == tmp_path / "out" / EXP
    assert sorted(p.name for p in folder.iterdir()) == ["key1.json", "key2.json", "key3.json", "sweep.json"]
    first = {p.name: p.read_bytes() for p in folder.iterdir()}
    A.export(EXP, tmp_path / "out", uri=uri)
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == first  # deterministic: unchanged runs, same bytes
    assert A.parent(folder) == {"run_id": parent, "tags": client.get_run(parent).data.tags}

    mlflow.set_tracking_uri(uri)
    src = mlflow.search_runs([exp], filter_string="attributes.status = 'FINISHED' and tags.`harness.role` = 'cell'")
    src = src.drop_duplicates("tags.harness.cell_key", keep="first")
    got = A.read(folder)
    pd.testing.assert_frame_equal(comparable(got), comparable(src), check_dtype=False)
    assert set(got["run_id"]) == set(src["run_id"]) and set(got["start_time"]) == set(src["start_time"])

    fresh = new_store(blank_db, tmp_path / "fresh.db")
    created = A.import_archive(folder, uri=fresh)
    assert len(created) == 3
    c2 = MlflowClient(fresh)
    exp2 = c2.get_experiment_by_name(EXP).experiment_id
    mlflow.set_tracking_uri(fresh)
    back = mlflow.search_runs([exp2], filter_string="tags.`harness.role` = 'cell'")
    pd.testing.assert_frame_equal(comparable(back), comparable(src), check_dtype=False)
    assert sorted(back["start_time"]) == sorted(src["start_time"]) and sorted(back["end_time"]) == sorted(src["end_time"])
    parents = c2.search_runs([exp2], filter_string="tags.`harness.role` = 'sweep'")
    assert len(parents) == 1 and parents[0].data.tags["harness.sweep_id"] == "abc123"  # harness sweep reuses it
    assert set(back["tags.mlflow.parentRunId"]) == {parents[0].info.run_id}
    for key in ("key1", "key2"):
        old = src.loc[src["tags.harness.cell_key"] == key, "run_id"].iloc[0]
        new = back.loc[back["tags.harness.cell_key"] == key, "run_id"].iloc[0]
        for metric in ("valid/hr_at_20", "train/loss", "test/hr_at_20"):
            hist = lambda c, r: [(m.step, m.value) for m in c.get_metric_history(r, metric)]  # noqa: E731
            assert hist(c2, new) == hist(client, old)
        a = load_ranks(client.download_artifacts(old, "ranks/test.npz", str(tmp_path / "o" / key)))
        b = load_ranks(c2.download_artifacts(new, "ranks/test.npz", str(tmp_path / "n" / key)))
        assert np.array_equal(a["above"], b["above"]) and np.array_equal(a["tied"], b["tied"]) and a["digest"] == b["digest"]
    key3 = back.loc[back["tags.harness.cell_key"] == "key3", "run_id"].iloc[0]
    assert c2.list_artifacts(key3, "ranks") == []  # no ranks logged, none invented

    from harness.sweep import finished_keys

    assert finished_keys(c2, exp2) == {"key1", "key2", "key3"}  # what harness sweep --local skips
    assert A.import_archive(folder, uri=fresh) == []  # nothing twice
    again = json.loads(A.export(EXP, tmp_path / "again", uri=fresh).joinpath("key2.json").read_text())
    before = json.loads(first["key2.json"])
    for record in (again, before):  # a round trip changes the run's id and its parent's, nothing else
        del record["run_id"], record["tags"]["mlflow.parentRunId"]
    assert again == before


def test_import_goes_under_the_existing_sweep_parent_and_skips_finished_cells(uri, tmp_path):
    folder = tmp_path / "gpu"
    A.write_sweep(folder, EXP, {"harness.role": "sweep", "harness.axes.0": "dataset,seed"})
    for seed in (1, 2):
        log = A.ArchiveLogger(folder, tags={"harness.cell_key": f"key{seed}", "harness.role": "cell"}, run_name=f"s{seed}")
        fill(log, f"key{seed}", seed)
        log.finish()
    parent = sweep_parent(uri)
    mlflow_run(uri, "key1", 1, parent=parent)  # already FINISHED here: not imported again
    created = A.import_archive(folder, uri=uri)
    client = MlflowClient(uri)
    assert len(created) == 1
    run = client.get_run(created[0])
    assert run.data.tags["harness.cell_key"] == "key2" and run.data.tags["mlflow.parentRunId"] == parent
    assert run.info.run_name == "s2" and run.info.status == "FINISHED"
    assert run.data.metrics["test/hr_at_20"] == 0.2 + 2 / 997


# ----------------------------------------------------------------------------------------------- CLI


def test_cli_export_list_import(uri, tmp_path, capsys, blank_db):
    sweep_parent(uri)
    mlflow_run(uri, "keyA", 1)
    mlflow_run(uri, "keyB", 2, ranks=False)
    assert cli(["archive", "export", "--experiment", EXP, "--to", str(tmp_path / "out"), "--uri", uri]) == 0
    assert "2 cells" in capsys.readouterr().out
    assert cli(["archive", "list", str(tmp_path / "out" / EXP)]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"# {EXP}: 2 cells, harness.axes.0=dataset,seed")
    assert f"keyA  FINISHED  HR@20 {100 * (0.2 + 1 / 997):6.2f}  ranks test " in out and "keyB  FINISHED" in out
    assert "ranks -" in out
    fresh = new_store(blank_db, tmp_path / "fresh.db")
    assert cli(["archive", "import", str(tmp_path / "out" / EXP), "--experiment", "other", "--uri", fresh]) == 0
    assert "imported 2 runs" in capsys.readouterr().out
    assert len(MlflowClient(fresh).search_runs([MlflowClient(fresh).get_experiment_by_name("other").experiment_id])) == 3
    with pytest.raises(SystemExit):
        cli(["archive", "nope"])
    assert os.path.exists(tmp_path / "out" / EXP / "sweep.json")


# --------------------------------------------------------------------------------- adopting shared cells

SHARED_BASE = "base:\n  dataset: {name: ml-100k}\n  model: {name: sasrec, dim: 16}\n"


def test_adopt_relabels_shared_cells_and_keeps_their_results(tmp_path, capsys):
    """Two sweeps share a cell (same key): adopting the first sweep's archive into the second copies that cell
    only, under the second sweep's axis labels, with metrics, history and rank counts unchanged, so the reports
    of the second archive group it by the second sweep's axes. Adopting again copies nothing."""
    from harness.sweep import adopt, archive_folder, cell_tags, load_sweep

    methods, dims = tmp_path / "methods.yaml", tmp_path / "dims.yaml"
    methods.write_text("name: methods\n" + SHARED_BASE + "grid:\n  method:\n    id: {model.items: id}\n"
                       "    finetune: {model.items: finetune, features.text_encoder: minilm-l6}\n")
    dims.write_text("name: dims\n" + SHARED_BASE + "grid:\n  model.dim: [16, 32]\n  model.items: [id]\n")
    first, second = load_sweep(methods), load_sweep(dims)
    shared = {c.key for c in first.cells()} & {c.key for c in second.cells()}
    assert len(shared) == 1  # method=id is dim=16,items=id
    folder = archive_folder(first, tmp_path / "runs")
    for seed, cell in enumerate(first.cells(), start=1):
        log = A.ArchiveLogger(folder, cell_tags(first, cell), cell.name)
        fill(log, cell.key, seed)
        log.finish()
    assert adopt(second, [folder], tmp_path / "runs") == sorted(shared)
    key = shared.pop()
    old, new = (json.loads((tmp_path / "runs" / name / f"{key}.json").read_text()) for name in ("methods", "dims"))
    assert {k: v for k, v in new["tags"].items() if k.startswith("harness.axis.")} == {
        "harness.axis.model.dim": "16", "harness.axis.model.items": "id"}
    assert new["tags"]["harness.sweep"] == "dims" and new["tags"]["harness.adopted_from"] == "methods"
    assert new["run_name"] == new["tags"]["mlflow.runName"] == "dim=16,items=id"
    for field in ("metrics", "history", "params", "ranks", "run_id", "cell_key", "start_time", "end_time"):
        assert new[field] == old[field], field
    assert adopt(second, [folder], tmp_path / "runs") == []  # FINISHED there already: left alone
    df = A.read(tmp_path / "runs" / "dims")  # what the reports read
    assert list(df["tags.harness.axis.model.dim"]) == ["16"] and "tags.harness.axis.method" not in df
    assert cli(["sweep", str(dims), "--adopt", str(folder)]) == 2  # nowhere to put them
    assert "--adopt needs --archive DIR" in capsys.readouterr().err
    assert cli(["sweep", str(dims), "--adopt", str(folder), "--archive", str(tmp_path / "runs")]) == 0
    assert "adopted 0 cells into" in capsys.readouterr().out
