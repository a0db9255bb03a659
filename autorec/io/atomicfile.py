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
- `append_json_line(path, entry, fsync)` appends one compact JSON line (the
  `index.jsonl` format); if the write fails (ENOSPC) the file is cut back to
  its old size, so no half line remains, and the error is raised.
- `fsync_path(path)` syncs a file or a directory (a directory to make renames
  and new names in it durable); errors are raised.
- Nothing is ever written through a symbolic link: a link planted in the
  output directory must not make autorec truncate or append to its target.
  `open_nofollow(path, flags)` opens without following a final link and
  raises `SymlinkRefused` (an OSError naming the path) for one; every file
  autorec creates or appends to is opened through it. The temporary file of
  `replace_file` is created fresh (`O_EXCL`, a stale one unlinked first), and
  the rename replaces a link at `path` itself, never its target.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
from pathlib import Path
from typing import Any


class SymlinkRefused(OSError):
    """autorec was about to write to a path that is a symbolic link."""

    def __str__(self) -> str:
        return f"{self.filename}: {self.strerror}"


def open_nofollow(path: str | os.PathLike[str], flags: int, mode: int = 0o644) -> int:
    """`os.open(path, flags | O_NOFOLLOW | O_CLOEXEC, mode)`; a link at `path` raises `SymlinkRefused`."""
    try:
        return os.open(path, flags | os.O_NOFOLLOW | os.O_CLOEXEC, mode)
    except OSError as exc:
        # ELOOP is what O_NOFOLLOW gives for a link; EEXIST with O_EXCL may be a link too.
        if exc.errno in (errno.ELOOP, errno.EEXIST, errno.EMLINK) and os.path.islink(path):
            raise SymlinkRefused(
                errno.ELOOP, "is a symbolic link: autorec never writes through links (remove it)", str(path)
            ) from None
        raise


def replace_file(path: str | os.PathLike[str], data: bytes, fsync: bool = False) -> None:
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)  # a stale one (a crash), or a planted link: removing a link leaves its target alone
        with os.fdopen(open_nofollow(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL), "wb") as f:
            f.write(data)
            f.flush()
            if fsync:
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def write_json(path: str | os.PathLike[str], data: Any, fsync: bool = False) -> None:
    replace_file(path, (json.dumps(data, indent=1) + "\n").encode(), fsync)


def append_json_line(path: str | os.PathLike[str], entry: Any, fsync: bool = True) -> None:
    line = (json.dumps(entry, separators=(",", ":")) + "\n").encode()
    fd = open_nofollow(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    try:
        size = os.fstat(fd).st_size
        try:
            view = memoryview(line)
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


def fsync_path(path: str | os.PathLike[str]) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
