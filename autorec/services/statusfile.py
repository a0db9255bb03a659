"""The status file: one JSON object describing a running recorder, replaced atomically.

Monitoring scripts (or a human with `cat`/`jq`) read it at any moment and
always see a whole, valid document: it is written to a temporary file in the
same directory, flushed, and moved over the old one with `os.replace`.

Contract:
- `Status` holds the fields; `as_dict()` is the JSON shape (stable keys:
  `updated`, `pid`, `connected`, `msg_per_s`, `open_segment`, `last_segment`,
  `disk_free`, `disk_total`, `disk_below_floor`, `counters`, `alerts`).
- `write_status(path, status)` never leaves a partial file at `path`; on an
  OSError (e.g. a full disk) the old file stays and the error is raised for
  the caller to count.
- `StatusFile` adds the cadence: `due(now)` says when a write is due
  (every `interval` seconds of the caller's monotonic clock); it keeps no
  clock itself.
- `RateMeter` gives messages per second over a sliding window, fed counts
  with the caller's monotonic time.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import time
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from autorec.core.streamitems import StreamListener
from autorec.io.failurelog import FailureLog
from autorec.units import with_iso_times

log = logging.getLogger(__name__)


@dataclass
class Status:
    """A snapshot of the recorder for the status file. Times are epoch seconds."""

    updated: float
    connected: bool
    msg_per_s: float = 0.0
    open_segment: dict[str, Any] | None = None  # e.g. {"path", "start", "rules", "bytes"}
    last_segment: dict[str, Any] | None = None  # e.g. {"path", "start", "end", "bytes"}
    disk_free: int | None = None
    disk_total: int | None = None
    disk_below_floor: bool = False
    counters: dict[str, int] = field(default_factory=dict)
    alerts: list[Any] = field(default_factory=list)  # alerts currently raised (AlertMonitor.status())
    scores: dict[str, Any] = field(default_factory=dict)  # rule -> latest {time, score, threshold, ratio}
    pid: int = field(default_factory=os.getpid)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def segment_info(segment: Any) -> dict[str, Any] | None:
    """The status file's view of a writer `SegmentFile` (duck-typed; None stays None)."""
    if segment is None:
        return None
    path = getattr(segment, "path", None)
    partial = getattr(segment, "partial", None)
    closed = getattr(segment, "end", None) is not None
    shown = path if closed or partial is None else partial
    return {
        "path": str(shown) if shown is not None else None,
        "start": getattr(segment, "start", None),
        "end": getattr(segment, "end", None),
        "rules": list(getattr(segment, "rules", ()) or ()),
        "records": getattr(segment, "records", 0),
        "bytes": getattr(segment, "bytes", 0),
        "close_reason": getattr(segment, "close_reason", None),
    }


