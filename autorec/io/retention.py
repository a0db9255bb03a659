"""Retention: `output.keep` (age) and `output.max_total` (size) for closed segments.

The segments a recorder has closed are the lines of `index.jsonl` in the
output directory (each names its log with `path`, relative to the directory
or absolute). A segment's files are its log `NAME.bin`, its sidecar
`NAME.json` (or the `sidecar` the line names) and its exports beside it
(`NAME.mp4`, `NAME.mkv`, `NAME.mcap`, and a `.partial` one a crash left).

Contract:
- `plan_deletions(segments, policy, now)` is pure: it returns the segments
  to delete, oldest first. A segment is older than `keep` when its log was
  last modified more than `keep` seconds before `now` (the local clock, the
  same one that stamped the file: the rig's clock may differ). Then, while
  the total bytes of what is left exceed `max_total`, the oldest go. The
  newest closed segment is never deleted for size alone (a single segment
  larger than the budget is still the latest data).
- `apply_retention(directory, policy)` scans the index, deletes the planned
  segments' files (exports, sidecar, then log), then rewrites `index.jsonl`
  without their lines atomically (temp file, fsync, `os.replace`). Index
  lines it cannot parse and lines whose log is missing are kept as they are.
  Files that cannot be deleted are reported in `errors`, never raised, and
  their segment's index line is kept.
- `pinned(segment)` (optional; `output.keep_until_uploaded`) keeps a segment whatever its age
  and size say, until it returns False (its upload is confirmed); pinned segments still count
  towards `max_total`.
- Daily timelapse logs (`timelapse-YYYYMMDD.bin`, with their exports beside
  them) count as segments too, by the same age and size rules, except the
  newest one (today's, still being appended to). They have no index line.
  Telemetry logs are not covered.
- The index is read, filtered and replaced in one step: nobody may append to
  `index.jsonl` meanwhile. Pass the segment writer's `index_lock`
  (`SegmentWriter.index_lock`, held around its appends) or run retention
  where no segment can close concurrently.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from autorec.io.atomicfile import fsync_path, replace_file
from autorec.outdir import EXPORT_SUFFIXES, INDEX_NAME, LOG_SUFFIX, OPEN_SUFFIX, SIDECAR_SUFFIX, TIMELAPSE_PREFIX
from autorec.units import format_size, parse_duration, parse_size

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RetentionPolicy:
    """`keep` in seconds and `max_total` in bytes; None switches that limit off."""

    keep: float | None = None
    max_total: int | None = None

    @classmethod
    def from_config(cls, keep: str | float | None, max_total: str | int | None) -> RetentionPolicy:
        """From rule-file values (`7d`, `50GB`); ValueError as `autorec.units` words it."""
        return cls(
            keep=None if keep is None else parse_duration(keep),
            max_total=None if max_total is None else parse_size(max_total),
        )

    @property
    def active(self) -> bool:
        return self.keep is not None or self.max_total is not None


@dataclass(frozen=True)
class SegmentFiles:
    """One closed segment as found on disk: its log, the files that go with it, their bytes and age."""

    log: Path
    files: tuple[Path, ...]  # every existing file of the segment, log included
    bytes: int
    modified: float  # the log's mtime, local epoch seconds
    index_line: int  # line number in index.jsonl (0-based)


@dataclass
class RetentionResult:
    deleted: list[SegmentFiles] = field(default_factory=list)
    freed_bytes: int = 0
    errors: list[str] = field(default_factory=list)
    kept_bytes: int = 0

    def message(self) -> str:
        names = ", ".join(s.log.name for s in self.deleted)
        return f"retention: deleted {len(self.deleted)} segment(s) ({format_size(self.freed_bytes)}): {names}"


def plan_deletions(
    segments: Sequence[SegmentFiles],
    policy: RetentionPolicy,
    now: float,
    pinned: Callable[[SegmentFiles], bool] | None = None,
) -> list[SegmentFiles]:
    """The segments `policy` removes, oldest first. Pure when `pinned` is; see the module docstring."""
    ordered = sorted(segments, key=lambda s: (s.modified, s.index_line))
    doomed: list[SegmentFiles] = []
    survivors: list[SegmentFiles] = []
    for seg in ordered:
        if policy.keep is not None and now - seg.modified > policy.keep:
            doomed.append(seg)
        else:
            survivors.append(seg)
    if policy.max_total is not None:
        total = sum(s.bytes for s in survivors)
        while total > policy.max_total and len(survivors) > 1:
            seg = survivors.pop(0)
            doomed.append(seg)
            total -= seg.bytes
    if pinned is not None:
        doomed = [s for s in doomed if not pinned(s)]
    return doomed


def segment_files(log: Path) -> list[Path]:
    """The files that belong to the segment whose log is `log` and exist now."""
    stem = log.with_suffix("") if log.suffix == LOG_SUFFIX else log
    candidates = [stem.with_name(stem.name + s) for s in EXPORT_SUFFIXES]
    # An export a crash interrupted (`NAME.mp4.partial`) goes with its segment too.
    candidates += [stem.with_name(stem.name + s + OPEN_SUFFIX) for s in EXPORT_SUFFIXES]
    candidates.append(stem.with_name(stem.name + SIDECAR_SUFFIX))
    candidates.append(log)
    return [p for p in candidates if p.exists()]


def read_index(directory: Path) -> list[str]:
    """The index's lines (without newlines); [] when there is none. A cut final line is kept as is."""
    try:
        return (directory / INDEX_NAME).read_text(errors="replace").splitlines()
    except FileNotFoundError:
        return []


