"""Crash recovery: finalize the segments a killed recorder left as `NAME.bin.partial`.

Run once at start, after taking the output directory's instance lock (so no
live recorder is still writing the partials) and before recording.

Contract, for every `*.bin.partial` in the directory:
- The file is read with `LogReader` and cut (`ftruncate`) just after its
  last whole record: a record cut by the crash, or a header with an absurd
  length, and everything after it, is removed. Whole records are never
  removed, also when their payload does not decode (they are counted as
  `undecodable`).
- It is renamed to `NAME.bin` (or `NAME.recovered-N.bin` when that name is
  taken), with fsync of the file and of the directory when `fsync` is true.
- Its sidecar `NAME.json` is written from what the file actually holds:
  `start`/`end` (epoch seconds of the first and last timestamped record),
  `records`, `bytes`, `counts` and `bytes_per_kind`, plus `recovered` (how
  much was cut and why). Descriptive fields of a sidecar the writer may have
  left (rules, firings, ...) are kept; fields that describe the file's
  content are always recomputed, so the sidecar never claims more than the
  file holds.
- A line for it is appended to `index.jsonl` (the sidecar's summary plus
  `path`, relative to the directory).
- A partial holding no whole record is deleted (nothing to recover) and
  reported with `empty=True`.
- Errors on one partial (I/O) are reported in its result and do not stop
  the others.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from autorec import events
from autorec.logfile import LogReader

PARTIAL_SUFFIX = ".partial"
LOG_SUFFIX = ".bin"
SIDECAR_SUFFIX = ".json"
INDEX_NAME = "index.jsonl"

# Sidecar keys that describe the file's content: always recomputed from the file on recovery.
CONTENT_KEYS: frozenset[str] = frozenset(
    {"start", "end", "records", "bytes", "counts", "bytes_per_kind", "duration", "path", "recovered"}
)


@dataclass
class LogSummary:
    """What a log file holds, up to its last whole record."""

    records: int = 0
    bytes: int = 0  # file bytes up to the end of the last whole record
    start: float | None = None
    end: float | None = None
    counts: dict[str, int] = field(default_factory=dict)
    bytes_per_kind: dict[str, int] = field(default_factory=dict)
    undecodable: int = 0
    cut_reason: str | None = None  # "truncated" / "corrupt" / None (file ends on a record boundary)


def summarize(path: str | os.PathLike[str]) -> LogSummary:
    """Read the log at `path` and describe its whole records. Times are the records' own timestamps."""
    reader = LogReader(path)
    s = LogSummary()
    for record in reader.records():
        size = 4 + len(record.payload)
        try:
            event = events.decode(record.payload)
        except events.DecodeError:
            s.undecodable += 1
            k = "undecodable"
            t = None
        else:
            k = events.kind(event) or "undecodable"
            t = events.timestamp(event)
        s.records += 1
        s.counts[k] = s.counts.get(k, 0) + 1
        s.bytes_per_kind[k] = s.bytes_per_kind.get(k, 0) + size
        if t is not None:
            s.start = t if s.start is None else min(s.start, t)
            s.end = t if s.end is None else max(s.end, t)
    s.bytes = reader.end_offset
    if reader.truncated is not None:
        s.cut_reason = (
            f"truncated: record at offset {reader.truncated.offset} misses {reader.truncated.missing_bytes} bytes"
        )
    elif reader.corrupt is not None:
        s.cut_reason = f"corrupt: {reader.corrupt.reason} at offset {reader.corrupt.offset}"
    return s


@dataclass
class Recovered:
    """The outcome for one partial file."""

    partial: Path
    log: Path | None = None  # the finalized log (None: empty or failed)
    sidecar: Path | None = None
    summary: LogSummary | None = None
    original_bytes: int = 0
    cut_bytes: int = 0
    empty: bool = False
    error: str | None = None

    def message(self) -> str:
        if self.error:
            return f"recovery: {self.partial.name}: {self.error}"
        if self.empty:
            return f"recovery: {self.partial.name} held no whole record; removed"
        assert self.summary is not None and self.log is not None
        cut = f", cut {self.cut_bytes} trailing bytes ({self.summary.cut_reason})" if self.cut_bytes else ""
        return f"recovery: {self.partial.name} -> {self.log.name}: {self.summary.records} records{cut}"


def final_name(partial: Path) -> Path:
    """`NAME.bin` for `NAME.bin.partial`, or `NAME.recovered-N.bin` if that is taken."""
    target = partial.with_name(partial.name[: -len(PARTIAL_SUFFIX)])
    if not target.exists():
        return target
    stem = target.name[: -len(LOG_SUFFIX)] if target.name.endswith(LOG_SUFFIX) else target.name
    n = 1
    while True:
        candidate = target.with_name(f"{stem}.recovered-{n}{LOG_SUFFIX}")
        if not candidate.exists() and not candidate.with_suffix(SIDECAR_SUFFIX).exists():
            return candidate
        n += 1


