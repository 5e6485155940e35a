"""Sweep files and grid expansion (no training here; see test_report.py / test_slurm_sweep.py for real runs)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from harness import checkpoint
from harness import config as C
from harness.archive import ArchiveLogger
from harness.run_schema import TAG_KEY
from harness.sweep.cell import checkpoint_dir
from harness import sweep as S

REPO = Path(__file__).resolve().parents[1]
SHIPPED = {"figure4": 48, "table2": 180, "ablation": 95, "demo": 15, "ci": 4, "ci-encoders": 5, "kdsr-results": 75,
           "sophistication": 90}


def write(tmp_path: Path, data: dict, name: str = "s.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def test_every_sweep_file_is_checked_here():
    assert {p.stem for p in (REPO / "sweeps").glob("*.yaml")} == set(SHIPPED)


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_every_shipped_sweep_loads_with_registered_names(name):
    sweep = S.load_sweep(REPO / "sweeps" / f"{name}.yaml")
    cells = sweep.cells()
    assert len(cells) == SHIPPED[name]
    assert [c.index for c in cells] == list(range(len(cells)))
    assert len({c.key for c in cells}) == len(cells)
    assert len({c.name for c in cells}) == len(cells)
    S.check_names(cells)
    for cell in cells:  # the key is the config module's hash of exactly this resolved config
        assert cell.key == C.cell_key(cell.config)
        C.validate(cell.config)


def test_figure4_spans_the_papers_grid():
    cells = S.load_sweep(REPO / "sweeps" / "figure4.yaml").cells()
    assert {c.config.model.dim for c in cells} == {64, 128, 256}
    assert {c.config.dataset.name for c in cells} == {"amazon-beauty", "ml-1m"}
    image = {c.config.features.image_encoder for c in cells} - {None}
    text = {c.config.features.text_encoder for c in cells} - {None}
    assert image == {"resnet50", "swin-b", "clip-vit-l-14"} and {"t5-base", "chatglm3-6b", "llama-7b"} <= text
    assert all(c.config.kdsr.enabled and c.config.model.items == "finetune" for c in cells)
    ml1m = [c for c in cells if c.config.dataset.name == "ml-1m"]  # paper's (lambda1, lambda2) per dataset
    assert {(c.config.kdsr.lambda_holistic, c.config.kdsr.lambda_dissected) for c in ml1m} == {(0.5, 0.1)}


def test_grid_order_names_and_values(tmp_path):
    path = write(tmp_path, {"name": "g", "base": {"dataset": "ml-100k"},
                            "grid": {"model.dim": [16, 32], "train.seed": [1, 2, 3]}})
    cells = S.load_sweep(path).cells()
    assert [(c.config.model.dim, c.config.train.seed) for c in cells] == [(16, 1), (16, 2), (16, 3), (32, 1), (32, 2), (32, 3)]
    assert cells[4].name == "dim=32,seed=2"
    assert cells[4].values == {"model.dim": 32, "train.seed": 2}
    assert S.load_sweep(path).cells()[4].key == cells[4].key  # deterministic across loads


def test_bundles_nulls_and_base_only_valid_with_the_grid(tmp_path):
    # the base alone (finetune without an encoder) is invalid; every cell is valid
    path = write(tmp_path, {"name": "b", "base": {"model": {"items": "finetune"}, "features": {"text_encoder": "tiny-bert"}},
                            "grid": {"mode": {"id": {"model.items": "id", "features.text_encoder": None},
                                              "kdsr": {"kdsr.enabled": True}}}})
    cells = S.load_sweep(path).cells()
    assert [c.name for c in cells] == ["mode=id", "mode=kdsr"]
    assert cells[0].config.features.text_encoder is None and cells[0].config.model.items == "id"
    assert cells[1].config.kdsr.enabled and cells[1].config.model.items == "finetune"


def test_several_grids_share_a_cell_once(tmp_path):
    path = write(tmp_path, {"name": "a", "base": {"features": {"text_encoder": "tiny-bert"}, "model": {"items": "finetune"},
                                                   "kdsr": {"enabled": True}},
                            "grid": [{"variant": {"full": {}, "no-async": {"kdsr.async_train": False}}},
                                     {"kdsr.score": ["cosine", "dot"]}]})
    sweep = S.load_sweep(path)
    cells = sweep.cells()
    assert len(cells) == 3  # full == score=cosine
    full = cells[0]
    assert full.grids == (0, 1) and full.labels == {"variant": "full", "kdsr.score": "cosine"}
    assert full.name == "variant=full"
    assert [c.grids for c in cells[1:]] == [(0,), (1,)]
    assert sweep.axes(0) == ["variant"] and sweep.axes(1) == ["kdsr.score"]


def test_exclude_and_overrides(tmp_path):
    path = write(tmp_path, {"name": "e", "grid": {"dataset.name": ["ml-100k", "ml-1m"], "model.dim": [16, 32]},
                            "exclude": [{"dataset.name": "ml-1m", "model.dim": 32}]})
    assert [c.name for c in S.load_sweep(path).cells()] == ["dataset=ml-100k,dim=16", "dataset=ml-100k,dim=32", "dataset=ml-1m,dim=16"]
    forced = S.load_sweep(path, ["train.epochs=1"]).cells()
    assert all(c.config.train.epochs == 1 for c in forced)
    assert {c.key for c in forced}.isdisjoint(c.key for c in S.load_sweep(path).cells())
    collapsed = S.load_sweep(path, ["model.dim=8"]).cells()  # an override that collapses an axis dedupes cells
    assert [c.config.model.dim for c in collapsed] == [8, 8]
    invalid = write(tmp_path, {"grid": {"model.items": ["id", "finetune"]}, "exclude": [{"model.items": "finetune"}]},
                    "invalid.yaml")  # excluded before validation: an exclude may drop an invalid combination
    assert [c.config.model.items for c in S.load_sweep(invalid).cells()] == ["id"]


@pytest.mark.parametrize(
    "data, message",
    [
        ({"gird": {"model.dim": [1]}}, "unknown sweep key 'gird'; did you mean 'grid'"),
        ({"grid": {"model.dimm": [16]}}, "did you mean 'model.dim'"),
        ({"grid": {"model.dim": [16, "big"]}}, "cell [model.dim=big]: model.dim: expected int"),
        ({"grid": {"model.items": ["finetune"]}}, "needs features.text_encoder"),
        ({"grid": {"model.dim": []}}, "non-empty list"),
        ({"grid": {"model.dim": [16]}, "exclude": [{"nope": 1}]}, "exclude key 'nope'"),
        ({"grid": {"model.name": ["sasrec", "bert4rec"]}}, "is not one of sasrec, gru4rec, mmsr"),
    ],
)
def test_bad_sweep_files_are_clear_errors(tmp_path, data, message):
    with pytest.raises(C.ConfigError) as err:
        S.load_sweep(write(tmp_path, data)).cells()
    assert message in str(err.value)


def test_unknown_encoder_or_dataset_is_caught_before_any_job(tmp_path):
    cells = S.load_sweep(write(tmp_path, {"base": {"model": {"items": "frozen"}},
                                          "grid": {"features.text_encoder": ["tiny-bert", "minilm-l7"]}})).cells()
    with pytest.raises(C.ConfigError, match="unknown encoder 'minilm-l7'; did you mean 'minilm-l6'"):
        S.check_names(cells)
    cells = S.load_sweep(write(tmp_path, {"grid": {"dataset.name": ["ml-100k", "ml-10m"]}})).cells()
    with pytest.raises(C.ConfigError, match="unknown dataset 'ml-10m'; valid: .*ml-100k"):
        S.check_names(cells)


def test_list_prints_index_key_and_overrides(capsys):
    assert S.main([str(REPO / "sweeps" / "ci.yaml"), "--list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    cells = S.load_sweep(REPO / "sweeps" / "ci.yaml").cells()
    assert lines[0] == "# ci: 4 cells -> experiment 'ci'"
    for line, cell in zip(lines[1:], cells, strict=True):
        assert re.split(r"\s+", line.strip()) == [str(cell.index), cell.key, cell.name,
                                                    f"model.dim={cell.config.model.dim}", f"train.seed={cell.config.train.seed}"]


def test_list_with_archive_shows_finished_and_checkpointed_cells(tmp_path, capsys):
    overrides = [f"train.checkpoint_dir={tmp_path / 'ckpt'}", "train.epochs=5"]
    sweep = S.load_sweep(REPO / "sweeps" / "ci.yaml", overrides)
    cells, folder = sweep.cells(), tmp_path / "archive" / "ci"
    ArchiveLogger(folder, {TAG_KEY: cells[0].key}).finish("FINISHED")
    checkpoint.save(checkpoint_dir(sweep, cells[1]), {"epochs": 2})
    ArchiveLogger(folder, {TAG_KEY: cells[2].key}).finish("KILLED")  # a record, but not a finished one
    argv = [str(REPO / "sweeps" / "ci.yaml"), *(a for o in overrides for a in ("--set", o)), "--list"]
    assert S.main(argv + ["--archive", str(tmp_path / "archive")]) == 0
    lines = capsys.readouterr().out.splitlines()[1:]
    assert [line.split("  ")[-1] for line in lines] == ["finished", "checkpoint: 2/5 epochs", "-", "-"]
    assert S.main(argv) == 0  # without --archive: no status column
    assert all(line.endswith("train.seed=" + str(c.config.train.seed))
               for line, c in zip(capsys.readouterr().out.splitlines()[1:], cells, strict=True))


def test_index_defaults_to_the_slurm_array_task_id(monkeypatch):
    monkeypatch.setenv("SLURM_ARRAY_TASK_ID", "7")
    with pytest.raises(IndexError, match="out of range: ci has cells 0..3"):
        S.main([str(REPO / "sweeps" / "ci.yaml")])


def test_array_spec_and_store_uri(tmp_path, monkeypatch):
    assert S.array_spec([0, 1, 2, 5, 7, 8]) == "0-2,5,7-8"
    assert S.array_spec([3]) == "3"
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:///runs/m.db")
    assert S.store_uri(S.load_sweep(REPO / "sweeps" / "ci.yaml")) == f"sqlite:///{tmp_path}/runs/m.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5000")
    assert S.store_uri(S.load_sweep(REPO / "sweeps" / "ci.yaml")) == "http://127.0.0.1:5000"


@pytest.mark.parametrize("script", sorted(p.name for p in (REPO / "slurm").glob("*.sh")))
def test_slurm_scripts_are_resource_lines_plus_one_launch_line(script):
    lines = [ln.strip() for ln in (REPO / "slurm" / script).read_text().splitlines()]
    code = [ln for ln in lines if ln and not ln.startswith("#")]
    assert len(code) == 1, code
    assert any(ln.startswith("#SBATCH ") for ln in lines)
    assert lines.index(code[0]) > max(i for i, ln in enumerate(lines) if ln.startswith("#SBATCH"))
    assert code[0].removeprefix("exec ").startswith(  # cell.sh: exec, so USR1 reaches the cell
        ("harness sweep ", "accelerate launch ", "srun --ntasks-per-node=1 --kill-on-bad-exit=1 harness "))


def test_study_sweeps_have_the_controls_and_share_cells():
    results = S.load_sweep(REPO / "sweeps" / "kdsr-results.yaml").cells()
    methods = {c.labels["method"] for c in results}
    assert methods == {"id", "frozen", "finetune", "finetune+async", "finetune+kdsr"}
    control = next(c.config for c in results if c.labels["method"] == "finetune+async")
    assert control.kdsr.enabled and not (control.kdsr.holistic or control.kdsr.dissected) and control.kdsr.async_train
    assert {c.config.train.seed for c in results} == {1, 2, 3, 4, 5}
    assert all(c.config.kdsr.teacher_seed is None for c in results)  # the teacher's seed follows train.seed
    sophistication = S.load_sweep(REPO / "sweeps" / "sophistication.yaml").cells()
    encoders = {c.config.features.text_encoder for c in sophistication}
    assert encoders == {None, "minilm-l6", "mpnet-base"}
    shared = {c.key for c in results} & {c.key for c in sophistication}
    assert len(shared) == 9  # Beauty, dim 128, seeds 1-3: ID, MiniLM fine-tuned / +KDSR - run once, reported twice


def test_archive_mode_runs_cells_without_mlflow(tmp_path, session_cache):
    """``--local --archive``: cells run in real subprocesses on a machine without MLflow (import blocked)
    and each writes one FINISHED record; a rerun skips them."""
    import os
    import subprocess
    import sys

    from harness import archive

    blocker = tmp_path / "no_mlflow"
    blocker.mkdir()
    (blocker / "sitecustomize.py").write_text("import sys\nsys.modules['mlflow'] = None  # not installed here\n")
    path = write(tmp_path, {"name": "arch", "base": {"dataset": {"name": "ml-100k", "protocol": "leave-one-out", "max_len": 10},
                                                     "model": {"dim": 8, "layers": 1},
                                                     "train": {"epochs": 1, "device": "cpu", "valid_targets": 200}},
                            "grid": {"model.dim": [8, 16]}})
    env = {**os.environ, "PYTHONPATH": str(blocker), "HARNESS_CACHE_DIR": str(session_cache)}
    env.pop("TQDM_DISABLE", None)
    cmd = [sys.executable, "-m", "harness.sweep", str(path), "--local", "--archive", str(tmp_path / "arc"), "-j", "2",
           "--logs", str(tmp_path / "logs")]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    counter = [line for line in done.stderr.splitlines() if line.startswith("cells:")]  # off a terminal: plain lines
    assert "\r" not in done.stderr and any("1/2" in line for line in counter) and "2/2" in counter[-1], done.stderr
    folder = tmp_path / "arc" / "arch"
    keys = {c.key for c in S.load_sweep(path).cells()}
    assert S.archived_keys(folder) == keys
    record = archive.load_record(folder / f"{sorted(keys)[0]}.json")
    assert record["status"] == "FINISHED" and record["ranks"]["test"]["n"] == 943  # one test target per user
    assert record["metrics"]["encoder.params"] == 0 and record["tags"]["harness.method"] == "id"
    again = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0 and "0 to run" in again.stdout, again.stdout


def test_local_checkpoint_folders_are_encoders_in_sweeps_and_train(tmp_path):
    """``local-dir:/path`` names an encoder in a sweep and in ``harness train`` exactly as in ``harness encode``."""
    from encoders.tokenizers import minilm_dir
    from harness.tracking import MemoryLogger
    from harness.train import run

    folder = f"local-dir:{minilm_dir()}"
    grid = {"features.text_encoder": [folder, str(minilm_dir())]}
    S.check_names(S.load_sweep(write(tmp_path, {"base": {"model": {"items": "finetune"}}, "grid": grid})).cells())
    missing = S.load_sweep(write(tmp_path, {"base": {"model": {"items": "finetune"}},
                                            "grid": {"features.text_encoder": ["local-dir:/no/such/model"]}})).cells()
    with pytest.raises(C.ConfigError, match="/no/such/model is not a directory"):
        S.check_names(missing)
    log = MemoryLogger()
    cfg = C.load(overrides=["dataset=ml-100k", "dataset.max_len=10", "model.items=finetune", "model.dim=8", "model.layers=1",
                            f"features.text_encoder={folder}", "train.epochs=1", "train.device=cpu", "train.valid_targets=200"])
    run(cfg, log)
    assert log.tags["harness.encoder.text"] == folder
    assert dict((k, v) for k, v, _ in log.metrics)["encoder.text.params"] == 22713216  # MiniLM-L6, read from its folder


def test_an_encoder_that_cannot_load_fails_only_its_own_cells(tmp_path, session_cache):
    """chatglm3-6b needs remote code: without ``features.trust_remote_code`` its encode is reported and its cell
    fails, while the ID cell of the same sweep still runs to the end (it used to abort the whole submission)."""
    import os
    import subprocess
    import sys

    path = write(tmp_path, {"name": "remote", "base": {"dataset": {"name": "ml-100k", "protocol": "leave-one-out", "max_len": 10},
                                                       "model": {"dim": 8, "layers": 1, "items": "frozen"},
                                                       "train": {"epochs": 1, "device": "cpu", "valid_targets": 200}},
                            "grid": {"method": {"id": {"model.items": "id"},
                                                "glm": {"features.text_encoder": "chatglm3-6b"}}}})
    env = {**os.environ, "TQDM_DISABLE": "1", "HARNESS_CACHE_DIR": str(session_cache)}
    cmd = [sys.executable, "-m", "harness.sweep", str(path), "--local", "--archive", str(tmp_path / "arc"), "-j", "1",
           "--logs", str(tmp_path / "logs")]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode != 0  # one cell failed
    assert "chatglm3-6b" in done.stdout and "FAILED" in done.stdout and "trust_remote_code" in done.stdout + done.stderr
    cells = {c.name: c.key for c in S.load_sweep(path).cells()}
    assert S.archived_keys(tmp_path / "arc" / "remote") == {cells["method=id"]}
