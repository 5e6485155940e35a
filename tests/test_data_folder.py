"""Datasets without code: RecBole atomic files, CSV and Parquet folders, predefined splits, P5 datamaps variants."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from harness.data import DataFormatError, UnknownDatasetError, eval_targets, load_dataset, make_split
from harness.data.cli import main as data_main

pytestmark = pytest.mark.filterwarnings("ignore::harness.data.DatasetNoteWarning")

# 6 users x 5 of 6 items (user u skips item u): the 5-core keeps everything.
ROWS = [(f"u{u}", f"i{i}", 100 * u + (7 * i) % 5) for u in range(6) for i in range(6) if i != u]


def _write(path: Path, lines: list[str]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    return path


def _recbole(folder: Path, name: str = "toy") -> Path:
    inter = ["user_id:token\titem_id:token\trating:float\ttimestamp:float"]
    inter += [f"{u}\t{i}\t5\t{t}" for u, i, t in ROWS]
    _write(folder / name / f"{name}.inter", inter)
    items = ["item_id:token\ttitle:token_seq\tbrand:token\timage:token"]
    items += [f"i{k}\tThing {k}\tAcme\timgs/i{k}.png" for k in range(5)] + ["i5\tLast thing\t\thttp://x.test/5.jpg"]
    _write(folder / name / f"{name}.item", items)
    return folder


def _expected_sequence(user: str) -> list[str]:
    return [i for _, i, _ in sorted((t, i, n) for n, (u, i, t) in enumerate(ROWS) if u == user)]


def test_recbole_atomic_files_load_without_code(tmp_path):
    ds = load_dataset("toy", _recbole(tmp_path), use_cache=False)
    assert ds.source["layout"] == "recbole" and (ds.num_users, ds.num_items, ds.num_interactions) == (6, 6, 30)
    raw = ds.items.raw_ids
    for u, seq in zip(ds.user_ids, ds.sequences):
        assert [raw[i] for i in seq] == _expected_sequence(u)  # chronological by the float timestamp
    k = ds.items.index()
    assert ds.items.texts[k["i2"]] == "Thing 2. Acme" and ds.items.texts[k["i5"]] == "Last thing"
    assert ds.items.images[k["i2"]] == str((tmp_path / "toy" / "imgs" / "i2.png").resolve())
    assert ds.items.images[k["i5"]] == "http://x.test/5.jpg"  # a URL is for `harness data images`
    assert data_main(["stats", "--dataset", "toy", "--data-dir", str(tmp_path)]) == 0


def test_recbole_benchmark_files_are_the_predefined_split(tmp_path):
    folder = tmp_path / "bench"
    header = "user_id:token\titem_id:token\ttimestamp:float"
    _write(folder / "bench.train.inter", [header, "a\tx\t1", "a\ty\t2", "b\ty\t1", "b\tz\t3", "c\tz\t5"])
    _write(folder / "bench.valid.inter", [header, "a\tz\t3", "b\tx\t4"])
    _write(folder / "bench.test.inter", [header, "a\tw\t4", "b\tw\t5", "c\tx\t9", "c\ty\t8"])
    ds = load_dataset("bench", tmp_path, use_cache=False)  # no k-core: it would break the given split
    raw = ds.items.raw_ids
    assert {u: [raw[i] for i in s] for u, s in zip(ds.user_ids, ds.sequences)} == {
        "a": ["x", "y", "z", "w"], "b": ["y", "z", "x", "w"], "c": ["z", "y", "x"]}
    split = make_split(ds, "predefined")
    assert split.valid_start.tolist() == [2, 2, 1] and split.test_start.tolist() == [3, 3, 1]
    users, positions = eval_targets(split, "test")
    assert [(ds.user_ids[u], raw[ds.sequences[u][p]]) for u, p in zip(users, positions)] == [
        ("a", "w"), ("b", "w"), ("c", "y"), ("c", "x")]
    cached = load_dataset("bench", tmp_path)  # the split survives the npz cache
    assert np.array_equal(load_dataset("bench", tmp_path).split, cached.split)
    with pytest.raises(ValueError, match="no predefined split"):
        make_split(load_dataset("toy", _recbole(tmp_path), use_cache=False), "predefined")


def test_csv_folder_with_descriptor_and_quoted_fields(tmp_path):
    folder = tmp_path / "shop"
    _write(folder / "dataset.yaml", ["format: csv", "interactions: clicks.csv", "items: products.csv",
                                     "user: uid", "item: pid", "time: ts", "text: [name, about]", "image: picture"])
    _write(folder / "clicks.csv", ["uid,pid,ts"] + [f"{u},{i},{t}" for u, i, t in ROWS])
    _write(folder / "products.csv", ["pid,name,about,picture,ignored"]
           + [f'i{k},"Widget, size {k}",nice,http://img.test/{k}.jpg,zzz' for k in range(6)])
    ds = load_dataset("shop", tmp_path, use_cache=False)
    k = ds.items.index()
    assert ds.items.texts[k["i3"]] == "Widget, size 3. nice" and ds.items.images[k["i3"]] == "http://img.test/3.jpg"
    assert [ds.items.raw_ids[i] for i in ds.sequences[ds.user_ids.index("u4")]] == _expected_sequence("u4")


def test_parquet_folder_with_split_files(tmp_path):
    folder = tmp_path / "pq"
    folder.mkdir()
    for part, rows in {"train": [("a", "x", 1), ("a", "y", 2)], "valid": [("a", "z", 3)], "test": [("a", "x", 4)]}.items():
        cols = list(zip(*rows))
        pq.write_table(pa.table({"user_id": cols[0], "item_id": cols[1], "timestamp": cols[2]}), folder / f"{part}.parquet")
    pq.write_table(pa.table({"item_id": ["x", "y", "z"], "title": ["X", "Y", "Z"]}), folder / "items.parquet")
    ds = load_dataset("pq", tmp_path, use_cache=False)
    assert ds.source["layout"] == "parquet" and ds.items.texts == ["X", "Y", "Z"]
    assert make_split(ds, "predefined").test_start.tolist() == [3]


@pytest.mark.parametrize(
    "files, where, message",
    [
        ({"bad.inter": "user_id:token\titem_id:tokn\n"}, "bad.inter, line 1", "not 'name:type'"),
        ({"bad.inter": "user_id:token\titem_id:token\ttimestamp:float\na\tb\t1\na\tb\n"}, "bad.inter, line 3",
         "expected 3 tab-separated fields, got 2"),
        ({"bad.inter": "user_id:token\titem_id:token\ttimestamp:float\n\na\tb\tlate\n"}, "bad.inter, line 3",
         "field 'timestamp' is float, got 'late'"),
        ({"bad.inter": "uid:token\titem_id:token\n"}, "bad.inter, line 1", "no user column 'user_id'"),
        ({"interactions.csv": "user_id,item_id,timestamp\na,b,1\na,,2\n"}, "interactions.csv, line 3", "empty item id"),
        ({"interactions.csv": "user_id,item_id,timestamp\na,b,1\na,c,soon\n"}, "interactions.csv, line 3",
         "timestamp must be a number, got 'soon'"),
        ({"dataset.yaml": "format: csv\nitem_column: pid\n"}, "dataset.yaml", "unknown key 'item_column'"),
        ({"dataset.yaml": "format: excel\n"}, "dataset.yaml", "format 'excel' is not one of recbole, csv, parquet"),
        ({"train.csv": "user_id,item_id\na,x\n", "valid.csv": "user_id,item_id\na,y\n",
          "test.csv": "user_id,item_id\na,z\nghost,x\n"}, "test.csv, line 3", "user 'ghost' has no interaction in train.csv"),
        ({"interactions.csv": "user_id,item_id\na,x\n", "items.csv": "item_id,title\nx,X\nx,again\n"},
         "items.csv, line 3", "item 'x' appears twice"),
    ],
)
def test_malformed_files_name_file_and_line(tmp_path, files, where, message):
    for name, text in files.items():
        (tmp_path / "bad").mkdir(exist_ok=True)
        (tmp_path / "bad" / name).write_text(text)
    with pytest.raises(DataFormatError) as e:
        load_dataset("bad", tmp_path, use_cache=False)
    assert where in str(e.value) and message in str(e.value)


def test_data_list_shows_folder_datasets_and_broken_descriptors(tmp_path, capsys):
    _recbole(tmp_path)
    _write(tmp_path / "broken" / "dataset.yaml", ["fromat: csv"])
    (tmp_path / "notes").mkdir()  # no descriptor, no known files: not a dataset
    assert data_main(["list", "--data-dir", str(tmp_path)]) == 0
    rows = {line.split()[0]: line for line in capsys.readouterr().out.splitlines()}
    assert "present (recbole)" in rows["toy"] and "ml-1m" in rows
    assert "unreadable" in rows["broken"] and "fromat" in rows["broken"]
    assert "notes" not in rows


def test_unknown_name_without_files_still_lists_registered_datasets(tmp_path):
    with pytest.raises(UnknownDatasetError, match="ml-1m"):
        load_dataset("nothing-here", tmp_path)


def _p5(folder: Path, maps: dict) -> None:
    users = {str(u + 1): f"U{u}" for u in range(6)}
    items = {str(i + 1): f"A{i}" for i in range(6)}
    lines = [" ".join([str(u + 1)] + [str(i + 1) for i in range(6) if i != u]) for u in range(6)]
    _write(folder / "sequential_data.txt", lines)
    full = {"id2user": users, "user2id": {v: k for k, v in users.items()},
            "id2item": items, "item2id": {v: k for k, v in items.items()}}
    (folder / "datamaps.json").write_text(json.dumps({k: full[k] for k in maps}))


def test_p5_datamaps_with_only_id2item_and_id2user_are_completed(tmp_path):
    _p5(tmp_path / "amazon-toys", ["id2item", "id2user"])
    short = load_dataset("amazon-toys", tmp_path, use_cache=False)
    _p5(tmp_path / "amazon-toys", ["id2item", "id2user", "item2id", "user2id"])
    full = load_dataset("amazon-toys", tmp_path, use_cache=False)
    assert short.items.raw_ids == full.items.raw_ids == [f"A{i}" for i in range(6)]
    assert short.user_ids == full.user_ids and all(map(np.array_equal, short.sequences, full.sequences))
    _p5(tmp_path / "amazon-toys", ["item2id", "user2id"])  # the other direction works too
    assert load_dataset("amazon-toys", tmp_path, use_cache=False).items.raw_ids == full.items.raw_ids
    _p5(tmp_path / "amazon-toys", ["id2item"])
    with pytest.raises(DataFormatError, match="missing both the 'user2id' and the 'id2user' map"):
        load_dataset("amazon-toys", tmp_path, use_cache=False)


def test_a_recbole_folder_goes_from_files_to_a_sweep_without_python(tmp_path, session_cache):
    """docs/DATA.md's recipe as typed: benchmark split files + an item file with titles, then a sweep
    (ID and frozen tiny-bert text features) on ``dataset.protocol=predefined`` - no reader written."""
    import os
    import subprocess
    import sys

    import yaml

    from harness.archive import load_record

    rng = np.random.default_rng(0)
    header = "user_id:token\titem_id:token\ttimestamp:float"
    parts = {"train": [header], "valid": [header], "test": [header]}
    for u in range(40):
        items = rng.choice(30, size=8, replace=False)
        for t, i in enumerate(items):
            part = "test" if t == 7 else "valid" if t == 6 else "train"
            parts[part].append(f"u{u}\ti{i}\t{t}")
    for part, lines in parts.items():
        _write(tmp_path / "data" / "shop" / f"shop.{part}.inter", lines)
    _write(tmp_path / "data" / "shop" / "shop.item",
           ["item_id:token\ttitle:token_seq"] + [f"i{i}\tproduct number {i} in colour {i % 4}" for i in range(30)])
    sweep = tmp_path / "shop.yaml"
    sweep.write_text(yaml.safe_dump({
        "name": "shop",
        "base": {"dataset": {"name": "shop", "data_dir": str(tmp_path / "data"), "protocol": "predefined", "max_len": 8},
                 "features": {"text_encoder": "tiny-bert"},
                 "model": {"dim": 8, "layers": 1}, "train": {"epochs": 1, "device": "cpu"}},
        "grid": {"model.items": ["id", "frozen"]}}))
    env = {**os.environ, "TQDM_DISABLE": "1", "HARNESS_CACHE_DIR": str(session_cache)}
    done = subprocess.run([sys.executable, "-m", "harness.sweep", str(sweep), "--local", "--archive", str(tmp_path / "arc"),
                           "--logs", str(tmp_path / "logs")], env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    records = [r for p in sorted((tmp_path / "arc" / "shop").glob("*.json")) if "cell_key" in (r := load_record(p))]
    assert len(records) == 2 and all(r["status"] == "FINISHED" for r in records)
    assert all(r["ranks"]["test"]["n"] == 40 for r in records)  # one test target per user, exactly the test file's
