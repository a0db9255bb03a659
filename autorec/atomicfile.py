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
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from typing import Any


def replace_file(path: str | os.PathLike[str], data: bytes, fsync: bool = False) -> None:
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        with open(tmp, "wb") as f:
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
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
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
