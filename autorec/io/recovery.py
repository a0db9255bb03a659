"""Crash recovery: finalize the segments a killed recorder left behind.

Run once at start, after taking the output directory's instance lock (so no
live recorder is still writing) and before recording. The file layout is the
segment writer's (`autorec.io.writer`): `NAME.bin.partial` while open, then
`NAME.bin`, sidecar `NAME.json`, and one line per segment in `index.jsonl`.

Contract, for every `NAME.bin.partial` in the directory:
- The file is read with `LogReader` and cut (`ftruncate`) just after its
  last whole record: a record cut by the crash, or a header with an absurd
  length, and everything after it, is removed. Whole records are never
  removed, also when their payload does not decode (they are counted as
  `undecodable`).
- Its sidecar `NAME.json` is written in the writer's format from what the
  file actually holds: `start`/`end` (epoch seconds of the earliest and latest
  timestamped record), `records`, `bytes`, `counts`, `bytes_per_kind`
  (payload bytes), `recovered: true`, `close_reason: "recovered"`, and
  `recovery` (how much was cut and why). Descriptive fields of a sidecar
  left beside it (`NAME.json.partial` or `NAME.json`: rules, firings, ...)
  are kept; fields that describe the file's content are always recomputed,
  so the sidecar never claims more than the file holds. Messages the crash
  lost before they reached the disk are unknown and not claimed either way.
- Then the log is renamed to `NAME.bin` (or `NAME.recovered-N.bin` when that
  name is taken) and a line is appended to `index.jsonl` with the writer's
  summary keys. With `fsync`, file, sidecar, index and directory are synced.
  A failure before the rename (a full disk) leaves the partial for the next
  start; a half-appended index line is cut back.
- A partial holding no whole record is deleted (nothing to recover) and
  reported with `empty=True`.
- A `NAME.bin` with a sidecar but no index line (a crash between the
  writer's rename and its index append) gets its sidecar recomputed and its
  index line the same way, without a rename and without ever being modified.
  A `NAME.bin` without a sidecar is not a segment (the writer writes the
  sidecar before the final name exists): it is left alone, so a user's own
  file in the output directory is never adopted and never reaches retention.
  Telemetry and timelapse logs (`telemetry-*.bin`, `timelapse-*.bin`) are never touched.
- Errors on one file (I/O) are reported in its result and do not stop the
  others.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from autorec import __version__, events
from autorec.core.timeline import LogSpan
from autorec.io.atomicfile import append_json_line, fsync_path, open_nofollow, write_json
from autorec.io.logfile import LogReader
from autorec.outdir import (
    INDEX_NAME,
    LOG_SUFFIX,
    OPEN_LOG_SUFFIX,
    OPEN_SUFFIX,
    SIDECAR_KEYS,
    SIDECAR_SUFFIX,
    SIDECAR_VERSION,
    IndexLine,
    is_daily_log,
    is_near_miss_clip,
)
from autorec.units import with_iso_times

# Sidecar keys that describe the file's content (or its finalization): always recomputed on recovery.
CONTENT_KEYS: frozenset[str] = frozenset(
    {
        "version",
        "autorec",
        "name",
        "path",
        "start",
        "end",
        "segment_end",
        "close_reason",
        "records",
        "bytes",
        "counts",
        "bytes_per_kind",
        "origins",
        "dropped",
        "recovered",
        "recovery",
    }
)


@dataclass
class LogSummary:
    """What a log file holds, up to its last whole record."""

    records: int = 0
    bytes: int = 0  # file bytes up to the end of the last whole record
    start: float | None = None
    end: float | None = None
    counts: dict[str, int] = field(default_factory=dict)
    bytes_per_kind: dict[str, int] = field(default_factory=dict)  # payload bytes, as the writer counts them
    undecodable: int = 0
    cut_reason: str | None = None  # "truncated" / "corrupt" / None (file ends on a record boundary)


def summarize(path: str | os.PathLike[str]) -> LogSummary:
    """Read the log at `path` and describe its whole records. Start and end are stream times, by the
    recorder's clock rule (`autorec.core.timeline.LogSpan`)."""
    reader = LogReader(path)
    s = LogSummary()
    span = LogSpan()  # the writer's own clock rule: a damaged timestamp does not stretch the span
    for record in reader.records():
        size = len(record.payload)
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
        span.add(t)
    s.start, s.end = span.finish()
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
    target = partial.with_name(partial.name[: -len(OPEN_SUFFIX)])
    if not os.path.lexists(target):
        return target
    stem = target.name[: -len(LOG_SUFFIX)] if target.name.endswith(LOG_SUFFIX) else target.name
    n = 1
    while True:
        candidate = target.with_name(f"{stem}.recovered-{n}{LOG_SUFFIX}")
        if not os.path.lexists(candidate) and not os.path.lexists(candidate.with_suffix(SIDECAR_SUFFIX)):
            return candidate
        n += 1


