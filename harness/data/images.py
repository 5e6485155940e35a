"""Item images on disk: download a dataset's image URLs into ``<folder>/images/`` and point items at them.

``images/status.jsonl`` holds one record per finished attempt (the last record of an item wins):
``{"item", "url", "status": "ok" | "failed", "file" | "error", "attempts"}``. A rerun skips items
whose good file is still there for the same URL, so it fetches only what is missing or failed.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

from harness.data.download import fetch_image
from harness.atomic import atomic_path
from harness.progress import progress

IMAGE_DIR = "images"
STATUS_FILE = "status.jsonl"


def is_url(ref: str) -> bool:
    return ref.startswith(("http://", "https://"))


def file_stem(item: str) -> str:
    """A safe file name for an item id; ids that needed changing get a hash so two never collide."""
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", item)[:80]
    return safe if safe == item else f"{safe}-{hashlib.sha256(item.encode()).hexdigest()[:8]}"


def read_status(folder: Path) -> dict[str, dict]:
    """Item id -> its last status record (empty when nothing was downloaded yet)."""
    path = folder / IMAGE_DIR / STATUS_FILE
    if not path.is_file():
        return {}
    out = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:  # a line cut by a killed run: that item is simply fetched again
            continue
        if isinstance(record, dict) and "item" in record:
            out[str(record["item"])] = record
    return out


def _good_file(folder: Path, record: dict | None, url: str) -> Path | None:
    if not record or record.get("status") != "ok" or record.get("url") != url:
        return None
    path = folder / IMAGE_DIR / str(record.get("file", ""))
    return path if path.is_file() else None


def local_images(folder: Path, item_ids: list[str], images: list[str]) -> list[str]:
    """``images`` with every downloaded URL replaced by the absolute path of its local file."""
    status = read_status(folder)
    if not status:
        return list(images)
    out = []
    for item, ref in zip(item_ids, images):
        path = _good_file(folder, status.get(item), ref) if is_url(ref) else None
        out.append(str(path.resolve()) if path is not None else ref)
    return out


@dataclass
class ImageReport:
    """What one ``download_images`` call did."""

    wanted: int  # items with an image URL
    present: int  # already downloaded before this call
    fetched: int
    failed: dict[str, str]  # item id -> reason


def _download_one(folder: Path, item: str, url: str, timeout: float, retries: int) -> dict:
    got = fetch_image(url, timeout=timeout, retries=retries)
    record = {"item": item, "url": url, "attempts": got.attempts}
    if got.data is None:
        return {**record, "status": "failed", "error": got.error}
    name = file_stem(item) + got.extension
    with atomic_path(folder / IMAGE_DIR / name) as tmp:
        tmp.write_bytes(got.data)
    return {**record, "status": "ok", "file": name}


def _todo(folder: Path, item_ids: list[str], images: list[str]) -> Iterator[tuple[str, str]]:
    status = read_status(folder)
    for item, url in zip(item_ids, images):
        if is_url(url) and _good_file(folder, status.get(item), url) is None:
            yield item, url


def _open_log(path: Path):
    """Append to the status file, first ending a line a killed run left unfinished."""
    cut = path.is_file() and path.stat().st_size and not path.read_bytes().endswith(b"\n")
    log = open(path, "a", encoding="utf-8")
    if cut:
        log.write("\n")
    return log


def download_images(
    folder: Path, item_ids: list[str], images: list[str], *, workers: int = 16, timeout: float = 10.0, retries: int = 2
) -> ImageReport:
    """Download every item's image URL not yet on disk into ``<folder>/images/``, ``workers`` at a time."""
    wanted = sum(1 for url in images if is_url(url))
    todo = list(_todo(folder, item_ids, images))
    (folder / IMAGE_DIR).mkdir(parents=True, exist_ok=True)
    fetched, failed = 0, {}
    with (
        ThreadPoolExecutor(max_workers=max(1, workers)) as pool,
        _open_log(folder / IMAGE_DIR / STATUS_FILE) as log,
    ):
        futures = [pool.submit(_download_one, folder, item, url, timeout, retries) for item, url in todo]
        for future in progress(as_completed(futures), total=len(futures), desc="images", unit=" img"):
            record = future.result()
            log.write(json.dumps(record) + "\n")
            log.flush()  # written as each item finishes: a killed run keeps what it fetched
            if record["status"] == "ok":
                fetched += 1
            else:
                failed[record["item"]] = record["error"]
    return ImageReport(wanted, wanted - len(todo), fetched, failed)