def write_status(path: str | os.PathLike[str], status: Status | dict[str, Any]) -> None:
    """Replace `path` with `status` as JSON, atomically. See the module docstring."""
    path = Path(path)
    data = with_iso_times(status.as_dict() if isinstance(status, Status) else status)
    blob = (json.dumps(data, indent=1, sort_keys=True, default=str) + "\n").encode()
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(blob)
            f.flush()
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def read_status(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The last status written at `path` (raises OSError / ValueError like `json.loads`)."""
    return json.loads(Path(path).read_text())


@dataclass
class StatusFile:
    """When to rewrite the status file: every `interval` seconds of the caller's monotonic clock."""

    path: Path
    interval: float = 2.0
    writes: int = 0
    errors: int = 0
    last_error: str | None = None
    _last: float | None = None

    def due(self, now: float) -> bool:
        return self._last is None or now - self._last >= self.interval

    def write(self, now: float, status: Status | dict[str, Any]) -> bool:
        """Write now; False (counted in `errors`, message in `last_error`) if the disk refused."""
        self._last = now
        try:
            write_status(self.path, status)
        except OSError as exc:
            self.errors += 1
            self.last_error = f"status file {self.path}: {exc.strerror or exc}"
            return False
        self.writes += 1
        return True


class RateMeter:
    """Events per second over the last `window` seconds of a monotonic clock.

    Counts are kept in buckets of `window / 50` seconds, not one sample per event:
    `add` runs for every message, and a busy rig sends thousands a second.
    """

    def __init__(self, window: float = 5.0):
        self.window = window
        self._bucket = window / 50
        self._samples: deque[list[float]] = deque()  # [bucket start, count]
        self._sum = 0
        self._first: float | None = None

    def add(self, now: float, count: int = 1) -> None:
        if self._first is None:
            self._first = now
        samples = self._samples
        if samples and now - samples[-1][0] < self._bucket:
            samples[-1][1] += count
        else:
            samples.append([now, count])
        self._sum += count
        self._trim(now)

    def rate(self, now: float) -> float:
        self._trim(now)
        if self._first is None:
            return 0.0
        # Until a whole window has passed, divide by the time actually observed (at least 1 s,
        # so the first message does not read as a burst of millions per second).
        span = min(self.window, max(now - self._first, 1.0))
        return self._sum / span

    def _trim(self, now: float) -> None:
        while self._samples and self._samples[0][0] <= now - self.window:
            self._sum -= self._samples.popleft()[1]


class StatusReporter(StreamListener):
    """A stream listener that keeps the status file up to date.

    The pipeline calls `connected`/`disconnected`/`message`/`tick`; every
    `interval` seconds of `clock` (monotonic) one of those calls rewrites the
    file from what it has seen plus what the callables return:
    `counters()` (a flat dict of ints), `alerts()` (AlertMonitor.status()),
    `writer_stats()` (the writer's stats: `open_segment`, `last_segment`),
    and `disk` (a `DiskWatch`, for free/total/below-floor; it is not polled
    here). A failed write is counted and logged, then at most once a minute
    with the count while writes fail, then "works again" (`autorec.io.failurelog`);
    recording is never interrupted.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        interval: float = 2.0,
        counters: Callable[[], dict[str, int]] | None = None,
        alerts: Callable[[], list[Any]] | None = None,
        writer_stats: Callable[[], Any] | None = None,
        disk: Any = None,
        scores: Callable[[], dict[str, Any]] | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.file = StatusFile(Path(path), interval)
        self.counters = counters
        self.alerts = alerts
        self.writer_stats = writer_stats
        self.disk = disk
        self.scores = scores
        self.clock = clock
        self.wall_clock = wall_clock
        self.is_connected = False
        self.meter = RateMeter()
        self._failures = FailureLog(log, count_unsaid=False, clock=clock)  # its lines quote `errors`

    def snapshot(self, now: float) -> Status:
        ws = self.writer_stats() if self.writer_stats is not None else None
        floor = getattr(self.disk, "floor", None)
        return Status(
            updated=self.wall_clock(),
            connected=self.is_connected,
            msg_per_s=round(self.meter.rate(now), 2),
            open_segment=segment_info(getattr(ws, "open_segment", None)),
            last_segment=segment_info(getattr(ws, "last_segment", None)),
            disk_free=getattr(floor, "last_free", None),
            disk_total=getattr(floor, "last_total", None),
            disk_below_floor=bool(getattr(floor, "below", False)),
            counters=dict(self.counters()) if self.counters is not None else {},
            alerts=list(self.alerts()) if self.alerts is not None else [],
            scores=dict(self.scores()) if self.scores is not None else {},
        )

    def update(self, force: bool = False, now: float | None = None) -> bool:
        """Rewrite the file if due (or `force`). True if it was written now. `now`: `clock()` if None."""
        if now is None:
            now = self.clock()
        if not force and not self.file.due(now):
            return False
        try:
            status = self.snapshot(now)
        except Exception:  # a broken callable must not stop the recorder
            log.exception("status: cannot collect the status")
            self.file._last = now
            return False
        ok = self.file.write(now, status)
        if ok:
            file = self.file
            self._failures.worked("status: writing to %s works again (%d failed so far)", file.path, file.errors)
        else:
            self._failures.failed(
                f"{self.file.last_error} (status updates continue to be tried; {self.file.errors} failed so far)"
            )
        return ok

    # -- the pipeline's StreamListener interface ---------------------------------------------
    def connected(self, t: float) -> None:
        self.is_connected = True
        self.update(force=True)

    def disconnected(self, t: float) -> None:
        self.is_connected = False
        self.update(force=True)

    def message(self, t: float, kind: str | None) -> None:
        self.is_connected = True
        now = self.clock()
        self.meter.add(now)
        self.update(now=now)

    def tick(self, t: float) -> None:
        self.update()
