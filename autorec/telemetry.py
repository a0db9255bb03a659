"""The telemetry track: every non-image message, continuously, in a daily log.

Segments keep the interesting periods whole (camera included); the telemetry
track keeps the sensor history of the quiet hours too, at ~1-3 KB/s (tens of
MB a night). Files are `telemetry-YYYYMMDD.bin` in the output directory, in
the upstream log format, one per UTC day of stream time; a restarted
recorder appends to the day's file (after cutting a partial final record).

Contract (used from the writer's thread only):
- `write(time, payload)` appends one record to the file of `time`'s UTC day;
  `flush()` hands buffered records to the OS; `close()` flushes and closes.
- Write errors (full disk) never raise: the records are counted in
  `dropped` and the error in `errors`, `last_error` keeps the message, and
  the next write tries again.
"""

from __future__ import annotations

import datetime as _dt
import logging
import os
from pathlib import Path

from autorec.logfile import LogWriteError, LogWriter

log = logging.getLogger("autorec.telemetry")

PREFIX = "telemetry-"


def telemetry_name(time: float, prefix: str = PREFIX) -> str:
    """The file name of the telemetry log holding stream time `time` (`prefix`: another daily track)."""
    day = _dt.datetime.fromtimestamp(time, tz=_dt.timezone.utc).strftime("%Y%m%d")
    return f"{prefix}{day}.bin"


def is_telemetry_kind(kind: str | None) -> bool:
    """Whether messages of `kind` go to the telemetry track (everything but camera frames)."""
    return kind is not None and kind != "image"


class TelemetryLog:
    """Daily telemetry logs in `directory`. See the module docstring.

    `prefix` names another daily track with the same behaviour (the timelapse track:
    `autorec.timelapse.PREFIX`).
    """

    def __init__(self, directory: str | os.PathLike[str], fsync_on_close: bool = False, prefix: str = PREFIX) -> None:
        self.directory = Path(directory)
        self.prefix = prefix
        self.fsync_on_close = fsync_on_close
        self._writer: LogWriter | None = None
        self._name: str | None = None
        self.records = 0
        self.bytes = 0
        self.dropped = 0
        self.errors = 0
        self.last_error: str | None = None

    @property
    def path(self) -> Path | None:
        return self._writer.path if self._writer is not None else None

    def write(self, time: float, payload: bytes) -> None:
        name = telemetry_name(time, self.prefix)
        try:
            if name != self._name or self._writer is None:
                self._rotate(name)
            assert self._writer is not None
            self._writer.write(payload)
            self.records += 1
            self.bytes += len(payload) + 4
        except (OSError, ValueError) as exc:
            self._failed(exc, 1)

    def flush(self) -> None:
        if self._writer is None:
            return
        try:
            self._writer.flush()
        except LogWriteError as exc:
            self._failed(exc, 0)  # the LogWriter counted its lost records in its own `dropped`
            self.dropped += self._writer.dropped
            self._writer.dropped = 0

    def close(self) -> None:
        if self._writer is None:
            return
        try:
            self._writer.close()
        except OSError as exc:
            self._failed(exc, 0)
            self.dropped += self._writer.dropped
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
        if message != self.last_error:
            log.warning("%s", message)  # once per distinct error, not once per record
        self.last_error = message
