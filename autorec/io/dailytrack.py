"""A daily track: records appended, continuously, to one log file per UTC day of stream time.

The writer keeps two: the telemetry track (`telemetry-YYYYMMDD.bin`, every
non-image message: segments keep the interesting periods whole, camera
included, and the telemetry track keeps the sensor history of the quiet hours
too, at ~1-3 KB/s, tens of MB a night) and the timelapse track
(`timelapse-YYYYMMDD.bin`, one camera frame every `output.timelapse`). A track
is named by its prefix (`autorec.outdir` owns the prefixes). Files are in the
upstream log format, in the output directory; a restarted recorder appends to
the day's file (after cutting a partial final record).

Contract (used from the writer's thread only):
- `write(time, payload)` appends one record to the file of `time`'s UTC day;
  `flush()` hands buffered records to the OS; `close()` flushes and closes.
- Write errors (full disk, a refused file, anything unexpected) never
  raise: the records are counted in `dropped` and the error in `errors`,
  `last_error` keeps the message, and the next write tries again. The first
  error is logged, then at most one line a minute while errors go on (with
  the count lost so far), never one per record, and one line when a flush
  writes records again (`autorec.io.failurelog`).
- A day's file deleted or replaced while it is written (by a user, a cleanup
  script) is noticed at the next `flush()` after at least `CHECK_EVERY`
  seconds (the path's inode against the open file's): the track goes on in
  a new file under the day's name, with the records not yet flushed, rather
  than into a deleted file for the rest of the day.
"""

from __future__ import annotations

import logging
import os
import time as _time
from pathlib import Path

from autorec.dates import utc_strftime
from autorec.io.failurelog import FailureLog
from autorec.io.logfile import LogWriteError, LogWriter
from autorec.outdir import daily_name

log = logging.getLogger(__name__)

CHECK_EVERY = 1.0  # seconds between two checks that the day's file is still the one written


def track_file_name(prefix: str, time: float) -> str:
    """The file name of the daily track `prefix` (e.g. `autorec.outdir.TELEMETRY_PREFIX`) holding stream time `time`."""
    day = utc_strftime(time, "%Y%m%d")  # never raises: a damaged time cannot stop the track
    return daily_name(prefix, day)


class DailyTrack:
    """The daily track `prefix` (`autorec.outdir.TELEMETRY_PREFIX`, `TIMELAPSE_PREFIX`) in `directory`.
    See the module docstring."""

    def __init__(self, directory: str | os.PathLike[str], prefix: str, fsync_on_close: bool = False) -> None:
        self.directory = Path(directory)
        self.prefix = prefix
        self.fsync_on_close = fsync_on_close
        self._writer: LogWriter | None = None
        self._name: str | None = None
        self._day: float | None = None  # the UTC day (epoch // 86400) of `_day_name`
        self._day_name = ""
        self.records = 0
        self.bytes = 0
        self.dropped = 0
        self.errors = 0
        self.last_error: str | None = None
        self._failures = FailureLog(log, count_unsaid=False)  # the message quotes the count lost so far
        self._checked_at = _time.monotonic()
        self.reopened = 0  # how often the day's file was found deleted or replaced, and started again

    @property
    def path(self) -> Path | None:
        return self._writer.path if self._writer is not None else None

    def write(self, time: float, payload: bytes) -> None:
        # The day's file name is worked out once a day, not per record (it was ~1 % of a live run).
        day = time // 86400.0 if time == time else None  # NaN: never a cached day
        if day is not None and day == self._day:
            name = self._day_name
        else:
            name = track_file_name(self.prefix, time)
            self._day, self._day_name = day, name
        try:
            if name != self._name or self._writer is None:
                self._rotate(name)
            assert self._writer is not None
            self._writer.write(payload)
            self.records += 1
            self.bytes += len(payload) + 4
        except Exception as exc:  # a loss is counted and reported, never a traceback per record
            self._failed(exc, 1)

    def flush(self) -> None:
        if self._writer is None:
            return
        now = _time.monotonic()
        if now - self._checked_at >= CHECK_EVERY:
            self._checked_at = now
            try:
                if not self._writer.still_named():
                    log.warning(
                        "%s was deleted or replaced while being written: going on in a new file of that name",
                        self._writer.path,
                    )
                    self._writer = self._writer.reopened()
                    self.reopened += 1
            except Exception as exc:  # the new file cannot be made: counted like any write error; retried
                self._failed(exc, 0)
                old, self._writer, self._name = self._writer, None, None
                if old is not None and not old.closed:
                    try:
                        old.close()
                    except OSError:
                        pass
                return
        written = self._writer.records
        try:
            self._writer.flush()
        except LogWriteError as exc:
            self.dropped += self._writer.dropped  # the LogWriter counted its lost records in its own `dropped`
            self._writer.dropped = 0
            self._failed(exc, 0)  # after: its line quotes the count lost so far, these records included
            return
        if self._writer.records > written:  # records really written (an empty buffer's flush proves nothing)
            self._failures.worked(
                "writing to %s works again (%d record(s) lost so far)", self._writer.path, self.dropped
            )

    def close(self) -> None:
        if self._writer is None:
            return
        try:
            self._writer.close()
        except OSError as exc:
            self.dropped += self._writer.dropped
            self._failed(exc, 0)
        self._writer = None
        self._name = None

    def _rotate(self, name: str) -> None:
        self.close()
        self.directory.mkdir(parents=True, exist_ok=True)
        self._writer = LogWriter(self.directory / name, mode="append", fsync_on_close=self.fsync_on_close)
        self._name = name

    def _failed(self, exc: BaseException, records: int) -> None:
        self.dropped += records
        self.errors += 1
        message = f"{self.prefix.rstrip('-')}: {exc}"
        self.last_error = message
        self._failures.failed(f"{message} ({self.dropped} record(s) lost so far; repeats logged at most once a minute)")