def _stem(path: Path) -> Path:
    """`dir/NAME` for `dir/NAME.bin` or `dir/NAME.bin.partial`."""
    name = path.name
    if name.endswith(PARTIAL_SUFFIX):
        name = name[: -len(PARTIAL_SUFFIX)]
    if name.endswith(LOG_SUFFIX):
        name = name[: -len(LOG_SUFFIX)]
    return path.with_name(name)


def _load_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _fsync_path(path: Path, directory: bool = False) -> None:
    fd = os.open(path, os.O_RDONLY if directory else os.O_RDWR)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_json_atomic(path: Path, data: dict[str, Any], fsync: bool) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        with open(tmp, "w") as f:
            json.dump(data, f, indent=1, sort_keys=True)
            f.write("\n")
            f.flush()
            if fsync:
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def append_index_line(index: Path, entry: dict[str, Any], fsync: bool = True) -> None:
    """Append one JSON line to `index`; on failure (a full disk) cut it back so no half line remains."""
    line = (json.dumps(entry, sort_keys=True) + "\n").encode()
    fd = os.open(index, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
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


def default_index_entry(sidecar: dict[str, Any], log_path: str) -> dict[str, Any]:
    """The index line for a recovered segment: the sidecar's summary fields plus `path`."""
    keys = ("start", "end", "records", "bytes", "rules", "counts", "recovered")
    entry: dict[str, Any] = {"path": log_path}
    entry.update({k: sidecar[k] for k in keys if k in sidecar})
    return entry


def recover_partial(
    partial: Path,
    fsync: bool = True,
    index_entry: Callable[[dict[str, Any], str], dict[str, Any]] = default_index_entry,
    now: float | None = None,
) -> Recovered:
    """Finalize one partial log. See the module docstring."""
    directory = partial.parent
    result = Recovered(partial)
    try:
        result.original_bytes = partial.stat().st_size
        summary = summarize(partial)
        result.summary = summary
        result.cut_bytes = result.original_bytes - summary.bytes
        stem = _stem(partial)
        if summary.records == 0:
            partial.unlink()
            with contextlib.suppress(FileNotFoundError):
                stem.with_name(stem.name + SIDECAR_SUFFIX + PARTIAL_SUFFIX).unlink()
            result.empty = True
            return result
        if result.cut_bytes:
            os.truncate(partial, summary.bytes)
        if fsync:
            _fsync_path(partial)

        # A sidecar the writer may have left (finished or not) supplies the descriptive fields.
        previous: dict[str, Any] = {}
        for candidate in (
            stem.with_name(stem.name + SIDECAR_SUFFIX + PARTIAL_SUFFIX),
            stem.with_name(stem.name + SIDECAR_SUFFIX),
        ):
            loaded = _load_json(candidate)
            if loaded is not None:
                previous = loaded
                break

        log = final_name(partial)
        sidecar_path = _stem(log).with_name(_stem(log).name + SIDECAR_SUFFIX)
        sidecar = {k: v for k, v in previous.items() if k not in CONTENT_KEYS}
        sidecar.update(
            {
                "path": log.name,
                "start": summary.start,
                "end": summary.end,
                "duration": None if summary.start is None else summary.end - summary.start,
                "records": summary.records,
                "bytes": summary.bytes,
                "counts": summary.counts,
                "bytes_per_kind": summary.bytes_per_kind,
                "recovered": {
                    "at": time.time() if now is None else now,
                    "from": partial.name,
                    "original_bytes": result.original_bytes,
                    "cut_bytes": result.cut_bytes,
                    "cut_reason": summary.cut_reason,
                    "undecodable": summary.undecodable,
                },
            }
        )
        # Sidecar first, then the rename: a failure in between (a full disk) leaves the partial to be
        # recovered again on the next start, never a finalized log without its sidecar; a stale
        # sidecar is recomputed then, since its content fields are never trusted.
        _write_json_atomic(sidecar_path, sidecar, fsync)
        result.sidecar = sidecar_path
        os.rename(partial, log)
        result.log = log
        with contextlib.suppress(FileNotFoundError):
            stem.with_name(stem.name + SIDECAR_SUFFIX + PARTIAL_SUFFIX).unlink()
        append_index_line(directory / INDEX_NAME, index_entry(sidecar, log.name), fsync)
        if fsync:
            _fsync_path(directory, directory=True)
    except OSError as exc:
        result.error = f"{exc.strerror or exc}"
    return result


def recover_directory(
    directory: str | os.PathLike[str],
    fsync: bool = True,
    index_entry: Callable[[dict[str, Any], str], dict[str, Any]] = default_index_entry,
) -> list[Recovered]:
    """Recover every `*.bin.partial` in `directory`, oldest first. [] if there is none."""
    directory = Path(directory)
    try:
        partials = [p for p in directory.iterdir() if p.name.endswith(LOG_SUFFIX + PARTIAL_SUFFIX) and p.is_file()]
    except FileNotFoundError:
        return []
    partials.sort(key=lambda p: (p.stat().st_mtime, p.name))
    return [recover_partial(p, fsync=fsync, index_entry=index_entry) for p in partials]
