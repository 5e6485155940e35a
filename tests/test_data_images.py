"""``harness data images``: a local HTTP server on 127.0.0.1 serves good, missing, corrupt, slow and flaky images."""

from __future__ import annotations

import io
import json
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from PIL import Image

from harness.data.images import IMAGE_DIR, STATUS_FILE, download_images, file_stem, local_images, read_status


def _jpeg(color: tuple[int, int, int]) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (32, 24), color).save(buf, "JPEG")
    return buf.getvalue()


GOOD = {f"/good{k}.jpg": _jpeg((40 * k, 100, 200)) for k in range(4)}
BODIES = {
    "/corrupt.jpg": b"\xff\xd8\xff\xe0 definitely not a jpeg",
    "/truncated.jpg": GOOD["/good0.jpg"][:200],
    "/page.html": b"<html>not an image</html>",
}


class Server:
    """Serves GOOD and BODIES, 404 for anything else, sleeps on /slow*, answers 503 once on /flaky*."""

    def __init__(self):
        self.hits: Counter[str] = Counter()
        self.extra: dict[str, bytes] = {}
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 - http.server's name
                outer.hits[self.path] += 1
                if self.path.startswith("/slow"):
                    time.sleep(1.5)
                if self.path.startswith("/flaky") and outer.hits[self.path] == 1:
                    return self.send_error(503)
                body = {**GOOD, **BODIES, **outer.extra}.get(self.path)
                if body is None and self.path.startswith("/flaky"):
                    body = GOOD["/good1.jpg"]
                if body is None:
                    return self.send_error(404)
                self.send_response(200)
                self.send_header("Content-Type", "image/jpeg")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):  # keep pytest output clean
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True  # a sleeping /slow handler must not hold up shutdown
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()


@pytest.fixture
def server():
    s = Server()
    yield s
    s.httpd.shutdown()
    s.httpd.server_close()


ITEMS = {  # item id -> path on the server
    "a": "/good0.jpg",
    "b": "/good1.jpg",
    "c/with:odd chars": "/good2.jpg",
    "d": "/good3.jpg",
    "gone": "/missing.jpg",
    "bad": "/corrupt.jpg",
    "cut": "/truncated.jpg",
    "html": "/page.html",
    "slow": "/slow.jpg",
    "flaky": "/flaky.jpg",
}


def _run(folder: Path, server: Server, **kw):
    ids = [*ITEMS, "local", "none"]
    refs = [server.url + p for p in ITEMS.values()] + ["/some/local.png", ""]
    report = download_images(folder, ids, refs, workers=4, timeout=0.5, retries=1, **kw)
    return ids, refs, report


def test_good_images_land_failures_are_recorded_and_a_rerun_fetches_only_what_is_missing(tmp_path, server):
    ids, refs, report = _run(tmp_path, server)
    good = ["a", "b", "c/with:odd chars", "d", "flaky"]
    assert (report.wanted, report.present, report.fetched) == (10, 0, 5)
    assert sorted(report.failed) == sorted(["gone", "bad", "cut", "html", "slow"])
    assert report.failed["gone"].startswith("HTTP 404")
    assert all(report.failed[i].startswith("corrupt image") for i in ("bad", "cut", "html"))
    assert "timed out" in report.failed["slow"].lower()
    assert server.hits["/missing.jpg"] == 1 and server.hits["/flaky.jpg"] == 2  # 404 is not retried, 503 is

    status = read_status(tmp_path)
    assert {i: status[i]["status"] for i in ITEMS} == {i: "ok" if i in good else "failed" for i in ITEMS}
    for item in good:  # each good file is the server's image, decodable, under a safe name
        path = tmp_path / IMAGE_DIR / status[item]["file"]
        assert path.name == file_stem(item) + ".jpg" and "/" not in status[item]["file"]
        Image.open(path).load()
    assert status["a"]["file"] == "a.jpg" and (tmp_path / IMAGE_DIR / "a.jpg").read_bytes() == GOOD["/good0.jpg"]
    kept = {p.name for p in (tmp_path / IMAGE_DIR).iterdir()} - {STATUS_FILE}
    assert kept == {status[i]["file"] for i in good}  # nothing of the failures, no temp files

    resolved = local_images(tmp_path, ids, refs)
    assert resolved[0] == str((tmp_path / IMAGE_DIR / "a.jpg").resolve())
    assert resolved[ids.index("gone")] == refs[ids.index("gone")]  # failures keep their URL
    assert resolved[-2:] == ["/some/local.png", ""]

    server.extra["/missing.jpg"] = GOOD["/good3.jpg"]  # the missing image appears upstream
    (tmp_path / IMAGE_DIR / "b.jpg").unlink()  # and a good file is lost locally
    before = Counter(server.hits)
    _, _, again = _run(tmp_path, server)
    fetched_again = {p for p in ITEMS.values() if server.hits[p] > before[p]}
    assert fetched_again == {"/good1.jpg", "/missing.jpg", "/corrupt.jpg", "/truncated.jpg", "/page.html", "/slow.jpg"}
    assert (again.present, again.fetched, sorted(again.failed)) == (4, 2, ["bad", "cut", "html", "slow"])
    assert read_status(tmp_path)["gone"]["status"] == "ok"


def test_a_changed_url_is_fetched_again_and_a_cut_status_line_is_ignored(tmp_path, server):
    download_images(tmp_path, ["a"], [server.url + "/good0.jpg"], timeout=2)
    with open(tmp_path / IMAGE_DIR / STATUS_FILE, "a") as f:
        f.write('{"item": "a", "url": "htt')  # a run killed mid-line
    assert read_status(tmp_path)["a"]["status"] == "ok"
    new = server.url + "/good2.jpg"
    assert local_images(tmp_path, ["a"], [new]) == [new]  # the local file is for the old URL
    report = download_images(tmp_path, ["a"], [new], timeout=2)
    assert report.fetched == 1 and (tmp_path / IMAGE_DIR / "a.jpg").read_bytes() == GOOD["/good2.jpg"]
    records = [json.loads(x) for x in (tmp_path / IMAGE_DIR / STATUS_FILE).read_text().splitlines()[-1:]]
    assert records[0]["url"] == new


def test_cli_on_a_csv_dataset_points_items_at_the_downloaded_files(tmp_path, server):
    from harness.data import load_dataset
    from harness.data.cli import main

    folder = tmp_path / "shop"
    folder.mkdir()
    rows = [f"u{u},p{i},{10 * u + i}" for u in range(6) for i in range(6) if i != u]
    (folder / "interactions.csv").write_text("user_id,item_id,timestamp\n" + "\n".join(rows) + "\n")
    urls = {f"p{k}": server.url + (f"/good{k}.jpg" if k < 4 else "/missing.jpg") for k in range(6)}
    (folder / "items.csv").write_text("item_id,title,image_url\n" + "".join(f"{k},T{k},{u}\n" for k, u in urls.items()))
    args = ["images", "--dataset", "shop", "--data-dir", str(tmp_path), "--timeout", "2", "--workers", "2"]
    assert main(args) == 0
    items = load_dataset("shop", tmp_path).items
    images = dict(zip(items.raw_ids, items.images))
    assert images["p0"] == str((folder / IMAGE_DIR / "p0.jpg").resolve()) and Image.open(images["p2"]).size == (32, 24)
    assert images["p4"] == urls["p4"]  # a failure keeps its URL (the encoders record it as a failed row)
