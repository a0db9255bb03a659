"""Upstream log files: `length:uint32 little-endian | payload`, repeated.

This is the format pdrecord writes and upstream's EventReader, pdlog and
`pdserver --replay` read. Nothing but records may ever be written into a log;
metadata goes into sidecar files beside it.

Reader contract:
- iteration stops at the first record that cannot be read whole; the reason
  is left in `truncated` (a cut final record: offset of the record and bytes
  missing) or `corrupt` (a length prefix above `max_record`, which is never
  allocated).
- `heads()` walks the records without reading payloads (seeking past them),
  for fast summaries of multi-GB logs.

Writer contract:
- every `write` appends one whole record; the file on disk always ends on a
  record boundary after `flush()`, also when the disk fills: a failed flush
  truncates the file back to its last whole record, counts the records it
  could not write in `dropped`, and raises `LogWriteError`.
"""

from __future__ import annotations

import errno
import io
import os
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Literal

from autorec import events
from autorec.io.atomicfile import open_nofollow, same_file
from autorec.proto import PurpleDropEvent

HEADER = struct.Struct("<I")
DEFAULT_MAX_RECORD = 64 * 1024 * 1024
_READ_CHUNK = 1024 * 1024


def frame(payload: bytes) -> bytes:
    """One log record (header + payload) for `payload`."""
    return HEADER.pack(len(payload)) + payload


@dataclass(frozen=True)
class Truncation:
    """The log ends inside a record starting at `offset`."""

    offset: int
    missing_bytes: int

    def as_dict(self) -> dict[str, int]:
        return {"offset": self.offset, "missing_bytes": self.missing_bytes}


@dataclass(frozen=True)
class Corruption:
    """The record header at `offset` cannot be right (e.g. an absurd length)."""

    offset: int
    reason: str

    def as_dict(self) -> dict[str, object]:
        return {"offset": self.offset, "reason": self.reason}


@dataclass(frozen=True, slots=True)
class Record:
    offset: int
    payload: bytes


class LogReader:
    """Reads the records of one log file. See the module docstring."""

    def __init__(self, source: str | os.PathLike[str] | BinaryIO, max_record: int = DEFAULT_MAX_RECORD):
        self._source = source
        self.max_record = max_record
        self.truncated: Truncation | None = None
        self.corrupt: Corruption | None = None
        self.undecodable = 0
        self.end_offset = 0  # offset just past the last whole record read

    def _open(self) -> tuple[BinaryIO, bool]:
        if isinstance(self._source, (str, os.PathLike)):
            return open(self._source, "rb", buffering=_READ_CHUNK), True
        return self._source, False

    def _length(self, f: BinaryIO, offset: int) -> int | None:
        """The length in the record header at `offset` (the file is there), or None at the end of the
        log: clean, cut inside the header (`truncated`) or a length over the cap (`corrupt`)."""
        header = f.read(4)
        if len(header) < 4:
            if header:
                self.truncated = Truncation(offset, 4 - len(header))
            return None
        (length,) = HEADER.unpack(header)
        if length > self.max_record:
            self.corrupt = Corruption(offset, f"record length {length} exceeds the {self.max_record}-byte cap")
            return None
        return length

    def records(self) -> Iterator[Record]:
        self.truncated = self.corrupt = None
        f, owned = self._open()
        try:
            offset = f.tell() if not owned else 0
            self.end_offset = offset
            while (length := self._length(f, offset)) is not None:
                payload = f.read(length)
                if len(payload) < length:
                    self.truncated = Truncation(offset, length - len(payload))
                    return
                yield Record(offset, payload)
                offset += 4 + length
                self.end_offset = offset
        finally:
            if owned:
                f.close()

    def heads(self, head: int = 16) -> Iterator[tuple[int, int, bytes]]:
        """Yield `(offset, length, first bytes of payload)` without reading whole payloads."""
        self.truncated = self.corrupt = None
        f, owned = self._open()
        try:
            size = os.fstat(f.fileno()).st_size
            offset = f.tell() if not owned else 0
            self.end_offset = offset
            while (length := self._length(f, offset)) is not None:
                available = size - offset - 4
                if available < length:
                    self.truncated = Truncation(offset, length - available)
                    return
                first = f.read(min(head, length))
                if length > len(first):
                    f.seek(length - len(first), io.SEEK_CUR)
                yield offset, length, first
                offset += 4 + length
                self.end_offset = offset
        finally:
            if owned:
                f.close()

    def events(self) -> Iterator[tuple[Record, PurpleDropEvent]]:
        """Decoded events; records that do not parse are skipped and counted in `undecodable`."""
        self.undecodable = 0
        for record in self.records():
            try:
                yield record, events.decode(record.payload)
            except events.DecodeError:
                self.undecodable += 1

    def __iter__(self) -> Iterator[Record]:
        return self.records()


