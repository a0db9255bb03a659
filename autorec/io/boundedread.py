"""Reading the output directory when its files may be anything: regular files only, lines with a cap, problems bounded.

Every reader of the directory (`ls`, `info DIR`, `report`, the web UI) reads
through here, because a night can leave, and a user or an attacker can plant,
anything there: a FIFO or a device under a file's name, a 400 MB line without a
newline (a NUL-filled tail after power loss), 40 million bad rows.

Contracts:
- `open_regular(path)` opens for reading without following a final link and
  without blocking (O_NOFOLLOW | O_NONBLOCK), then checks `fstat` says a
  regular file: a FIFO, a device or a directory is an OSError (EINVAL,
  "not a regular file"), never a read that hangs.
- `bounded_lines(f, max_line)` yields `(number, line)` for each line of a
  binary stream; a line longer than `max_line` is yielded as `(number, None)`
  and never held in memory whole (it is skipped in chunks).
- `gunzipped(f)` is a binary stream of the decompressed gzip members of `f`
  (a score track), read in chunks; at the first byte that does not begin a
  member (zero padding, junk, a cut member) it ends and `damaged` says so.
  Unlike Python's `gzip`, a megabyte of NUL padding costs one check, not a
  read call per byte; output stops after `max_bytes` (a member of junk can
  decompress to a thousand times its size).
- `read_capped(path, limit)` is the bytes of a small file (a sidecar, the
  status file) or an error text: missing, not a regular file, larger than
  `limit` (not read).
- `Problems` is a list of problem lines that stays short: at most `per_file`
  lines for any one file (the text before the first `:`), then one line
  saying how many more that file had, kept up to date; at most `total` lines
  in all, the last one counting the rest. A problem already listed is not
  listed again (two index lines sharing one damaged sidecar name it once).
  Appending never fails and costs O(1), so 40 million bad rows cost a
  counter, not gigabytes.
"""

from __future__ import annotations

import errno
import io
import os
import stat
import zlib
from collections.abc import Iterable, Iterator
from typing import BinaryIO, SupportsIndex

CHUNK = 1 << 16
GZ_IN = 4096
PER_FILE = 20
TOTAL = 200