def _entry(directory: Path, line: str) -> tuple[Path, Path | None] | None:
    """`(log, sidecar named by the line or None)` for an index line, None if it names no log."""
    try:
        entry: Any = json.loads(line)
    except ValueError:
        return None
    if not isinstance(entry, dict) or not isinstance(entry.get("path"), str):
        return None
    log = directory / entry["path"]  # an absolute path stays absolute
    side = entry.get("sidecar")
    return log, (directory / side if isinstance(side, str) and side else None)


def scan(directory: Path, lines: Sequence[str]) -> list[SegmentFiles]:
    """The closed segments listed in `lines` whose log still exists."""
    found: list[SegmentFiles] = []
    for i, line in enumerate(lines):
        named = _entry(directory, line)
        if named is None:
            continue
        log, sidecar = named
        try:
            modified = log.stat().st_mtime
        except OSError:
            continue
        files = segment_files(log)
        if sidecar is not None and sidecar not in files and sidecar.exists() and sidecar != log:
            files.insert(-1, sidecar)
        size = 0
        for f in files:
            with contextlib.suppress(OSError):
                size += f.stat().st_size
        found.append(SegmentFiles(log, tuple(files), size, modified, i))
    return found


def scan_timelapse(directory: Path) -> list[SegmentFiles]:
    """The daily timelapse logs as segments without an index line (`index_line` -1), the newest left out."""
    try:
        logs = sorted(p for p in directory.glob(f"{TIMELAPSE_PREFIX}*{LOG_SUFFIX}") if p.is_file())
    except OSError:
        return []
    found: list[SegmentFiles] = []
    for log in logs[:-1]:  # the newest (by day in the name) may still be written to
        try:
            modified = log.stat().st_mtime
        except OSError:
            continue
        files = segment_files(log)
        size = 0
        for f in files:
            with contextlib.suppress(OSError):
                size += f.stat().st_size
        found.append(SegmentFiles(log, tuple(files), size, modified, -1))
    return found


def write_index(directory: Path, lines: Sequence[str]) -> None:
    """Replace `index.jsonl` with `lines` atomically and durably."""
    replace_file(directory / INDEX_NAME, "".join(line + "\n" for line in lines).encode(), fsync=True)
    with contextlib.suppress(OSError):
        fsync_path(directory)


