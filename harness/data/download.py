"""Fetch one image URL: retries with backoff, a timeout per attempt, a size cap, and a PIL check.

A download is kept only when PIL decodes it completely, so a corrupt or truncated body never
becomes a "good" image. Failures are returned as a reason string, never raised.
"""

from __future__ import annotations

import io
import time
import urllib.error
import urllib.request
from dataclasses import dataclass

from PIL import Image

USER_AGENT = "kdsr-harness/0.1 (image fetcher)"
MAX_BYTES = 32 << 20  # larger bodies are refused: no product image is that big
_EXTENSIONS = {"JPEG": ".jpg", "PNG": ".png", "GIF": ".gif", "WEBP": ".webp", "BMP": ".bmp", "TIFF": ".tif"}
_DECODE_ERRORS = (OSError, ValueError, SyntaxError, Image.DecompressionBombError)
_PERMANENT = (400, 401, 403, 404, 410)  # client errors: retrying does not help


@dataclass
class Fetched:
    """The outcome of one URL: ``data`` and ``extension`` when good, else ``error``."""

    data: bytes | None = None
    extension: str = ""
    error: str = ""
    attempts: int = 0


def image_extension(data: bytes) -> str:
    """The file extension of a fully decodable image; raises on anything PIL cannot decode."""
    with Image.open(io.BytesIO(data)) as img:
        img.load()  # decode every pixel: truncated files fail here
        return _EXTENSIONS.get(img.format or "", ".img")


def _get(url: str, timeout: float) -> bytes:
    request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        data = response.read(MAX_BYTES + 1)
        expected = response.headers.get("Content-Length")
    if len(data) > MAX_BYTES:
        raise ValueError(f"larger than {MAX_BYTES >> 20} MiB")
    if expected is not None and len(data) != int(expected):
        raise ValueError(f"incomplete body ({len(data)} of {expected} bytes)")
    return data


def fetch_image(url: str, timeout: float = 10.0, retries: int = 2, backoff: float = 0.5) -> Fetched:
    """Download and verify one image; transient errors are retried ``retries`` times."""
    error = ""
    for attempt in range(1, retries + 2):
        try:
            data = _get(url, timeout)
        except urllib.error.HTTPError as e:
            error = f"HTTP {e.code} {e.reason}"
            if e.code in _PERMANENT:
                return Fetched(error=error, attempts=attempt)
        except (urllib.error.URLError, TimeoutError, OSError, ValueError) as e:
            reason = getattr(e, "reason", e)
            error = f"download failed: {type(reason).__name__}: {reason}"
        else:
            try:
                return Fetched(data=data, extension=image_extension(data), attempts=attempt)
            except _DECODE_ERRORS as e:
                return Fetched(error=f"corrupt image ({len(data)} bytes): {e}", attempts=attempt)
        if attempt <= retries:
            time.sleep(backoff * 2 ** (attempt - 1))
    return Fetched(error=error, attempts=retries + 1)