def _stem(path: Path) -> Path:
    """`dir/NAME` for `dir/NAME.bin` or `dir/NAME.bin.partial`."""
    name = path.name
    if name.endswith(OPEN_SUFFIX):
        name = name[: -len(OPEN_SUFFIX)]
    if name.endswith(LOG_SUFFIX):
        name = name[: -len(LOG_SUFFIX)]
    return path.with_name(name)


def _load_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def build_sidecar(previous: dict[str, Any], log: Path, summary: LogSummary, recovery: dict[str, Any]) -> dict[str, Any]:
    """A recovered segment's sidecar: `previous`'s descriptive fields, content fields from `summary`."""
    kept = {k: v for k, v in previous.items() if k not in CONTENT_KEYS}
    gaps = kept.get("gaps", [])
    if isinstance(gaps, list) and summary.end is not None:
        # Gaps after the last record the file holds describe nothing in it.
        gaps = [
            g
            for g in gaps
            if not (isinstance(g, dict) and isinstance(g.get("start"), (int, float)) and g["start"] > summary.end)
        ]
    values: dict[str, Any] = {
        "version": SIDECAR_VERSION,
        "autorec": __version__,
        "name": _stem(log).name,
        "path": log.name,
        "seq": kept.get("seq"),
        "part": kept.get("part"),
        "start": summary.start,
        "end": summary.end,
        "segment_start": kept.get("segment_start", summary.start),
        "segment_end": summary.end,
        "open_reason": kept.get("open_reason"),
        "close_reason": "recovered",
        "rules": kept.get("rules", []),
        "firings": kept.get("firings", []),
        "firing_counts": kept.get("firing_counts"),
        "snapshot": kept.get("snapshot"),
        "pre_roll": kept.get("pre_roll"),
        "records": summary.records,
        "bytes": summary.bytes,
        "counts": dict(sorted(summary.counts.items())),
        "bytes_per_kind": dict(sorted(summary.bytes_per_kind.items())),
        "origins": None,  # which records were snapshot / pre-roll / live is not in the file
        "gaps": gaps,
        "dropped": {"records": 0, "bytes": 0},  # none known; what never reached the disk is unknown
        "recovered": True,
        "near_miss": is_near_miss_clip(kept.get("firings")),
    }
    sidecar = {k: values[k] for k in SIDECAR_KEYS}
    sidecar.update({k: v for k, v in kept.items() if k not in sidecar})  # fields a later writer may add
    sidecar["recovery"] = recovery
    return with_iso_times(sidecar)  # recomputed: the old sidecar's *_iso and duration_s may be stale


def _sidecar_candidates(stem: Path) -> list[Path]:
    return [
        stem.with_name(stem.name + SIDECAR_SUFFIX + OPEN_SUFFIX),
        stem.with_name(stem.name + SIDECAR_SUFFIX),
    ]