class LogWriteError(OSError):
    """Records could not be written (disk full, I/O error); the file still ends on a whole record."""


class LogWriter:
    """Appends records to a log file. See the module docstring.

    `mode`: "new" refuses an existing file, "append" adds to it (after
    cutting a partial final record, so the log stays readable; a file with a
    corrupt record header is refused with OSError EILSEQ and left untouched),
    "overwrite" replaces it.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        mode: Literal["new", "append", "overwrite"] = "new",
        buffer_bytes: int = 1024 * 1024,
        fsync_on_close: bool = False,
    ):
        self.path = Path(path)
        flags = os.O_WRONLY | os.O_CREAT
        if mode == "new":
            flags |= os.O_EXCL
        elif mode == "overwrite":
            flags |= os.O_TRUNC
        # Never through a symbolic link (a planted link must not make us truncate or append to its target).
        self._fd: int | None = open_nofollow(self.path, flags)
        self._committed = 0
        if mode == "append":
            reader = LogReader(self.path)
            for _ in reader.heads(0):
                pass
            if reader.corrupt is not None:
                # Cutting back to the last whole record is right for a cut final record, but here it
                # would destroy everything after the bad header (or a whole file that is not a log).
                os.close(self._fd)
                self._fd = None
                raise OSError(
                    errno.EILSEQ,
                    f"not appending: bad record header at offset {reader.corrupt.offset} "
                    f"({reader.corrupt.reason}); the file is left as it is",
                    str(self.path),
                )
            self._committed = reader.end_offset
            os.ftruncate(self._fd, self._committed)
        os.lseek(self._fd, self._committed, os.SEEK_SET)
        self._buf = bytearray()
        self._buffered_records = 0
        self._buffer_bytes = buffer_bytes
        self._fsync_on_close = fsync_on_close
        self.records = 0  # records durably handed to the OS
        self.bytes = self._committed
        self.dropped = 0

    @property
    def closed(self) -> bool:
        return self._fd is None

    def write(self, payload: bytes) -> None:
        if self._fd is None:
            raise ValueError(f"{self.path}: write to a closed log")
        self._buf += HEADER.pack(len(payload))
        self._buf += payload
        self._buffered_records += 1
        if len(self._buf) >= self._buffer_bytes:
            self.flush()

    def flush(self) -> None:
        if self._fd is None or not self._buf:
            return
        view = memoryview(self._buf)
        try:
            written = 0
            while written < len(view):
                written += os.write(self._fd, view[written:])
        except OSError as exc:
            lost = self._buffered_records
            self.dropped += lost
            self._reset_buffer(view)
            try:
                os.ftruncate(self._fd, self._committed)
                os.lseek(self._fd, self._committed, os.SEEK_SET)
            except OSError:
                pass
            raise LogWriteError(exc.errno, f"{self.path}: {lost} record(s) not written: {exc.strerror}") from exc
        self._committed += len(view)
        self.records += self._buffered_records
        self.bytes = self._committed
        self._reset_buffer(view)

    def still_named(self) -> bool:
        """Whether the path still names the file this writer writes (not deleted or replaced meanwhile)."""
        return self._fd is not None and same_file(self.path, self._fd)

    def reopened(self) -> LogWriter:
        """A writer appending to whatever the path names now (a new file if it was deleted), taking over
        this writer's buffered records; this one is closed without writing them."""
        new = LogWriter(self.path, mode="append", buffer_bytes=self._buffer_bytes, fsync_on_close=self._fsync_on_close)
        new._buf, new._buffered_records = self._buf, self._buffered_records
        self._buf, self._buffered_records = bytearray(), 0
        self.close()
        return new

    def _reset_buffer(self, view: memoryview) -> None:
        view.release()
        self._buf = bytearray()
        self._buffered_records = 0

    def close(self) -> None:
        if self._fd is None:
            return
        try:
            self.flush()
            if self._fsync_on_close:
                os.fsync(self._fd)
        finally:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> LogWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
