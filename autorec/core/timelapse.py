"""The timelapse context track: one camera frame every `output.timelapse`, all night.

Between segments nothing of the camera is kept, so the slow things (a drop
evaporating, a bubble growing, a drop drifting by itself) are invisible in the
morning. The timelapse track keeps one frame every `interval` seconds of
stream time (default 30 s) in a daily log, `timelapse-YYYYMMDD.bin` (UTC day of
stream time), in upstream's format, written by the segment writer beside the
telemetry log. `autorec video timelapse-YYYYMMDD.bin --fps 10 --timestamp`
makes a movie of the night.

`TimelapsePicker` is the sans-I/O decision: fed every message `(time, kind,
payload)`, it returns the records to append, as `(time, payload)`:
- the first `image` at or after each multiple of `interval` (UTC-aligned, so
  a night has a predictable number of frames, one per interval while the
  camera runs), preceded by the `image_transform` it needs (the latest one,
  normally its own pair);
- before a picked frame, the latest `electrode_layout` and `electrode_state`
  when they were not yet written to that day's file, or have changed since:
  every file starts with the electrode state snapshot, and each frame can be
  read with the electrodes of its moment.
Payloads are the original bytes (original timestamps); `time` is only for
choosing the day's file. `blocked=True` (disk below the floor) picks nothing
and counts the frame as `skipped`; the state is written again at the next
picked frame. A clock that goes back re-aligns the schedule.
"""

from __future__ import annotations

import datetime as _dt
import math
from dataclasses import dataclass, field

from autorec.outdir import TIMELAPSE_PREFIX, daily_name

PREFIX = TIMELAPSE_PREFIX
DEFAULT_INTERVAL = 30.0


def timelapse_name(time: float) -> str:
    """The file name of the timelapse log holding stream time `time`."""
    day = _dt.datetime.fromtimestamp(time, tz=_dt.timezone.utc).strftime("%Y%m%d")
    return daily_name(PREFIX, day)


@dataclass
class TimelapsePicker:
    """Chooses the timelapse records. See the module docstring."""

    interval: float = DEFAULT_INTERVAL
    frames: int = 0  # frames picked
    bytes: int = 0  # bytes of records returned, with 4-byte log headers
    skipped: int = 0  # due frames not picked because `blocked`
    _due: float | None = None
    _day: str | None = None
    _latest: dict[str, bytes] = field(default_factory=dict)
    _written: dict[str, bytes] = field(default_factory=dict)  # what this day's file last got, per state kind

    def __post_init__(self) -> None:
        if not (math.isfinite(self.interval) and self.interval > 0):
            raise ValueError(f"timelapse interval must be above zero, got {self.interval!r}")

    def feed(self, time: float, kind: str, payload: bytes, blocked: bool = False) -> list[tuple[float, bytes]]:
        if kind != "image":
            if kind in ("image_transform", "electrode_state", "electrode_layout"):
                self._latest[kind] = payload
            return []
        due = self._due
        if due is not None and due - self.interval <= time < due:
            return []
        self._due = (math.floor(time / self.interval) + 1) * self.interval
        if blocked:
            self.skipped += 1
            self._written.clear()  # the file may miss changes meanwhile: restate at the next frame
            return []
        day = timelapse_name(time)
        if day != self._day:
            self._day = day
            self._written.clear()
        out: list[tuple[float, bytes]] = []
        for state in ("electrode_layout", "electrode_state"):
            latest = self._latest.get(state)
            if latest is not None and self._written.get(state) != latest:
                out.append((time, latest))
                self._written[state] = latest
        transform = self._latest.get("image_transform")
        if transform is not None:
            out.append((time, transform))
        out.append((time, payload))
        self.frames += 1
        self.bytes += sum(len(p) + 4 for _, p in out)
        return out