def _finalize(source: Path, result: Recovered, fsync: bool, now: float | None) -> None:
    """Cut `source` to its whole records, write its sidecar, rename it if partial, index it."""
    directory = source.parent
    result.original_bytes = source.stat().st_size
    summary = summarize(source)
    result.summary = summary
    stem = _stem(source)
    is_partial = source.name.endswith(OPEN_SUFFIX)
    trailing = result.original_bytes - summary.bytes  # bytes after the last whole record
    result.cut_bytes = trailing if is_partial else 0
    if summary.records == 0 and is_partial:
        source.unlink()
        with contextlib.suppress(FileNotFoundError):
            _sidecar_candidates(stem)[0].unlink()
        result.empty = True
        return
    if result.cut_bytes:
        # Only a partial is cut: a finalized log is never modified (its sidecar counts its whole records).
        fd = open_nofollow(source, os.O_WRONLY)
        try:
            os.ftruncate(fd, summary.bytes)
        finally:
            os.close(fd)
    if fsync and is_partial:
        fsync_path(source)

    previous: dict[str, Any] = {}
    for candidate in _sidecar_candidates(stem):
        loaded = _load_json(candidate)
        if loaded is not None:
            previous = loaded
            break

    log = final_name(source) if is_partial else source
    sidecar_path = _stem(log).with_name(_stem(log).name + SIDECAR_SUFFIX)
    recovery = {
        "at": time.time() if now is None else now,
        "from": source.name,
        "original_bytes": result.original_bytes,
        "cut_bytes": result.cut_bytes,
        "cut_reason": summary.cut_reason,
        "trailing_bytes_kept": 0 if is_partial else trailing,
        "undecodable": summary.undecodable,
    }
    sidecar = build_sidecar(previous, log, summary, recovery)
    # Sidecar first, then the rename: a failure in between (a full disk) leaves the partial to be
    # recovered again on the next start, never a finalized log without its sidecar; a stale
    # sidecar is recomputed then, since its content fields are never trusted.
    write_json(sidecar_path, sidecar, fsync)
    result.sidecar = sidecar_path
    if is_partial:
        os.rename(source, log)
    result.log = log
    with contextlib.suppress(FileNotFoundError):
        _sidecar_candidates(stem)[0].unlink()
    append_json_line(
        directory / INDEX_NAME, IndexLine.from_sidecar(sidecar, log.name, sidecar_path.name).to_json(), fsync
    )
    if fsync:
        fsync_path(directory)


def recover_partial(partial: Path, fsync: bool = True, now: float | None = None) -> Recovered:
    """Finalize one `NAME.bin.partial` (or an unindexed `NAME.bin`). See the module docstring."""
    result = Recovered(partial)
    try:
        _finalize(partial, result, fsync, now)
    except OSError as exc:
        result.error = f"{exc.strerror or exc}"
    return result


def _indexed_paths(directory: Path) -> set[str]:
    paths: set[str] = set()
    try:
        lines = (directory / INDEX_NAME).read_text(errors="replace").splitlines()
    except OSError:
        return paths
    for line in lines:
        with contextlib.suppress(ValueError):
            entry = json.loads(line)
            if isinstance(entry, dict) and isinstance(entry.get("path"), str):
                paths.add(Path(entry["path"]).name)
    return paths


def find_unfinished(directory: str | os.PathLike[str]) -> list[Path]:
    """Partials, and logs without sidecar or index line, oldest first (what `recover_directory` handles)."""
    directory = Path(directory)
    try:
        # A symbolic link is never ours (the writer creates none): recovering one would cut its target.
        files = [p for p in directory.iterdir() if p.is_file() and not p.is_symlink()]
    except FileNotFoundError:
        return []
    indexed: set[str] | None = None
    found: list[Path] = []
    for p in files:
        if p.name.endswith(OPEN_LOG_SUFFIX):
            found.append(p)
        elif p.name.endswith(LOG_SUFFIX) and not is_daily_log(p.name) and not p.name.startswith("."):
            # The writer writes a segment's sidecar before its final name exists, so a
            # NAME.bin without a sidecar is not a segment (a user's file, a copied log):
            # adopting it would hand it to retention. Only a missing index line is repaired.
            if not _stem(p).with_name(_stem(p).name + SIDECAR_SUFFIX).exists():
                continue
            if indexed is None:
                indexed = _indexed_paths(directory)
            if p.name not in indexed:
                found.append(p)
    found.sort(key=lambda p: (p.stat().st_mtime, p.name))
    return found


def recover_directory(directory: str | os.PathLike[str], fsync: bool = True) -> list[Recovered]:
    """Recover everything `find_unfinished` lists. [] if there is nothing to do."""
    return [recover_partial(p, fsync=fsync) for p in find_unfinished(directory)]
