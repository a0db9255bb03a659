"""The segment writer: carries out the segmenter's actions on disk, in its own thread.

Files in the output directory, per segment `NAME` (from `output.name`):
- `NAME.bin.partial` while the segment is open, renamed to `NAME.bin` when it
  closes: the upstream log format, only records that parsed, nothing else;
- `NAME.json`, the sidecar, written (atomically) when the segment closes:
  `start`/`end` (epoch seconds of the first and last record), rules, firings
  with times and evidence, snapshot and pre-roll extent, counts and bytes per
  kind, gaps, dropped counts (the keys are built in `_sidecar`);
- `index.jsonl`: one line per closed segment (a summary of the sidecar plus
  `path` and `sidecar`, relative to the directory), appended under
  `index_lock` (retention rewrites the index under the same lock); an append
  that fails (a full disk) is cut back, so the index never holds half a line;
- `telemetry-YYYYMMDD.bin` (a daily track, `autorec.io.dailytrack`) when telemetry is on;
- `timelapse-YYYYMMDD.bin` (a daily track too; the frames are chosen by `autorec.core.timelapse`)
  when the timelapse track is on: `timelapse(time, payload)` appends like `telemetry`, same
  queue, same drop-and-count when full, same error handling.

Contract:
- `submit(actions)` and `telemetry(time, payload)` are called from the
  receiving thread and never block it in live mode: the queue between them
  and the writer thread is bounded in payload bytes (`queue_max_bytes`).
  When a message does not fit, it is dropped whole, counted (`stats`), and
  recorded as a gap ("writer_queue_full", with records and bytes) in the
  segment's sidecar: never silently. With `block=True` (a backtest, offline, where
  nothing is lost by waiting) `submit` waits for room instead.
- Everything written is handed to the OS at least every `flush_interval`
  seconds (default 1 s), so a crash loses at most about a second.
- Records wait in the queue up to `batch_delay` for more before the writer thread takes
  them (default: the flush interval, so they are taken at the next flush, which hands them
  to the OS anyway), unless the queue holds a segment open or close, a gap, a quarter of
  its bound, or a producer waits for room: the thread then wakes at once. Each wake-up
  costs a thread switch and a turn of the GIL: per message that was 60 wake-ups a second
  at 10 fps; batched, about one a second plus the opens and closes.
- Disk errors (ENOSPC, EIO) never kill the thread: the records are counted as
  dropped, the segment gets a "write_error" gap, and later writes retry.
- Observers (`SegmentObserver`) are told when a segment file is opened and
  when it is closed (after rename, sidecar and index line). They run in the
  writer thread and must return quickly: hooks, video export, retention and
  status hand their work to their own workers.
- `close(timeout)` writes what is queued, closes the open segment as it
  stands (the segmenter's shutdown `CloseSegment` should be submitted first),
  and stops the thread.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import threading
import time as _time
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from autorec import __version__
from autorec.core.segmenter import Action, CloseSegment, Gap, OpenSegment, Write
from autorec.core.segmentname import render_segment_name
from autorec.core.timelapse import PREFIX as TIMELAPSE_PREFIX
from autorec.io.atomicfile import append_json_line, write_json
from autorec.io.dailytrack import DailyTrack
from autorec.io.failurelog import FailureLog
from autorec.io.logfile import LogWriteError, LogWriter
from autorec.outdir import (
    INDEX_NAME,
    LOG_SUFFIX,
    OPEN_LOG_SUFFIX,
    SIDECAR_SUFFIX,
    SIDECAR_VERSION,
    TELEMETRY_PREFIX,
    IndexLine,
)
from autorec.units import format_size, with_iso_times

log = logging.getLogger(__name__)

MAX_FIRINGS = 100  # firings listed in full in a sidecar; beyond, counted (see SegmentWriter._firings)


@dataclass
class SegmentFile:
    """What observers learn about a segment. Paths are absolute; times are epoch seconds."""

    seq: int
    part: int
    name: str
    path: Path  # NAME.bin (exists once closed)
    partial: Path  # NAME.bin.partial (exists while open)
    sidecar: Path  # NAME.json (exists once closed)
    start: float
    rules: tuple[str, ...]
    end: float | None = None
    close_reason: str | None = None
    records: int = 0
    bytes: int = 0
    summary: dict[str, Any] = field(default_factory=dict)  # the index line, once closed


class SegmentObserver:
    """Base class for things that act on segment events (hooks, video export, status). Override what you need."""

    def segment_opened(self, segment: SegmentFile) -> None:
        """A segment file was created (`segment.partial`)."""

    def segment_closed(self, segment: SegmentFile) -> None:
        """A segment was finalised: `segment.path`, `segment.sidecar` and its index line exist."""


@dataclass(frozen=True, slots=True)
class _Telemetry:
    time: float
    payload: bytes


@dataclass(frozen=True, slots=True)
class _Timelapse:
    time: float
    payload: bytes


@dataclass(frozen=True, slots=True)
class _Dropped:
    """Messages the queue had no room for (coalesced): a gap in the open segment."""

    start: float
    end: float
    records: int
    bytes: int


_STOP = object()


@dataclass
class WriterStats:
    """Counters, safe to read from another thread (plain attributes)."""

    segments: int = 0  # closed and finalised
    records: int = 0  # segment records handed to the OS
    bytes: int = 0  # segment bytes (headers included) handed to the OS
    dropped: int = 0  # segment messages dropped (queue full or write error)
    dropped_bytes: int = 0
    telemetry_records: int = 0
    telemetry_dropped: int = 0  # queue full
    telemetry_errors: int = 0  # records lost to disk errors
    timelapse_records: int = 0
    timelapse_bytes: int = 0  # with log headers
    timelapse_dropped: int = 0  # queue full
    timelapse_errors: int = 0  # records lost to disk errors
    errors: int = 0  # disk errors (each logged)
    queued_bytes: int = 0
    open_segment: SegmentFile | None = None
    last_segment: SegmentFile | None = None


class _Current:
    """The segment being written, with what its sidecar will say."""

    def __init__(self, action: OpenSegment, file: SegmentFile, writer: LogWriter | None) -> None:
        self.action = action
        self.file = file
        self.writer = writer
        self.first: float | None = None
        self.last: float | None = None
        self.counts: dict[str, int] = {}
        self.kind_bytes: dict[str, int] = {}
        self.origins: dict[str, int] = {}
        self.gaps: list[Gap] = []
        self.pending: list[Write] = []  # written to the LogWriter's buffer, not yet to the OS
        self.dropped = 0
        self.dropped_bytes = 0


class SegmentWriter:
    """Writes segments and telemetry in a background thread. See the module docstring."""

    def __init__(
        self,
        directory: str | os.PathLike[str],
        name_template: str = "{start:%Y%m%dT%H%M%SZ}-{rules}",
        *,
        fsync: bool = True,
        telemetry: bool = True,
        queue_max_bytes: int = 512_000_000,
        flush_interval: float = 1.0,
        batch_delay: float | None = None,
        block: bool = False,
        observers: Sequence[SegmentObserver] = (),
        max_firings: int = MAX_FIRINGS,
        timelapse: bool = False,
    ) -> None:
        self.directory = Path(directory).absolute()
        self.max_firings = max_firings
        self.name_template = name_template
        self.fsync = fsync
        self.queue_max_bytes = queue_max_bytes
        self.flush_interval = flush_interval
        self.batch_delay = flush_interval if batch_delay is None else batch_delay
        self.block = block
        self.observers: list[SegmentObserver] = list(observers)
        self.index_lock = threading.Lock()
        self.stats = WriterStats()
        self._error_log: dict[str, FailureLog] = {}  # kind of error (its message without numbers) -> its lines
        self._telemetry = DailyTrack(self.directory, TELEMETRY_PREFIX, fsync_on_close=fsync) if telemetry else None
        self._timelapse = DailyTrack(self.directory, TIMELAPSE_PREFIX, fsync_on_close=fsync) if timelapse else None

        self._queue: deque[Any] = deque()
        self._cond = threading.Condition()
        self._queued = 0  # payload bytes waiting in the queue
        self._pending_drop: _Dropped | None = None  # producer side, coalesced until there is room
        self._segment_open = False  # producer side: between OpenSegment and CloseSegment
        self._current: _Current | None = None
        self._thread: threading.Thread | None = None
        self._last_flush = _time.monotonic()
        self._batch_due = 0.0  # monotonic time at which the writer takes a queue of records only
        self._urgent = False  # the queue holds something the writer takes at once (see the contract)

    # -- producer side -------------------------------------------------
    def start(self) -> SegmentWriter:
        self.directory.mkdir(parents=True, exist_ok=True)
        self._thread = threading.Thread(target=self._run, name="autorec-writer", daemon=True)
        self._thread.start()
        return self

    def add_observer(self, observer: SegmentObserver) -> None:
        self.observers.append(observer)

    def submit(self, actions: Iterable[Action]) -> None:
        """Queue the segmenter's actions in order. Never blocks in live mode (see the contract)."""
        with self._cond:
            was_empty = not self._queue
            for a in actions:
                if isinstance(a, Write):
                    size = len(a.payload)
                    if not self._room(size):
                        self._drop(a.time, size)
                        continue
                    self._flush_drop()
                    self._queued += size
                else:
                    self._urgent = True  # an open, a close: the writer acts on it now
                    if isinstance(a, OpenSegment):
                        self._pending_drop = None
                        self._segment_open = True
                    elif isinstance(a, CloseSegment):
                        self._flush_drop()
                        self._segment_open = False
                # _room may have waited (block mode) while the writer emptied the queue: a new batch
                was_empty = was_empty or not self._queue
                self._queue.append(a)
            self.stats.queued_bytes = self._queued
            self._wake(was_empty)

    def telemetry(self, time: float, payload: bytes) -> None:
        """Queue a message for the telemetry track (dropped and counted if the queue is full)."""
        if self._telemetry is not None:
            self._enqueue_track(_Telemetry(time, payload), "telemetry_dropped")

    def timelapse(self, time: float, payload: bytes) -> None:
        """Queue a record for the timelapse track (dropped and counted if the queue is full)."""
        if self._timelapse is not None:
            self._enqueue_track(_Timelapse(time, payload), "timelapse_dropped")

    def _enqueue_track(self, item: _Telemetry | _Timelapse, dropped_counter: str) -> None:
        # A daily track has no gaps list: a record the queue has no room for is counted, and the count
        # is its record.
        with self._cond:
            size = len(item.payload)
            if not self._room(size):
                setattr(self.stats, dropped_counter, getattr(self.stats, dropped_counter) + 1)
                return
            was_empty = not self._queue
            self._queued += size
            self._queue.append(item)
            self._wake(was_empty)

    def _wake(self, was_empty: bool) -> None:
        # Called with the condition held, after queueing. The writer sleeps until the batch is due;
        # it is told when the batch starts (to time it) and when the batch cannot wait.
        if self._queued * 4 >= self.queue_max_bytes or self.batch_delay <= 0:
            self._urgent = True
        if was_empty:
            self._batch_due = _time.monotonic() + self.batch_delay
        # The writer sleeps until the next flush at most: a new batch needs telling only when it is
        # due before that. (_last_flush is the writer's; a stale value costs one wake-up, or a batch
        # taken at the flush, which is the bound anyway.)
        if self._urgent or (was_empty and self._batch_due < self._last_flush + self.flush_interval):
            self._cond.notify()

    def close(self, timeout: float | None = None) -> bool:
        """Write out what is queued and stop. True if the thread finished within `timeout`."""
        with self._cond:
            self._flush_drop()
            self._queue.append(_STOP)
            self._urgent = True
            self._cond.notify()
        if self._thread is None:
            self._run()
            return True
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def _room(self, size: int) -> bool:
        # Called with the condition held. A message larger than the whole queue
        # still goes through when the queue is empty: dropping it could never end.
        while self._queued and self._queued + size > self.queue_max_bytes:
            if not self.block or self._thread is None or not self._thread.is_alive():
                return False
            self._urgent = True  # the writer makes room now, not when the batch is due
            self._cond.notify()
            self._cond.wait(0.5)
        return True

    def _drop(self, t: float, size: int) -> None:
        self.stats.dropped += 1
        self.stats.dropped_bytes += size
        if not self._segment_open:
            return
        d = self._pending_drop
        if d is None:
            self._pending_drop = _Dropped(t, t, 1, size)
        else:
            self._pending_drop = _Dropped(d.start, t, d.records + 1, d.bytes + size)

    def _flush_drop(self) -> None:
        if self._pending_drop is not None:
            self._queue.append(self._pending_drop)
            self._pending_drop = None
            self._urgent = True

    # -- writer thread -------------------------------------------------
    def _run(self) -> None:
        while True:
            with self._cond:
                while True:
                    now = _time.monotonic()
                    wait = self.flush_interval - (now - self._last_flush)
                    if self._queue:
                        if self._urgent or now >= self._batch_due:
                            break
                        wait = min(wait, self._batch_due - now)
                    if wait <= 0:
                        break
                    self._cond.wait(wait)
                batch = list(self._queue)
                self._queue.clear()
                self._urgent = False
                freed = sum(len(x.payload) for x in batch if isinstance(x, (Write, _Telemetry, _Timelapse)))
                self._queued -= freed
                self.stats.queued_bytes = self._queued
                self._cond.notify_all()  # a blocked producer may go on
            stop = False
            for item in batch:
                if item is _STOP:
                    stop = True
                    break
                self._handle(item)
            if stop or _time.monotonic() - self._last_flush >= self.flush_interval:
                self._flush()
            if stop:
                self._shutdown()
                return

    def _handle(self, item: Any) -> None:
        try:
            if isinstance(item, Write):
                self._write(item)
            elif isinstance(item, _Telemetry):
                if self._telemetry is not None:
                    self._telemetry.write(item.time, item.payload)
                    self.stats.telemetry_records = self._telemetry.records
                    self.stats.telemetry_errors = self._telemetry.dropped
            elif isinstance(item, _Timelapse):
                if self._timelapse is not None:
                    self._timelapse.write(item.time, item.payload)
                    self.stats.timelapse_records = self._timelapse.records
                    self.stats.timelapse_bytes = self._timelapse.bytes
            elif isinstance(item, OpenSegment):
                self._open(item)
            elif isinstance(item, CloseSegment):
                self._close(item)
            elif isinstance(item, _Dropped):
                if self._current is not None:
                    self._current.gaps.append(
                        Gap(item.start, item.end, "writer_queue_full", records=item.records, bytes=item.bytes)
                    )
                    self._current.dropped += item.records
                    self._current.dropped_bytes += item.bytes
                log.warning(
                    "writer: disk too slow, %d message(s) (%s) dropped from the open segment",
                    item.records,
                    format_size(item.bytes),
                )
        except Exception:  # never let one bad item kill the writer
            self.stats.errors += 1
            log.exception("writer: unexpected error handling %s", type(item).__name__)

    def _unique_name(self, base: str) -> str:
        name, n = base, 1
        while any(
            # lexists: a symbolic link (even a dangling one) takes the name too; it is never written through.
            os.path.lexists(self.directory / f"{name}{suffix}")
            for suffix in (LOG_SUFFIX, OPEN_LOG_SUFFIX, SIDECAR_SUFFIX)
        ):
            n += 1
            name = f"{base}-{n}"
        return name

    def _open(self, a: OpenSegment) -> None:
        if self._current is not None:  # never expected: a CloseSegment was lost
            self._close(CloseSegment(0, 0, a.start, a.start, "superseded", (), (), ()))
        name = self._unique_name(render_segment_name(self.name_template, a.start, list(a.rules), a.seq))
        file = SegmentFile(
            seq=a.seq,
            part=a.part,
            name=name,
            path=self.directory / f"{name}{LOG_SUFFIX}",
            partial=self.directory / f"{name}{OPEN_LOG_SUFFIX}",
            sidecar=self.directory / f"{name}{SIDECAR_SUFFIX}",
            start=a.start,
            rules=a.rules,
        )
        writer: LogWriter | None = None
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            writer = LogWriter(file.partial, mode="new", fsync_on_close=self.fsync)
        except OSError as exc:
            self._error(f"cannot create {file.partial}: {exc.strerror or exc}")
        self._current = _Current(a, file, writer)
        self.stats.open_segment = file
        log.info("segment open: %s (%s)", name, ", ".join(a.rules))
        self._notify("segment_opened", file)

    def _write(self, w: Write) -> None:
        cur = self._current
        if cur is None:
            return  # no segment open (never expected: the segmenter opens before it writes)
        if cur.writer is None:
            self._lost(cur, w.time, w.time, 1, len(w.payload), "write_error")
            return
        # Records sit in the LogWriter's buffer until it flushes; count them in
        # the sidecar only once they reached the OS, so it never claims more than the file holds.
        cur.pending.append(w)
        before = cur.writer.records
        try:
            cur.writer.write(w.payload)
        except LogWriteError as exc:
            self._write_failed(cur, exc)
            return
        if cur.writer.records != before:
            self._commit(cur)

    def _commit(self, cur: _Current) -> None:
        for w in cur.pending:
            if cur.first is None:
                cur.first = w.time
            cur.last = w.time
            cur.counts[w.kind] = cur.counts.get(w.kind, 0) + 1
            cur.kind_bytes[w.kind] = cur.kind_bytes.get(w.kind, 0) + len(w.payload)
            cur.origins[w.origin] = cur.origins.get(w.origin, 0) + 1
        cur.pending.clear()

    def _write_failed(self, cur: _Current, exc: LogWriteError) -> None:
        assert cur.writer is not None
        cur.writer.dropped = 0
        lost = cur.pending
        cur.pending = []
        if lost:
            self._lost(cur, lost[0].time, lost[-1].time, len(lost), sum(len(w.payload) for w in lost), "write_error")
        self._error(str(exc))

    def _lost(self, cur: _Current, start: float, end: float, records: int, size: int, reason: str) -> None:
        cur.dropped += records
        cur.dropped_bytes += size
        self.stats.dropped += records
        self.stats.dropped_bytes += size
        last = cur.gaps[-1] if cur.gaps else None
        if last is not None and last.reason == reason and last.end is not None and last.end <= start:
            cur.gaps[-1] = Gap(last.start, end, reason, last.records + records, last.bytes + size)
        else:
            cur.gaps.append(Gap(start, end, reason, records, size))

    def _flush(self) -> None:
        self._last_flush = _time.monotonic()
        cur = self._current
        if cur is not None and cur.writer is not None:
            try:
                cur.writer.flush()
                self._commit(cur)
            except LogWriteError as exc:
                self._write_failed(cur, exc)
            # against what the file was known to hold, as for bytes: the LogWriter also counts the
            # records it hands to the OS between flushes (a full buffer)
            self.stats.records += cur.writer.records - cur.file.records
            self.stats.bytes += cur.writer.bytes - cur.file.bytes
            cur.file.records = cur.writer.records
            cur.file.bytes = cur.writer.bytes
        if self._telemetry is not None:
            self._telemetry.flush()
            self.stats.telemetry_errors = self._telemetry.dropped
        if self._timelapse is not None:
            self._timelapse.flush()
            self.stats.timelapse_errors = self._timelapse.dropped

    def _close(self, c: CloseSegment) -> None:
        cur = self._current
        if cur is None:
            return
        self._current = None
        file = cur.file
        records = size = 0
        if cur.writer is not None:
            try:
                cur.writer.close()
                self._commit(cur)
            except LogWriteError as exc:
                self._write_failed(cur, exc)
                with contextlib.suppress(OSError):
                    cur.writer.close()
            except OSError as exc:
                self._error(f"closing {file.partial}: {exc.strerror or exc}")
            self.stats.records += cur.writer.records - file.records
            records, size = cur.writer.records, cur.writer.bytes
        file.end = c.end
        file.close_reason = c.reason
        file.rules = c.rules
        self.stats.bytes += size - file.bytes
        file.records, file.bytes = records, size
        sidecar = self._sidecar(cur, c, records, size)
        if cur.writer is not None:
            # The sidecar is written before the log gets its final name, so a NAME.bin in
            # the directory always has its sidecar: recovery never has to guess whether a
            # sidecar-less .bin is ours (a user's own file must never be adopted, and then
            # deleted by retention). If the sidecar cannot be written, the log stays
            # NAME.bin.partial and the next start recovers it.
            try:
                write_json(file.sidecar, sidecar, fsync=self.fsync)
                os.replace(file.partial, file.path)
            except OSError as exc:
                self._error(f"cannot finalize {file.partial}: {exc.strerror or exc}")
                file.path = file.partial
        summary = self._summary(sidecar, file)
        file.summary = summary
        if cur.writer is not None:
            try:
                with self.index_lock:
                    append_json_line(self.directory / INDEX_NAME, summary, fsync=self.fsync)
            except OSError as exc:
                self._error(f"cannot append to {self.directory / INDEX_NAME}: {exc.strerror or exc}")
        self.stats.segments += 1
        self.stats.open_segment = None
        self.stats.last_segment = file
        log.info(
            "segment closed: %s (%s, %.1f s, %d records, %s%s)",
            file.path.name,
            c.reason,
            (cur.last - cur.first) if cur.first is not None and cur.last is not None else 0.0,
            records,
            format_size(size),
            f", {cur.dropped} dropped" if cur.dropped else "",
        )
        self._notify("segment_closed", file)

    def _sidecar(self, cur: _Current, c: CloseSegment, records: int, size: int) -> dict[str, Any]:
        a = cur.action
        gaps = [g.as_dict() for g in c.gaps] + [g.as_dict() for g in cur.gaps]
        gaps.sort(key=lambda g: g["start"])
        sidecar = {
            "version": SIDECAR_VERSION,
            "autorec": __version__,
            "name": cur.file.name,
            "path": cur.file.path.name,
            "seq": a.seq,
            "part": a.part,
            "start": cur.first,
            "end": cur.last,
            "segment_start": a.start,
            "segment_end": c.end,
            "open_reason": a.reason,
            "close_reason": c.reason,
            "rules": list(c.rules),
            **self._firings(c.firings),
            "snapshot": {"records": len(a.snapshot), "items": [s.as_dict() for s in a.snapshot]},
            "pre_roll": a.pre_roll.as_dict(),
            "records": records,
            "bytes": size,
            "counts": dict(sorted(cur.counts.items())),
            "bytes_per_kind": dict(sorted(cur.kind_bytes.items())),
            "origins": cur.origins,
            "gaps": gaps,
            "dropped": {"records": cur.dropped, "bytes": cur.dropped_bytes},
            "recovered": False,
            # Only near-miss clips (near_miss_clip) in it: what a rule would have missed.
            "near_miss": bool(c.firings) and all(f.evidence.get("near_miss") is True for f in c.firings),
        }
        return with_iso_times(sidecar)

    def _firings(self, firings: Sequence[Any]) -> dict[str, Any]:
        """The sidecar's firing keys: every firing up to `max_firings`; beyond, counts and the last one.

        A rule that fires on every frame for an hour must not grow a megabyte sidecar: the first
        `max_firings` are kept in full (what started the segment), `firing_counts` counts them all
        per rule, and `firings_omitted` says how many are left out and holds the last one.
        """
        counts: dict[str, int] = {}
        for f in firings:
            counts[f.rule] = counts.get(f.rule, 0) + 1
        out: dict[str, Any] = {"firings": [f.as_dict() for f in firings[: self.max_firings]], "firing_counts": counts}
        if len(firings) > self.max_firings:
            out["firings_omitted"] = {
                "count": len(firings) - self.max_firings,
                "last": firings[-1].as_dict(),
                "note": f"only the first {self.max_firings} firings are listed; firing_counts counts them all",
            }
        return out

    def _summary(self, sidecar: dict[str, Any], file: SegmentFile) -> dict[str, Any]:
        return IndexLine.from_sidecar(sidecar, file.path.name, file.sidecar.name).to_json()

    def _notify(self, method: str, file: SegmentFile) -> None:
        for obs in list(self.observers):
            try:
                getattr(obs, method)(file)
            except Exception:
                self.stats.errors += 1
                log.exception("writer: observer %s.%s failed", type(obs).__name__, method)

    def _error(self, message: str) -> None:
        """Count an error; log it, but one kind of error (the message with its numbers left out) at most once
        a minute: a disk that stays full is one line a minute with the count, not one per flush. (No "works
        again": the kinds are failed operations of many files, not one file a later success can vouch for.)"""
        self.stats.errors += 1
        kind = re.sub(r"\d+", "#", message)
        failures = self._error_log.get(kind)
        if failures is None:
            if len(self._error_log) > 256:
                self._error_log.clear()
            failures = self._error_log[kind] = FailureLog(log)
        failures.failed(f"writer: {message}")

    def _shutdown(self) -> None:
        if self._current is not None:
            c = self._current
            end = c.last if c.last is not None else c.file.start
            self._close(CloseSegment(c.action.seq, c.action.part, c.file.start, end, "shutdown", c.file.rules, (), ()))
        if self._telemetry is not None:
            self._telemetry.close()
            self.stats.telemetry_records = self._telemetry.records
            self.stats.telemetry_errors = self._telemetry.dropped
        if self._timelapse is not None:
            self._timelapse.close()
            self.stats.timelapse_records = self._timelapse.records
            self.stats.timelapse_bytes = self._timelapse.bytes
            self.stats.timelapse_errors = self._timelapse.dropped
