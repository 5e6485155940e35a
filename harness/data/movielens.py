"""MovieLens readers (shipped layouts and the official GroupLens files) and their registry entries."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from harness.data.errors import DataFormatError
from harness.data.files import numbered_lines
from harness.data.interactions import code_numeric, raw_from_table, with_metadata
from harness.data.registry import DatasetSpec, Layout, RawData, Source, register_dataset

GROUPLENS = "https://files.grouplens.org/datasets/movielens"
ML100K_GENRES = [
    "unknown",
    "Action",
    "Adventure",
    "Animation",
    "Children's",
    "Comedy",
    "Crime",
    "Documentary",
    "Drama",
    "Fantasy",
    "Film-Noir",
    "Horror",
    "Musical",
    "Mystery",
    "Romance",
    "Sci-Fi",
    "Thriller",
    "War",
    "Western",
]


def _ints(path: Path, number: int, fields: list[str], what: str) -> list[int]:
    try:
        return [int(float(f)) if "." in f else int(f) for f in fields]
    except ValueError:
        raise DataFormatError(path, number, f"expected {what}, got {fields!r}") from None


def item_text(title: str, genres: list[str], year: str = "") -> str:
    """'Title (Year). Genres: A, B' — the year is added only when the title lacks it."""
    title = title.strip()
    if year and not re.search(r"\(\d{4}\)\s*$", title):
        title = f"{title} ({year})"
    genres = [g for g in genres if g]
    return f"{title}. Genres: {', '.join(genres)}" if genres else title


# ---- interactions ---------------------------------------------------------------------------


def read_sequences_file(path: Path) -> tuple[list[str], np.ndarray, np.ndarray]:
    """``UserID MovieID MovieID ...`` per line (chronological) -> users, lengths, flat movie ids."""
    users, lengths, items, seen = [], [], [], set()
    for number, line in numbered_lines(path):
        ids = _ints(path, number, line.split(), "integer ids 'UserID MovieID MovieID ...'")
        if len(ids) < 2:
            raise DataFormatError(path, number, f"expected a user id and at least one movie id, got {line!r}")
        if ids[0] in seen:
            raise DataFormatError(path, number, f"user {ids[0]} appears on more than one line")
        seen.add(ids[0])
        users.append(str(ids[0]))
        lengths.append(len(ids) - 1)
        items.extend(ids[1:])
    return users, np.asarray(lengths, dtype=np.int64), np.asarray(items, dtype=np.int64)


def read_rating_table(path: Path, sep: str, header: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``user<sep>item<sep>rating<sep>timestamp`` lines -> user, item, timestamp columns.

    With ``header`` (RecBole ``.inter``), columns are found by their ``user_id``/``item_id``/``timestamp`` names.
    """
    cols, width, rows = (0, 1, 3), 4, []
    for number, line in numbered_lines(path):
        fields = line.split(sep)
        if header and number == 1:
            names = [f.split(":")[0] for f in fields]
            if not {"user_id", "item_id", "timestamp"} <= set(names):
                raise DataFormatError(path, 1, f"header needs user_id, item_id, timestamp columns, got {names}")
            cols, width = (names.index("user_id"), names.index("item_id"), names.index("timestamp")), len(names)
            continue
        if len(fields) != width:
            raise DataFormatError(
                path, number, f"expected {width} {sep!r}-separated fields, got {len(fields)}: {line!r}"
            )
        rows.append(_ints(path, number, [fields[c] for c in cols], "integer user, item and timestamp"))
    table = np.asarray(rows, dtype=np.int64).reshape(-1, 3)
    return table[:, 0], table[:, 1], table[:, 2]


# ---- item metadata --------------------------------------------------------------------------


def read_movies_dat(path: Path) -> dict[str, tuple[str, str]]:
    """ML-1M ``MovieID::Title (Year)::Genre|Genre`` -> raw id -> (text, image)."""
    meta = {}
    for number, line in numbered_lines(path):
        fields = line.split("::")
        if len(fields) != 3 or not fields[0].isdigit():
            raise DataFormatError(path, number, f"expected 'MovieID::Title::Genres', got {line!r}")
        meta[fields[0]] = (item_text(fields[1], fields[2].split("|")), "")
    return meta


def read_recbole_items(path: Path) -> dict[str, tuple[str, str]]:
    """RecBole ``.item``: item_id, movie_title, release_year, class (space-separated genres)."""
    meta, names = {}, []
    for number, line in numbered_lines(path):
        fields = line.split("\t")
        if number == 1:
            names = [f.split(":")[0] for f in fields]
            if not {"item_id", "movie_title"} <= set(names):
                raise DataFormatError(path, 1, f"header needs item_id and movie_title columns, got {names}")
            continue
        if len(fields) != len(names):
            raise DataFormatError(path, number, f"expected {len(names)} tab-separated fields, got {len(fields)}")
        row = dict(zip(names, fields))
        genres = row.get("class", "").split()
        meta[row["item_id"]] = (item_text(row["movie_title"], genres, row.get("release_year", "")), "")
    return meta


