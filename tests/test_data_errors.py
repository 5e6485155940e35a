"""Bad input: each gives one clear error naming the file and line or the valid names; the cache stays clean."""

from __future__ import annotations

import gzip
import hashlib
import zipfile
from pathlib import Path

import numpy as np
import pytest

from harness.data import (
    ChecksumError,
    DataError,
    DataFormatError,
    MissingDataError,
    Source,
    UnknownDatasetError,
    load_dataset,
)
from harness.data.fetch import fetch_source
from harness.atomic import atomic_path
from harness.data.kcore import kcore_mask


def u_data(users: int = 6, items: int = 6) -> str:
    """A GroupLens u.data where every user rated every item (a 5-core), timestamps descending per user."""
    return "".join(f"{u}\t{i}\t4\t{1000 - i}\n" for u in range(1, users + 1) for i in range(1, items + 1))


def u_item(items: int = 6) -> str:
    flags = "|".join(["0", "0", "0", "1"] + ["0"] * 15)  # Animation
    return "".join(f"{i}|Movie {i} (1995)|01-Jan-1995||http://x|{flags}\n" for i in range(1, items + 1))


def write_ml100k(root: Path, data: str | None = None, items: str | None = None) -> Path:
    folder = root / "ml-100k"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "u.data").write_text(u_data() if data is None else data)
    (folder / "u.item").write_text(u_item() if items is None else items, encoding="latin-1")
    return folder


def cache_files(cache: Path) -> set[Path]:
    return set(cache.rglob("*")) if cache.exists() else set()


def test_grouplens_layout_loads_by_time(tmp_path):
    write_ml100k(tmp_path)
    ds = load_dataset("ml-100k", tmp_path)
    assert (ds.num_users, ds.num_items, ds.num_interactions) == (6, 6, 36)
    assert [ds.items.raw_ids[i] for i in ds.sequences[0]] == ["6", "5", "4", "3", "2", "1"]  # oldest first
    assert ds.items.texts[0] == "Movie 1 (1995). Genres: Animation"
    assert ds.source["layout"] == "grouplens"


def test_malformed_line_names_file_and_line(tmp_path, session_cache):
    before = cache_files(session_cache)
    lines = u_data().splitlines()
    lines[2] = "1\t3\t4"  # a field missing on line 3
    folder = write_ml100k(tmp_path, "\n".join(lines) + "\n")
    with pytest.raises(DataFormatError, match=r"u\.data, line 3: expected 4 '\\t'-separated fields, got 3") as err:
        load_dataset("ml-100k", tmp_path)
    assert err.value.path == folder / "u.data" and err.value.line == 3
    assert cache_files(session_cache) == before  # nothing written


def test_non_integer_id_names_line(tmp_path):
    folder = tmp_path / "ml-1m"
    folder.mkdir()
    (folder / "movies.dat").write_text("1::Toy Story (1995)::Animation\n")
    (folder / "ml-1m_sequences_original_ids.txt").write_text("1 1 1 1 1 1\n2 1 1 x 1 1\n")
    with pytest.raises(DataFormatError, match=r"ml-1m_sequences_original_ids\.txt, line 2: expected integer ids"):
        load_dataset("ml-1m", tmp_path, verify=False)


def test_malformed_movies_dat_line(tmp_path):
    folder = tmp_path / "ml-1m"
    folder.mkdir()
    (folder / "movies.dat").write_text("1::Toy Story (1995)::Animation\n2::Jumanji (1995)\n")
    (folder / "ml-1m_sequences_original_ids.txt").write_text("1 1 2\n")
    with pytest.raises(DataFormatError, match=r"movies\.dat, line 2: expected 'MovieID::Title::Genres'"):
        load_dataset("ml-1m", tmp_path, verify=False)


def test_missing_file_names_it_and_the_fetch_command(tmp_path):
    folder = write_ml100k(tmp_path)
    (folder / "u.item").unlink()
    with pytest.raises(MissingDataError) as err:
        load_dataset("ml-100k", tmp_path)
    message = str(err.value)
    assert str(folder / "u.item") in message and "harness data fetch --dataset ml-100k" in message
    assert isinstance(err.value, FileNotFoundError)
    with pytest.raises(MissingDataError, match="folder does not exist"):
        load_dataset("amazon-toys", tmp_path)


def test_checksum_mismatch_names_file_and_leaves_cache_clean(tmp_path, session_cache, data_dir):
    before = cache_files(session_cache)
    folder = tmp_path / "ml-100k"
    folder.mkdir()
    text = (data_dir / "ml-100k" / "ml-100k.inter").read_text().splitlines()
    (folder / "ml-100k.inter").write_text("\n".join(text[:2000]) + "\n")  # truncated copy
    (folder / "ml-100k.item").write_bytes((data_dir / "ml-100k" / "ml-100k.item").read_bytes())
    with pytest.raises(ChecksumError, match=r"ml-100k\.inter: sha256 checksum mismatch \(expected 4edb74e2") as err:
        load_dataset("ml-100k", tmp_path)
    assert err.value.path == folder / "ml-100k.inter"
    assert cache_files(session_cache) == before
    ds = load_dataset("ml-100k", tmp_path, verify=False)  # an explicit opt-out still loads it
    assert ds.num_interactions < 2000


