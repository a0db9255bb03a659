"""The "reviewed" marks of a night: who has looked at which segment, shared by everyone using that server.

Stored in the output directory as `reviewed.jsonl`, one JSON object a line,
appended only: `{"name": SEGMENT, "reviewed": true|false, "time": EPOCH}`.
The last line about a segment wins (a mark can be taken back), so the file
is also the history of the morning's review.

Contracts:
- The file is opened with O_NOFOLLOW and O_NONBLOCK and must be a regular
  file: a symlink, FIFO or device planted under that name is refused
  (`MarkRefused`), never followed, never blocked on.
- One append is one `write` of one whole line under O_APPEND, so marks from
  several browsers never interleave; a failed write is cut back so the file
  always ends on a whole line.
- Bounded: a segment name longer than `MAX_NAME` or a file already at
  `MAX_FILE` bytes refuses the mark; a reader skips damaged or over-long lines
  (counted in `skipped`) and keeps the rest.
- Blocking file work: callers on an event loop run `read`/`mark` in a worker
  thread.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import stat
import time as _time
from dataclasses import dataclass, field
from pathlib import Path

from autorec.outdir import REVIEWED_NAME

log = logging.getLogger(__name__)

MAX_NAME = 200
MAX_LINE = 4096
MAX_FILE = 16 << 20  # ~150 000 marks: far more than any night has segments


class MarkRefused(Exception):
    """The mark cannot be stored (bad name, planted file, full); the message says why in one line."""


@dataclass
class ReviewedMarks:
    """The marks of one output directory. See the module docstring."""

    directory: Path
    skipped: int = 0
    _cache: tuple[tuple[int, int], dict[str, float]] | None = field(default=None, repr=False)

    @property
    def path(self) -> Path:
        return self.directory / REVIEWED_NAME

    def _open(self, flags: int) -> int:
        try:
            fd = os.open(self.path, flags | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            if exc.errno == errno.ELOOP or os.path.islink(self.path):  # ELOOP: a symlink planted under our name
                raise MarkRefused(f"{self.path} is a symbolic link: not followed") from None
            if exc.errno == errno.ENXIO:  # a FIFO without a reader, opened for writing without blocking
                raise MarkRefused(f"{self.path} is not a regular file: not used") from None
            raise
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            os.close(fd)
            raise MarkRefused(f"{self.path} is not a regular file: not used")
        return fd

    def read(self) -> dict[str, float]:
        """`{segment name: time marked}` of the segments whose last mark says reviewed. Never raises
        for content; a missing file is no marks; a planted file is no marks (and logged)."""
        try:
            fd = self._open(os.O_RDONLY)
        except FileNotFoundError:
            return {}
        except (OSError, MarkRefused) as exc:
            log.warning("reviewed marks: %s", exc)
            return {}
        try:
            st = os.fstat(fd)
            key = (st.st_size, st.st_mtime_ns)
            if self._cache is not None and self._cache[0] == key:
                return dict(self._cache[1])
            data = os.pread(fd, min(st.st_size, MAX_FILE), 0)
        finally:
            os.close(fd)
        marks: dict[str, float] = {}
        skipped = 0
        for raw in data.split(b"\n"):
            if not raw.strip():
                continue
            entry = None
            if len(raw) <= MAX_LINE:
                try:
                    entry = json.loads(raw)
                except ValueError:
                    pass
            name = entry.get("name") if isinstance(entry, dict) else None
            if not isinstance(name, str) or not isinstance(entry.get("reviewed"), bool):
                skipped += 1
                continue
            if entry["reviewed"]:
                t = entry.get("time")
                marks[name] = float(t) if isinstance(t, (int, float)) and not isinstance(t, bool) else 0.0
            else:
                marks.pop(name, None)
        self.skipped = skipped
        self._cache = (key, marks)
        return dict(marks)

    def mark(self, name: str, reviewed: bool = True, when: float | None = None) -> dict[str, object]:
        """Append one mark; returns the line written. `MarkRefused` (one line) if it cannot be stored."""
        if not isinstance(name, str) or not name or len(name) > MAX_NAME or any(c in name for c in "\n\r\0"):
            raise MarkRefused("a segment name of 1-200 characters is needed")
        entry = {"name": name, "reviewed": bool(reviewed), "time": round(when if when is not None else _time.time(), 3)}
        line = (json.dumps(entry, separators=(",", ":")) + "\n").encode()
        try:
            fd = self._open(os.O_WRONLY | os.O_APPEND | os.O_CREAT)
        except OSError as exc:
            raise MarkRefused(f"{self.path}: cannot open: {exc.strerror or exc}") from None
        try:
            size = os.fstat(fd).st_size
            if size + len(line) > MAX_FILE:
                raise MarkRefused(f"{self.path} is full ({size} bytes): no more marks stored")
            try:
                written = os.write(fd, line)
                if written != len(line):
                    raise OSError(f"short write ({written} of {len(line)} bytes)")
            except OSError as exc:
                try:
                    os.ftruncate(fd, size)  # the file keeps ending on a whole line
                except OSError:
                    pass
                raise MarkRefused(f"{self.path}: cannot write: {getattr(exc, 'strerror', None) or exc}") from None
        finally:
            os.close(fd)
        return entry