def open_regular(path: str | os.PathLike[str]) -> BinaryIO:
    """A binary reader for `path` if it is a regular file (see the module docstring); OSError otherwise."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(errno.EINVAL, "not a regular file", str(path))
        return os.fdopen(fd, "rb", buffering=CHUNK)
    except BaseException:
        os.close(fd)
        raise


def bounded_lines(f: BinaryIO, max_line: int) -> Iterator[tuple[int, bytes | None]]:
    """`(line number, line)` (without the newline; None for a line over `max_line`). See the module docstring."""
    number = 0
    while True:
        line = f.readline(max_line + 1)
        if not line:
            return
        number += 1
        if len(line) > max_line and not line.endswith(b"\n"):
            # the rest of this line is read in chunks and dropped: it never sits in memory whole
            while True:
                rest = f.readline(CHUNK)
                if not rest or rest.endswith(b"\n"):
                    break
            yield number, None
            continue
        yield number, line.rstrip(b"\r\n")


class _Gunzip(io.RawIOBase):
    def __init__(self, f: BinaryIO, max_bytes: int) -> None:
        self._f = f
        self._d = zlib.decompressobj(wbits=31)
        self._pending = memoryview(b"")
        self._in = b""
        self._members = 0
        self._in_member = False  # bytes fed to a member that has not ended yet
        self._done = False
        self._left = max_bytes
        self.damaged: str | None = None

    def readable(self) -> bool:
        return True

    def _stop(self, why: str | None) -> None:
        self.damaged = why
        self._done = True

    def _fill(self) -> None:
        while not self._pending and not self._done:
            if self._left <= 0:
                return self._stop("more data than a score track holds (a damaged or hostile file); the rest not read")
            if not self._in:
                self._in = self._f.read(CHUNK)
                if not self._in:
                    return self._stop("the last gzip member is cut short" if self._in_member else None)
            piece, rest = self._in[:GZ_IN], self._in[GZ_IN:]
            try:
                self._in_member = True
                out = self._d.decompress(piece, CHUNK)  # bounded output: a bomb is read a chunk at a time
            except zlib.error as exc:
                return self._stop(f"not gzip data after {self._members} whole member(s) ({exc})")
            if self._d.eof:
                self._members += 1
                self._in_member = False
                self._in = self._d.unused_data + rest
                self._d = zlib.decompressobj(wbits=31)
            else:
                self._in = self._d.unconsumed_tail + rest
            self._left -= len(out)
            self._pending = memoryview(out)

    def readinto(self, buffer) -> int:  # type: ignore[override]
        self._fill()
        n = min(len(buffer), len(self._pending))
        buffer[:n] = self._pending[:n]
        self._pending = self._pending[n:]
        return n


def gunzipped(f: BinaryIO, max_bytes: int = 256 << 20) -> tuple[BinaryIO, _Gunzip]:
    """`(stream of the decompressed members, the decoder)`: `decoder.damaged` is None or why it stopped
    (damage, or more than `max_bytes` decompressed: a bomb)."""
    raw = _Gunzip(f, max_bytes)
    return io.BufferedReader(raw, CHUNK), raw  # type: ignore[return-value]


def read_capped(path: str | os.PathLike[str], limit: int) -> tuple[bytes | None, str | None]:
    """`(data, None)` for a regular file of at most `limit` bytes, else `(None, why)` (`missing` if absent)."""
    try:
        with open_regular(path) as f:
            data = f.read(limit + 1)
    except FileNotFoundError:
        return None, "missing"
    except OSError as exc:
        return None, f"cannot read: {exc.strerror or exc}"
    if len(data) > limit:
        return None, f"larger than {limit} bytes, not read"
    return data, None


class Problems(list):
    """A bounded list of problem lines. See the module docstring."""

    def __init__(self, items: Iterable[str] = (), per_file: int = PER_FILE, total: int = TOTAL) -> None:
        super().__init__()
        self.per_file = per_file
        self.total = total
        self.count = 0  # every problem appended, listed or not
        self._by_file: dict[str, int] = {}
        self._more_line: dict[str, int] = {}  # file -> index of its "N more" line
        self._overflow: int | None = None  # index of the last line, once `total` is reached
        self._overflow_count = 0
        self._listed: set[str] = set()
        self.extend(items)

    def append(self, text: str) -> None:  # type: ignore[override]
        text = str(text)
        if text in self._listed:
            return
        self.count += 1
        source = text.split(":", 1)[0]
        seen = self._by_file.get(source, 0) + 1
        self._by_file[source] = seen
        if seen > self.per_file:
            more = seen - self.per_file
            line = f"{source}: {more} more problem(s) of this file not listed"
            index = self._more_line.get(source)
            if index is not None:
                super().__setitem__(index, line)
                return
            if self._room():
                self._more_line[source] = len(self)
                super().append(line)
            return
        if self._room():
            self._listed.add(text)
            super().append(text)

    def _room(self) -> bool:
        if len(self) < self.total - 1:
            return True
        self._overflow_count += 1
        line = f"... and {self._overflow_count} more problem(s) not listed"
        if self._overflow is None:
            self._overflow = len(self)
            super().append(line)
        else:
            super().__setitem__(self._overflow, line)
        return False

    def extend(self, items: Iterable[str]) -> None:  # type: ignore[override]
        for item in items:
            self.append(item)

    def __iadd__(self, items: Iterable[str]) -> Problems:  # type: ignore[override]
        self.extend(items)
        return self

    def insert(self, index: SupportsIndex, text: str) -> None:
        self.append(text)  # order is not kept beyond the cap; the bound is what matters
