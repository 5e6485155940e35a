"""One writer per feature folder: advisory ``fcntl.flock`` locks on two files inside it.

``.lock`` (exclusive) is the *job* lock. Rank 0 of an encode job takes it before it looks at the
folder and holds it until the job's last collective: planning, the resume scan, cleaning temporaries,
``--overwrite`` and the merge all happen under it, and the other ranks only write after rank 0 holds
it (they wait for rank 0's broadcast of the pending chunks). A second job waits for it (or fails with
``--no-wait``); ``--overwrite`` never waits: it is refused while another job holds the folder.

``.writers.lock`` is the *writer* lock. Every rank holds it shared while it writes shards; rank 0 takes
it exclusively before it deletes temporary files, sets corrupt shards aside or clears the folder. So
when a job's rank 0 dies but its other ranks are still encoding (a launcher that does not kill the
survivors), the next job waits for them to exit instead of deleting the files they are writing.

flock locks belong to the open file: the kernel drops them when the process exits, however it exits
(SIGKILL included), so a dead job never leaves the folder locked. They are reliable on local disks;
on NFS, Linux emulates them with POSIX byte-range locks (works where the server supports locking);
on Lustre / GPFS they need the ``flock`` mount option. See docs/RELIABILITY.md.
"""

from __future__ import annotations

import datetime
import fcntl
import os
import socket
import sys
from collections.abc import Callable
from pathlib import Path

LOCK_NAME = ".lock"
WRITERS_NAME = ".writers.lock"


class FolderLocked(RuntimeError):
    """The feature folder is in use by another encode job (and we were told not to wait)."""


def _holder(path: Path) -> str:
    """Who holds the job lock, as its holder wrote it (pid, host, start time, command)."""
    try:
        text = path.read_text().strip()
    except OSError:
        text = ""
    return text or "another process"


class FolderLock:
    """An advisory lock on one file in ``folder`` (exclusive unless ``shared``)."""

    def __init__(self, folder: Path, name: str = LOCK_NAME, shared: bool = False):
        self.path, self.shared = Path(folder) / name, shared
        self._fh = None

    @property
    def held(self) -> bool:
        return self._fh is not None

    def acquire(self, wait: bool = True, say: Callable[[str], None] | None = None, why: str = "") -> FolderLock:
        """Take the lock; if it is busy, say so and block (``wait``) or raise ``FolderLocked``."""
        if self._fh is not None:
            return self
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fh = open(self.path, "a+")  # noqa: SIM115 - held open for as long as the lock is
        mode = fcntl.LOCK_SH if self.shared else fcntl.LOCK_EX
        try:
            try:
                fcntl.flock(fh.fileno(), mode | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = _holder(self.path) if self.path.name == LOCK_NAME else "processes of an earlier job"
                message = f"{self.path.parent} is in use: {holder}"
                if not wait:
                    raise FolderLocked(f"{message}. {why}".strip()) from None
                (say or _stderr)(f"{message}; waiting for it to finish{f' ({why})' if why else ''}")
                fcntl.flock(fh.fileno(), mode)
        except BaseException:
            fh.close()
            raise
        if not self.shared:  # the holder's card, read by whoever finds the lock busy
            fh.seek(0)
            fh.truncate()
            since = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
            fh.write(f"encode job pid {os.getpid()} on {socket.gethostname()} since {since}: {' '.join(sys.argv)[:300]}\n")
            fh.flush()
        self._fh = fh
        return self

    def release(self) -> None:
        """Drop the lock (closing the file drops it; so does the process exiting)."""
        if self._fh is not None:
            if not self.shared:
                self._fh.truncate(0)
            self._fh.close()
            self._fh = None

    def __enter__(self) -> FolderLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)