def read_u_item(path: Path) -> dict[str, tuple[str, str]]:
    """GroupLens ML-100K ``u.item``: id|title|release date|video date|URL|19 genre flags."""
    meta = {}
    for number, line in numbered_lines(path):
        fields = line.split("|")
        if len(fields) != 5 + len(ML100K_GENRES) or not fields[0].isdigit():
            raise DataFormatError(
                path, number, f"expected {5 + len(ML100K_GENRES)} '|'-separated fields, got {len(fields)}"
            )
        genres = [g for g, flag in zip(ML100K_GENRES, fields[5:]) if flag.strip() == "1"]
        year = fields[2][-4:] if re.fullmatch(r".*\d{4}", fields[2]) else ""
        meta[fields[0]] = (item_text(fields[1], genres, year), "")
    return meta


# ---- readers per layout ----------------------------------------------------------------------


def ml1m_sequences(files: dict[str, Path]) -> RawData:
    users, lengths, movie_ids = read_sequences_file(files["ml-1m_sequences_original_ids.txt"])
    codes, item_ids = code_numeric(movie_ids)
    raw = RawData(users, lengths, codes, item_ids, [], [])
    return with_metadata(raw, read_movies_dat(files["movies.dat"]), [])


def ml1m_grouplens(files: dict[str, Path]) -> RawData:
    users, items, times = read_rating_table(files["ratings.dat"], "::")
    return raw_from_table(users, items, times, read_movies_dat(files["movies.dat"]), [])


def ml100k_recbole(files: dict[str, Path]) -> RawData:
    users, items, times = read_rating_table(files["ml-100k.inter"], "\t", header=True)
    return raw_from_table(users, items, times, read_recbole_items(files["ml-100k.item"]), [])


def ml100k_grouplens(files: dict[str, Path]) -> RawData:
    users, items, times = read_rating_table(files["u.data"], "\t")
    return raw_from_table(users, items, times, read_u_item(files["u.item"]), [])


# ---- registry entries ------------------------------------------------------------------------


@register_dataset
def ml_1m() -> DatasetSpec:
    return DatasetSpec(
        name="ml-1m",
        description="MovieLens-1M (GroupLens): 6,040 users, all 1,000,209 ratings as implicit feedback",
        layouts=(
            Layout("grouplens", ("ratings.dat", "movies.dat"), ml1m_grouplens, description="official ml-1m.zip"),
            Layout(
                "sequences",
                ("ml-1m_sequences_original_ids.txt", "movies.dat"),
                ml1m_sequences,
                description="shipped: chronological sequences with original ids (no timestamps)",
                checksums={
                    "ml-1m_sequences_original_ids.txt": "3b3803d72c034929ada18b2cbd114296261c012b7a3e10282543adeceba53fb1",
                    "movies.dat": "12d56985213881321ac5e64c82d7c926a1333f9b10003974144763f073aeeb4e",  # UTF-8 copy
                },
            ),
        ),
        text_fields=("title", "genres"),
        sources=(
            Source(
                f"{GROUPLENS}/ml-1m.zip",
                "ml-1m.zip",
                md5="c4d9eecfca2ab87c1945afe126590906",
                extract={f"ml-1m/{n}": n for n in ("ratings.dat", "movies.dat", "users.dat", "README")},
            ),
        ),
        paper_stats=(6040, 3416, 999611),
    )


@register_dataset
def ml_100k() -> DatasetSpec:
    return DatasetSpec(
        name="ml-100k",
        description="MovieLens-100K (GroupLens): 943 users, 100,000 ratings; not in the paper, small for tests",
        layouts=(
            Layout("grouplens", ("u.data", "u.item"), ml100k_grouplens, description="official ml-100k.zip"),
            Layout(
                "recbole",
                ("ml-100k.inter", "ml-100k.item"),
                ml100k_recbole,
                description="shipped RecBole atomic files",
                checksums={
                    "ml-100k.inter": "4edb74e2a81178c2ba9ff381495f754f996c4aea351b1272ca36b43da0935eff",
                    "ml-100k.item": "51d7cdf777ce5c0f5b32c1d947a4a81fe07d75e78abbe761e0cd4d0756064532",
                },
            ),
        ),
        text_fields=("title", "genres", "year"),
        sources=(
            Source(
                f"{GROUPLENS}/ml-100k.zip",
                "ml-100k.zip",
                md5="0e33842e24a9c977be4e0107933c0723",
                extract={f"ml-100k/{n}": n for n in ("u.data", "u.item", "u.user", "u.genre", "README")},
            ),
        ),
    )
