"""Fetch a dataset's official files: stream to a temp file, verify, then rename (never a partial file)."""

from __future__ import annotations

import gzip
import hashlib
import shutil
import tempfile
import urllib.request
import zipfile
from pathlib import Path

from harness.data.errors import ChecksumError, DataError
from harness.atomic import atomic_path
from harness.data.paths import dataset_folder
from harness.data.registry import Source, get_spec
from harness.progress import progress


def _stream(url: str, dest: Path, timeout: float) -> dict[str, str]:
    """Copy ``url`` into ``dest``; return its sha256 and md5; fail on a short read."""
    digests = {"sha256": hashlib.sha256(), "md5": hashlib.md5()}
    written = 0
    with urllib.request.urlopen(url, timeout=timeout) as response, open(dest, "wb") as out:
        total = response.headers.get("Content-Length")
        with progress(
            total=int(total) if total else None, unit="B", unit_scale=True, desc=Path(url).name, leave=False
        ) as bar:
            while block := response.read(1 << 20):
                out.write(block)
                for h in digests.values():
                    h.update(block)
                written += len(block)
                bar.update(len(block))
    if total is not None and written != int(total):
        raise DataError(f"{url}: incomplete download ({written} of {total} bytes); nothing was kept")
    return {name: h.hexdigest() for name, h in digests.items()}


def _check_gzip(path: Path, url: str) -> None:
    """Read a .gz to the end so its CRC is checked (used when no checksum is published)."""
    try:
        with gzip.open(path, "rb") as f:
            while f.read(1 << 24):
                pass
    except (OSError, EOFError) as e:
        raise DataError(f"{url}: downloaded gzip is corrupt or truncated ({e}); nothing was kept") from None


def download(source: Source, dest: Path, timeout: float = 60.0) -> Path:
    """Download ``source`` to ``dest`` atomically, verifying its sha256/md5 (or gzip CRC)."""
    with atomic_path(dest) as tmp:
        digests = _stream(source.url, tmp, timeout)
        for algo in ("sha256", "md5"):
            expected = getattr(source, algo)
            if expected and digests[algo] != expected.lower():
                raise ChecksumError(source.url, expected, digests[algo], algo)
        if not (source.sha256 or source.md5) and dest.name.endswith(".gz"):
            _check_gzip(tmp, source.url)
    return dest


def _extract(archive: Path, members: dict[str, str], folder: Path) -> list[Path]:
    """Copy the named zip members into ``folder``, each file atomically."""
    out = []
    with zipfile.ZipFile(archive) as zf:
        missing = [m for m in members if m not in zf.namelist()]
        if missing:
            raise DataError(f"{archive.name}: archive lacks {', '.join(missing)}")
        for member, name in members.items():
            with atomic_path(folder / name) as tmp, zf.open(member) as src, open(tmp, "wb") as dst:
                shutil.copyfileobj(src, dst)
            out.append(folder / name)
    return out


def fetch_source(source: Source, folder: Path, timeout: float = 60.0) -> list[Path]:
    """Fetch one source into ``folder``: a plain file, or a zip whose members are extracted."""
    folder.mkdir(parents=True, exist_ok=True)
    if not source.extract:
        return [download(source, folder / source.filename, timeout)]
    with tempfile.TemporaryDirectory(dir=folder, prefix=".fetch-") as tmpdir:
        archive = download(source, Path(tmpdir) / source.filename, timeout)
        return _extract(archive, source.extract, folder)


def fetch_dataset(
    name: str, data_dir: str | Path | None = None, force: bool = False, timeout: float = 60.0
) -> list[Path]:
    """Download the official files of ``name`` into ``<data_dir>/<name>/`` (skips what is present)."""
    spec = get_spec(name)
    if not spec.sources:
        raise DataError(f"{name}: no official online source is registered")
    folder = dataset_folder(name, data_dir)
    paths = []
    for source in spec.sources:
        targets = list(source.extract.values()) if source.extract else [source.filename]
        if not force and all((folder / t).is_file() for t in targets):
            paths += [folder / t for t in targets]
            continue
        paths += fetch_source(source, folder, timeout)
    return paths
