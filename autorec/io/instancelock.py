"""One recorder per output directory: an advisory lock file holding PID and host.

Contract:
- `InstanceLock(directory).acquire()` takes an exclusive, non-blocking
  `fcntl.flock` on `directory/.autorec.lock` and writes `pid host started`
  into it as one JSON line. A second holder (another process, or another
  `InstanceLock` in the same process) gets `InstanceLockError` naming the
  holder's PID and host; the CLI turns it into exit code 2.
- The kernel drops a flock when its process dies (also on SIGKILL), so a
  lock file left behind by a dead recorder is simply taken over; what it
  said about the dead holder is kept in `previous` so the caller can log it.
- `release()` unlinks the file and then unlocks. Because another process may
  have opened the old file just before it was unlinked, `acquire()` checks
  after locking that the path still names the file it locked, and retries
  otherwise: two holders can never both believe they own the directory.
- The lock is local to one kernel: on NFS, `flock` may not be shared between
  hosts, which is why the host name is recorded for humans to read.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import time
from dataclasses import dataclass
from pathlib import Path

from autorec.io.atomicfile import open_nofollow
from autorec.outdir import LOCK_NAME


class InstanceLockError(RuntimeError):
    """The output directory is already locked by another recorder."""


@dataclass(frozen=True)
class LockHolder:
    """What a lock file says about whoever wrote it."""

    pid: int | None
    host: str | None
    started: float | None

    def describe(self) -> str:
        who = f"pid {self.pid}" if self.pid is not None else "unknown pid"
        if self.host:
            who += f" on {self.host}"
        if self.started is not None:
            who += f", started {time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(self.started))}"
        return who


def parse_holder(text: str) -> LockHolder | None:
    """The holder described by a lock file's text, or None if it is empty or unreadable."""
    text = text.strip()
    if not text:
        return None
    try:
        data = json.loads(text)
    except ValueError:
        return LockHolder(None, None, None)
    if not isinstance(data, dict):
        return LockHolder(None, None, None)
    pid = data.get("pid")
    host = data.get("host")
    started = data.get("started")
    return LockHolder(
        pid if isinstance(pid, int) else None,
        host if isinstance(host, str) else None,
        float(started) if isinstance(started, (int, float)) else None,
    )


def read_holder(directory: str | os.PathLike[str]) -> LockHolder | None:
    """What the lock file in `directory` currently says (None if there is none). Never raises."""
    try:
        return parse_holder((Path(directory) / LOCK_NAME).read_text(errors="replace"))
    except OSError:
        return None


class InstanceLock:
    """Exclusive ownership of one output directory. See the module docstring."""

    def __init__(self, directory: str | os.PathLike[str]):
        self.directory = Path(directory)
        self.path = self.directory / LOCK_NAME
        self._fd: int | None = None
        self.previous: LockHolder | None = None  # a dead holder whose lock was taken over

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> None:
        """Take the lock or raise `InstanceLockError` (another live holder) / `OSError` (I/O)."""
        if self._fd is not None:
            return
        # A few rounds at most: each retry means a holder released while we were opening.
        for _ in range(10):
            fd = open_nofollow(self.path, os.O_RDWR | os.O_CREAT)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = _read_fd(fd)
                os.close(fd)
                who = holder.describe() if holder else "another process"
                raise InstanceLockError(
                    f"{self.directory} is already being recorded by autorec ({who}); "
                    f"lock file {self.path}. Stop that recorder or choose another output directory."
                ) from None
            except BaseException:
                os.close(fd)
                raise
            if not _same_file(fd, self.path):
                # The previous holder unlinked this file after we opened it: lock the new one.
                os.close(fd)
                continue
            self.previous = _read_fd(fd)
            try:
                _write_fd(fd, {"pid": os.getpid(), "host": socket.gethostname(), "started": time.time()})
            except BaseException:
                os.close(fd)
                raise
            self._fd = fd
            return
        raise InstanceLockError(f"could not lock {self.path}: it keeps being replaced by another process")

    def release(self) -> None:
        """Give the directory up. Safe to call twice."""
        fd, self._fd = self._fd, None
        if fd is None:
            return
        try:
            # Unlink while still locked, so nobody can lock this inode and then see it vanish.
            if _same_file(fd, self.path):
                self.path.unlink()
        except OSError:
            pass
        finally:
            os.close(fd)

    def __enter__(self) -> InstanceLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def _same_file(fd: int, path: Path) -> bool:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return False
    own = os.fstat(fd)
    return (st.st_dev, st.st_ino) == (own.st_dev, own.st_ino)


def _read_fd(fd: int) -> LockHolder | None:
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        return parse_holder(os.read(fd, 4096).decode(errors="replace"))
    except OSError:
        return None


def _write_fd(fd: int, data: dict[str, object]) -> None:
    blob = (json.dumps(data) + "\n").encode()
    os.ftruncate(fd, 0)
    os.lseek(fd, 0, os.SEEK_SET)
    os.write(fd, blob)
