"""Writing files that a reader, a crash or a full disk never leaves half written.

The segment writer, crash recovery, retention, the video exporter and the
simulator's truth file all write this way; this module is the one place that
knows how.

Contracts:
- `replace_file(path, data, fsync)` writes `data` to a temporary `.NAME.tmp`
  beside `path` and renames it over `path` (`os.replace`): readers see the old
  file or the new one, never a mix. With `fsync` the data is on disk before the
  rename. On any failure the temporary file is removed and the error raised;
  `path` is untouched.
- `write_json(path, data, fsync)` is `replace_file` with `data` as indented
  JSON and a final newline (the sidecar format).
- `append_bytes(path, data, fsync, line_end)` is the one way autorec appends
  to a file (the index, the journal, the near-misses, the score track's gzip
  members; the daily logs' `LogWriter` opens the same way): opened through
  `open_nofollow`, and if the write fails (ENOSPC) the file is cut back to
  its old size, so no half record or half gzip member remains, and the error
  is raised. With `line_end`, a file that does not end in a newline (a line
  cut by a crash) gets one first, so the new line is never glued to the
  damaged one.
- `append_json_line(path, entry, fsync)` appends one compact JSON line (the
  `index.jsonl` format) through `append_bytes`.
- JSON is written with `finite_json`: a NaN or an infinity (which JSON does
  not have, and other readers reject) becomes `null`.
- `partial_file(path, fsync)` is for outputs written piece by piece (exports):
  a context manager giving a binary file open on a fresh `PATH.partial`
  (`O_EXCL`, no link followed), renamed to `path` when the block ends normally
  (synced first with `fsync`) and removed when it raises, so a crash or an
  error never leaves a half file under `path`; at worst a `.partial` one, which
  the next export replaces and retention removes with its segment. The partial
  is locked (`flock`) while written: a second export of the same file at the
  same time (the web UI's and the export queue's) fails with EBUSY instead of
  removing the first one's partial, and a partial without a lock is stale
  (`remove_stale_partial(path)` removes only such a one).
- `fsync_path(path)` syncs a file or a directory (a directory to make renames
  and new names in it durable); errors are raised.
- Nothing is ever written through a symbolic link: a link planted in the
  output directory must not make autorec truncate or append to its target.
  `open_nofollow(path, flags)` opens without following a final link and
  raises `SymlinkRefused` (an OSError naming the path) for one; anything but a
  regular file (a FIFO, a device, a directory planted under the name) is
  refused too (`NotRegularFile`), without blocking: a FIFO is opened with
  O_NONBLOCK. Every file autorec creates or appends to is opened through it. The temporary file of
  `replace_file` is created fresh (`O_EXCL`, a stale one unlinked first), and
  the rename replaces a link at `path` itself, never its target.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import math
import os
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

from autorec.outdir import OPEN_SUFFIX


class SymlinkRefused(OSError):
    """autorec was about to write to a path that is a symbolic link."""

    def __str__(self) -> str:
        return f"{self.filename}: {self.strerror}"


class NotRegularFile(OSError):
    """autorec was about to write to something that is not a regular file (a FIFO, a device)."""

    def __str__(self) -> str:
        return f"{self.filename}: {self.strerror}"


def open_nofollow(path: str | os.PathLike[str], flags: int, mode: int = 0o644) -> int:
    """`os.open(path, flags | O_NOFOLLOW | O_CLOEXEC, mode)` of a regular file; a link at `path` raises
    `SymlinkRefused`, anything else but a regular file `NotRegularFile` (a FIFO never blocks the open)."""
    try:
        fd = os.open(path, flags | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK, mode)
    except OSError as exc:
        if exc.errno == errno.ENXIO:  # a FIFO without a reader, opened for writing without blocking
            raise NotRegularFile(errno.ENXIO, "is not a regular file: autorec only writes files", str(path)) from None
        # ELOOP is what O_NOFOLLOW gives for a link; EEXIST with O_EXCL may be a link too.
        if exc.errno in (errno.ELOOP, errno.EEXIST, errno.EMLINK) and os.path.islink(path):
            raise SymlinkRefused(
                errno.ELOOP, "is a symbolic link: autorec never writes through links (remove it)", str(path)
            ) from None
        raise
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise NotRegularFile(errno.EINVAL, "is not a regular file: autorec only writes files", str(path))
        fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) & ~os.O_NONBLOCK)
    except BaseException:
        os.close(fd)
        raise
    return fd


def finite_json(value: Any) -> Any:
    """`value` with every NaN or infinity (at any depth of dicts, lists and tuples) replaced by None."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: finite_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite_json(v) for v in value]
    return value


def dumps(data: Any, **kwargs: Any) -> str:
    """`json.dumps` that never writes NaN or Infinity (see `finite_json`)."""
    try:
        return json.dumps(data, allow_nan=False, **kwargs)
    except ValueError:
        return json.dumps(finite_json(data), allow_nan=False, **kwargs)


def replace_file(path: str | os.PathLike[str], data: bytes, fsync: bool = False) -> None:
    path = Path(path)
    with _renamed_into_place(path.with_name(f".{path.name}.tmp"), path, fsync) as f:
        f.write(data)