def test_unknown_name_lists_valid_names_closest_first(tmp_path):
    with pytest.raises(UnknownDatasetError) as err:
        load_dataset("ml-1mm", tmp_path)
    assert isinstance(err.value, KeyError)
    message = str(err.value)
    assert message.startswith("unknown dataset 'ml-1mm'; valid names (closest first): ml-1m, ml-100k")
    for name in ("amazon-beauty", "amazon-sports", "amazon-toys", "amazon-clothing"):
        assert name in message


def test_atomic_path_leaves_nothing_on_failure(tmp_path):
    dest = tmp_path / "out" / "x.npz"
    with pytest.raises(RuntimeError), atomic_path(dest) as tmp:
        tmp.write_bytes(b"half")
        raise RuntimeError("interrupted")
    assert not dest.exists() and list((tmp_path / "out").iterdir()) == []


def test_kcore_is_iterative():
    # k=2: item 2 has one interaction -> user 1 drops to 1 interaction -> item 1 then has one -> user 0 too
    users = np.array([0, 0, 1, 1, 2, 2, 3, 3])
    items = np.array([0, 1, 1, 2, 3, 4, 3, 4])
    assert kcore_mask(users, items, k=2).tolist() == [False] * 4 + [True] * 4


# ---- fetch: checksum-verified, atomic, file:// URLs stand in for GroupLens --------------------


def make_zip(tmp_path: Path) -> tuple[Path, str]:
    archive = tmp_path / "src" / "ml-100k.zip"
    archive.parent.mkdir()
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("ml-100k/u.data", u_data())
        zf.writestr("ml-100k/u.item", u_item())
    return archive, hashlib.md5(archive.read_bytes()).hexdigest()


def test_fetch_zip_verifies_md5_and_extracts(tmp_path):
    archive, md5 = make_zip(tmp_path)
    source = Source(
        archive.as_uri(), "ml-100k.zip", md5=md5, extract={"ml-100k/u.data": "u.data", "ml-100k/u.item": "u.item"}
    )
    folder = tmp_path / "data" / "ml-100k"
    assert sorted(p.name for p in fetch_source(source, folder)) == ["u.data", "u.item"]
    assert sorted(p.name for p in folder.iterdir()) == ["u.data", "u.item"]  # the zip and temp dir are gone
    assert load_dataset("ml-100k", tmp_path / "data").num_interactions == 36


def test_fetch_checksum_mismatch_keeps_nothing(tmp_path):
    archive, _ = make_zip(tmp_path)
    source = Source(archive.as_uri(), "ml-100k.zip", md5="0" * 32, extract={"ml-100k/u.data": "u.data"})
    folder = tmp_path / "data" / "ml-100k"
    with pytest.raises(ChecksumError, match="md5 checksum mismatch"):
        fetch_source(source, folder)
    assert list(folder.iterdir()) == []


def test_fetch_truncated_gzip_without_checksum_keeps_nothing(tmp_path):
    src = tmp_path / "reviews_Toys_and_Games_5.json.gz"
    src.write_bytes(gzip.compress(b'{"reviewerID": "u", "asin": "a", "unixReviewTime": 1}\n' * 1000)[:-20])
    folder = tmp_path / "data" / "amazon-toys"
    with pytest.raises(DataError, match="corrupt or truncated"):
        fetch_source(Source(src.as_uri(), src.name), folder)
    assert list(folder.iterdir()) == []


def test_ml1m_grouplens_layout_latin1_titles(tmp_path):
    folder = tmp_path / "ml-1m"
    folder.mkdir()
    ratings = [f"{u}::{m}::5::{978300000 + (m * 37 + u) % 11}" for u in range(1, 7) for m in range(1, 7)]
    (folder / "ratings.dat").write_text("\n".join(ratings) + "\n")
    movies = [f"{m}::Movie {m} (2000)::Drama|Comedy" for m in range(1, 7)]
    movies[0] = "1::Café Society (1995)::Drama"
    (folder / "movies.dat").write_bytes(("\n".join(movies) + "\n").encode("latin-1"))  # as GroupLens ships it
    ds = load_dataset("ml-1m", tmp_path)
    assert ds.source["layout"] == "grouplens" and ds.num_interactions == 36
    assert ds.items.texts[0] == "Café Society (1995). Genres: Drama"
    times = {(int(u), int(m)): int(t) for u, m, _, t in (r.split("::") for r in ratings)}
    for user, seq in zip(ds.user_ids, ds.sequences):
        stamps = [times[(int(user), int(ds.items.raw_ids[i]))] for i in seq]
        assert stamps == sorted(stamps)


def test_cli_unknown_dataset_exits_1(capsys):
    from harness.data.cli import main

    assert main(["stats", "--dataset", "amazon-beuty"]) == 1
    err = capsys.readouterr().err
    assert "unknown dataset 'amazon-beuty'; valid names (closest first): amazon-beauty" in err