def apply_retention(
    directory: str | os.PathLike[str],
    policy: RetentionPolicy,
    now: float | None = None,
    index_lock: contextlib.AbstractContextManager[Any] | None = None,
    pinned: Callable[[SegmentFiles], bool] | None = None,
) -> RetentionResult:
    """Delete what `policy` says must go and drop their index lines. See the module docstring."""
    directory = Path(directory)
    result = RetentionResult()
    if not policy.active:
        return result
    now = time.time() if now is None else now
    with index_lock if index_lock is not None else contextlib.nullcontext():
        lines = read_index(directory)
        segments = scan(directory, lines) + scan_timelapse(directory)
        doomed = plan_deletions(segments, policy, now, pinned)
        dropped_lines: set[int] = set()
        for seg in doomed:
            failed = False
            for f in seg.files:
                try:
                    f.unlink()
                except FileNotFoundError:
                    pass
                except OSError as exc:
                    failed = True
                    result.errors.append(f"retention: cannot delete {f}: {exc.strerror or exc}")
            if failed:
                continue
            if seg.index_line >= 0:
                dropped_lines.add(seg.index_line)
            result.deleted.append(seg)
            result.freed_bytes += seg.bytes
        if dropped_lines:
            try:
                write_index(directory, [line for i, line in enumerate(lines) if i not in dropped_lines])
            except OSError as exc:
                result.errors.append(f"retention: cannot rewrite {directory / INDEX_NAME}: {exc.strerror or exc}")
        gone = {id(s) for s in result.deleted}
        result.kept_bytes = sum(s.bytes for s in segments if id(s) not in gone)
    return result


class RetentionWorker:
    """Runs `apply_retention` in its own thread whenever asked, so deleting never delays recording.

    Register it as a segment-writer observer (`segment_closed` asks for a run)
    and call `request()` once at start; requests made while a run is going
    are coalesced into one more run. Each run's result is logged, counted, and
    passed to `on_result` (from the worker thread).
    """

    def __init__(
        self,
        directory: str | os.PathLike[str],
        policy: RetentionPolicy,
        index_lock: contextlib.AbstractContextManager[Any] | None = None,
        on_result: Callable[[RetentionResult], None] | None = None,
        pinned: Callable[[SegmentFiles], bool] | None = None,
    ) -> None:
        self.directory = Path(directory)
        self.pinned = pinned
        self.policy = policy
        self.index_lock = index_lock
        self.on_result = on_result
        self.runs = 0
        self.deleted = 0  # segments deleted so far
        self.freed_bytes = 0
        self.errors = 0
        self._wake = threading.Condition()
        self._pending = False
        self._stopping = False
        self._thread: threading.Thread | None = None

    def start(self) -> RetentionWorker:
        if self.policy.active and self._thread is None:
            self._thread = threading.Thread(target=self._run, name="autorec-retention", daemon=True)
            self._thread.start()
        return self

    def request(self) -> None:
        with self._wake:
            self._pending = True
            self._wake.notify()

    # The segment writer's observer interface.
    def segment_opened(self, segment: object) -> None:
        pass

    def segment_closed(self, segment: object) -> None:
        self.request()

    def close(self, timeout: float | None = None) -> bool:
        """Stop after the run in progress (pending requests are dropped). True if stopped in time."""
        with self._wake:
            self._stopping = True
            self._wake.notify()
        if self._thread is None:
            return True
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def _run(self) -> None:
        while True:
            with self._wake:
                while not self._pending and not self._stopping:
                    self._wake.wait()
                if self._stopping:
                    return
                self._pending = False
            self.run_once()

    def run_once(self, now: float | None = None) -> RetentionResult:
        """One retention pass in the calling thread. Never raises."""
        try:
            result = apply_retention(
                self.directory, self.policy, now=now, index_lock=self.index_lock, pinned=self.pinned
            )
        except Exception as exc:  # an unexpected failure must not end retention for the night
            result = RetentionResult(errors=[f"retention: {exc}"])
        self.runs += 1
        self.deleted += len(result.deleted)
        self.freed_bytes += result.freed_bytes
        self.errors += len(result.errors)
        if result.deleted:
            log.info("%s", result.message())
        for error in result.errors:
            log.error("%s", error)
        if self.on_result is not None:
            try:
                self.on_result(result)
            except Exception:
                log.exception("retention: result callback failed")
        return result