def write_json(path: str | os.PathLike[str], data: Any, fsync: bool = False) -> None:
    replace_file(path, (dumps(data, indent=1) + "\n").encode(), fsync)


def append_bytes(path: str | os.PathLike[str], data: bytes, fsync: bool = False, line_end: bool = False) -> int:
    """Append `data` whole or not at all (see the module docstring); returns the bytes written."""
    fd = open_nofollow(path, os.O_RDWR | os.O_APPEND | os.O_CREAT)  # read: the last byte, for `line_end`
    try:
        size = os.fstat(fd).st_size
        if line_end and size and os.pread(fd, 1, size - 1) != b"\n":
            data = b"\n" + data
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            if fsync:
                os.fsync(fd)
        except OSError:
            with contextlib.suppress(OSError):
                os.ftruncate(fd, size)
            raise
    finally:
        os.close(fd)
    return len(data)


def append_json_line(path: str | os.PathLike[str], entry: Any, fsync: bool = True) -> None:
    append_bytes(path, (dumps(entry, separators=(",", ":")) + "\n").encode(), fsync, line_end=True)


def same_file(path: str | os.PathLike[str], fd: int) -> bool:
    """Whether `path` still names the file open as `fd` (not deleted, not replaced by another file)."""
    try:
        st = os.stat(path, follow_symlinks=False)
    except OSError:
        return False
    own = os.fstat(fd)
    return (st.st_ino, st.st_dev) == (own.st_ino, own.st_dev)


PARTIAL_SUFFIX = OPEN_SUFFIX  # autorec.outdir: what a file is named while it is written
BUSY = "being written by another export right now"  # the EBUSY message of `partial_file`


def partial_path(path: str | os.PathLike[str]) -> Path:
    """Where `partial_file` writes `path` until it is complete: `PATH.partial`."""
    path = Path(path)
    return path.with_name(path.name + PARTIAL_SUFFIX)


@contextlib.contextmanager
def partial_file(path: str | os.PathLike[str], fsync: bool = True) -> Iterator[BinaryIO]:
    """A binary file that becomes `path` only if the block completes (see the module docstring)."""
    tmp = partial_path(path)
    fd = _claim(tmp)
    with _renamed_into_place(tmp, Path(path), fsync, fd) as f:
        yield f


def _claim(tmp: Path) -> int:
    """`tmp` created fresh and locked (`flock`) for this writer. A stale one (a killed writer: no lock)
    or a planted link is removed first; one another writer holds raises OSError EBUSY, untouched."""
    import fcntl

    for _ in range(5):
        try:
            fd = open_nofollow(tmp, os.O_RDWR | os.O_CREAT | os.O_EXCL)
        except SymlinkRefused:
            os.unlink(tmp)  # removing a link leaves its target alone
            continue
        except FileExistsError:
            try:
                other = open_nofollow(tmp, os.O_RDONLY)
            except (FileNotFoundError, SymlinkRefused):
                continue  # gone meanwhile, or became a link: look again
            try:
                fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise OSError(errno.EBUSY, BUSY, str(tmp)) from None
            finally:
                os.close(other)
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)  # stale: its writer is gone
            continue
        fcntl.flock(fd, fcntl.LOCK_EX)  # held until closed; a writer checking for staleness waits a moment
        return fd
    raise OSError(errno.EBUSY, "could not claim it (other writers keep replacing it)", str(tmp))


def remove_stale_partial(path: str | os.PathLike[str]) -> bool:
    """Remove `path`'s partial (`PATH.partial`) if no writer holds it (a killed export's); True if removed."""
    import fcntl

    tmp = partial_path(path)
    try:
        fd = open_nofollow(tmp, os.O_RDONLY)
    except SymlinkRefused:
        os.unlink(tmp)
        return True
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False  # another export is writing it
    finally:
        os.close(fd)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(tmp)
    return True


@contextlib.contextmanager
def _renamed_into_place(tmp: Path, path: Path, fsync: bool, fd: int | None = None) -> Iterator[BinaryIO]:
    """Write `tmp` (the claimed `fd`, or created fresh here: a stale one or a planted link removed
    first, never followed); renamed over `path` when the block ends (synced first with `fsync`),
    removed when it raises, but only while it is still this writer's file."""
    if fd is None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)  # a stale one (a crash), or a planted link: removing a link leaves its target alone
        fd = open_nofollow(tmp, os.O_RDWR | os.O_CREAT | os.O_EXCL)
    ours = os.fstat(fd).st_ino

    def still_ours() -> bool:
        try:
            return os.stat(tmp, follow_symlinks=False).st_ino == ours
        except OSError:
            return False

    try:
        with os.fdopen(fd, "w+b") as f:
            yield f
            f.flush()
            if fsync:
                # The rename must not land before the data: a power cut would leave a broken file under the name.
                os.fsync(f.fileno())
            if not still_ours():
                raise OSError(errno.EBUSY, "replaced by another writer while being written", str(tmp))
            os.replace(tmp, path)  # while the file (and its lock) is still open
    except BaseException:
        if still_ours():
            with contextlib.suppress(OSError):
                os.unlink(tmp)
        raise


def fsync_path(path: str | os.PathLike[str]) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
