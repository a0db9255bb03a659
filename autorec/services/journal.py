"""The night journal: what the recorder itself did, one JSON line per event, for the morning report.

Segments, sidecars and the telemetry log say what the *rig* did. The journal
(`journal.jsonl` in the output directory) says what the *recorder* did, so a
report can tell "nothing happened" from "autorec was not listening":

- `start`: autorec version, pid, host, mode (`live` or `sim`; a backtest writes no journal), the
  source, the rule file's path and SHA-256, disk free/total;
- `connected` / `disconnected` (stream time);
- `alert`: every alert raised or cleared (`state`, `key`, `message`,
  `since`), the disk floor's pauses included;
- `stats`, every `interval` seconds of stream time (default 60; so a
  simulated night has as many as a real one): messages and bytes seen, bytes
  kept, segments, disk free, connection, and the counters that changed since
  the previous `stats` line (a trigger's `camera-motion.global_changes` rising
  marks a lighting change it rejected);
- `stop`: like `stats`, plus why the run ended.

Every line has `event`, `time` (stream time once known, the computer's clock
before) and `wall` (the computer's clock). Lines are appended as the index's are
(`autorec.io.atomicfile.append_json_line`: a symlink planted in the directory
is refused, never followed; a failed write leaves no half line). A failed
write (full disk) is counted in `errors` and logged at most once a minute (a disk
failing on and off is not a line per journal line; `autorec.io.failurelog`), then
"works again"; it never reaches the recorder. Writes happen on the caller's thread: a few hundred bytes a minute,
into the page cache.

The reader is `autorec.report.night.read_journal` (with the index's).
"""

from __future__ import annotations

import hashlib
import logging
import os
import socket
import time as _time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from autorec import __version__
from autorec.core.streamitems import StreamListener
from autorec.io.atomicfile import append_json_line
from autorec.io.failurelog import FailureLog

log = logging.getLogger(__name__)

STATS_INTERVAL = 60.0


def file_sha256(path: str | os.PathLike[str]) -> str | None:
    """SHA-256 of a (small) file, or None if it cannot be read."""
    try:
        with open(path, "rb") as f:
            return hashlib.sha256(f.read(1 << 20)).hexdigest()
    except OSError:
        return None


class JournalFile:
    """Appends JSON lines to one file without following symlinks. Never raises on write errors."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.errors = 0
        self.lines = 0
        # a disk failing on and off: one line a minute, not one per journal line
        self._failures = FailureLog(log, count_unsaid=False)

    def append(self, entry: Mapping[str, Any]) -> bool:
        try:
            # the index's own append: no symlink followed, a failed write cut back (no half line)
            append_json_line(self.path, entry, fsync=False)
        except (OSError, ValueError) as exc:
            self.errors += 1
            self._failures.failed(
                f"journal: cannot append to {self.path}: {exc} "
                f"(later lines are still tried; {self.errors} failed so far)"
            )
            return False
        self._failures.worked("journal: writing to %s works again (%d failed so far)", self.path, self.errors)
        self.lines += 1
        return True


class JournalListener(StreamListener):
    """A stream listener that writes the night journal. See the module docstring.

    `stats()` returns the figures of a `stats` line (a flat dict: `messages`,
    `bytes_seen`, `bytes_kept`, `segments`, `disk_free`, ...); `counters()`
    the recorder's counters, of which only changed ones are written. Times
    given to the listener methods are stream time and pace the stats lines;
    `wall_clock` stamps `wall`.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        stats: Callable[[], Mapping[str, Any]] | None = None,
        counters: Callable[[], Mapping[str, int]] | None = None,
        interval: float = STATS_INTERVAL,
        wall_clock: Callable[[], float] = _time.time,
    ) -> None:
        self.file = JournalFile(path)
        self.stats = stats
        self.counters = counters
        self.interval = interval
        self.wall_clock = wall_clock
        self.is_connected = False
        self._stream_time: float | None = None
        self._last_stats: float | None = None  # stream time of the last stats line
        self._last_counters: dict[str, int] = {}

    # -- writing -----------------------------------------------------------------------------
    def _entry(self, event: str, t: float | None, **fields: Any) -> dict[str, Any]:
        wall = self.wall_clock()
        if t is not None:
            self._stream_time = t
        time = t if t is not None else (self._stream_time if self._stream_time is not None else wall)
        return {"event": event, "time": round(time, 3), "wall": round(wall, 3), **fields}

    def write(self, event: str, t: float | None = None, **fields: Any) -> bool:
        return self.file.append(self._entry(event, t, **fields))

    def start(
        self,
        *,
        mode: str,
        source: str | None,
        rules: str | os.PathLike[str] | None,
        out: str | os.PathLike[str],
        disk: tuple[int, int] | None = None,
    ) -> None:
        """The `start` line; call once before the stream begins."""
        self.write(
            "start",
            None,
            autorec=__version__,
            pid=os.getpid(),
            host=socket.gethostname(),
            mode=mode,
            source=source,
            rules=str(rules) if rules is not None else None,
            rules_sha256=file_sha256(rules) if rules is not None else None,
            out=str(out),
            disk_free=disk[0] if disk else None,
            disk_total=disk[1] if disk else None,
        )

    def _figures(self) -> dict[str, Any]:
        out: dict[str, Any] = {"connected": self.is_connected}
        try:
            if self.stats is not None:
                out.update(self.stats())
            if self.counters is not None:
                now = {k: v for k, v in self.counters().items() if isinstance(v, int)}
                changed = {k: v for k, v in now.items() if self._last_counters.get(k) != v}
                self._last_counters = now
                if changed:
                    out["counters"] = changed
        except Exception:  # a broken figure must not stop the recorder
            log.exception("journal: cannot collect the figures")
        return out

    def write_stats(self, t: float | None = None) -> None:
        self._last_stats = t if t is not None else self._stream_time
        self.write("stats", t, **self._figures())

    def _pace(self, t: float) -> None:
        self._stream_time = t
        if self._last_stats is None or t < self._last_stats:  # first time, or the rig's clock stepped back
            self._last_stats = t
        elif t - self._last_stats >= self.interval:
            self.write_stats(t)

    def stop(self, reason: str = "shutdown") -> None:
        """The `stop` line; call once after the stream ended."""
        self.write("stop", None, reason=reason, **self._figures())

    def alert(self, action: Any) -> None:
        """An alert raised or cleared (an `autorec.services.alerts.AlertAction`)."""
        self.write(
            "alert",
            action.time,
            state=action.state,
            key=action.key,
            name=action.alert.name,
            message=action.message,
            since=action.alert.since,
        )

    # -- StreamListener ----------------------------------------------------------------------
    def connected(self, t: float) -> None:
        self.is_connected = True
        self.write("connected", t)

    def disconnected(self, t: float) -> None:
        self.is_connected = False
        self.write("disconnected", t)

    def message(self, t: float, kind: str | None) -> None:
        self._pace(t)

    def tick(self, t: float) -> None:
        self._pace(t)

    def fired(self, t: float, firings: Sequence[Any]) -> None:
        pass
