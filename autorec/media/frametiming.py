"""Which camera frames of a log a video shows, and when: the exporter's timing, without codecs.

Timing contract (`autorec.media.video`, both modes):
- Only `image` events are frames. Every frame's log time is its stream time
  by the recorder's own clock rule (`autorec.core.timeline.stream_times`, as
  for recording, replay and `info`): its own timestamp; a frame without one
  gets the last time seen on any earlier record (carried forward, counted in
  `no_timestamp`); a damaged timestamp (one record far off the clock) gets the
  carried time too (counted in `clock_outliers`); a confirmed step of the
  rig's clock back is absorbed (time goes on from where it was), one forward
  is a camera stall (counted in `clock_steps`). Frames before any time is known
  are skipped (counted in `untimed`). The first exported frame is at t=0, and
  the file lasts `last - first + one frame interval` (the median of recent intervals).
- For a video a step back of `CLOCK_STEP` (1 s) or more is a clock step, not
  jitter: the timeline runs with that threshold, so the footage after a step
  back goes on at its own pace. Presentation times must increase, so a frame
  whose log time is not after the previous frame's (equal, or clamped jitter
  under 1 s) is placed 1 ms after the previous frame (counted in `nudged`).
  `FrameClock` also shifts a step of `CLOCK_STEP` or more back by itself (one
  frame interval after the previous frame, counted in `clock_steps`), for
  callers that hand it raw times.
- A camera gap longer than `MAX_FRAME_GAP` (6 h) between two exported
  frames is cut to a still of `CUT_GAP_TO` (5 s), logged and counted in
  `gaps_cut`: an MP4 sample lasts at most 2**31 ticks of 1/90000 s (6.6 h),
  and a night-long frozen picture is of no use anyway. Shorter gaps keep
  their real length.
- Snapshot records at a segment's start (state copies re-stamped to the
  segment's start time, see `tag_snapshot`) are not frames.
- `start`/`end` select frames by their log time: seconds from the log's first
  timestamp, or absolute epoch seconds.
- `fps` (a fixed playback rate, e.g. for a timelapse) replaces all of the above
  timing: the n-th selected frame is shown at n / fps seconds; the burnt-in
  `timestamp` still shows each frame's own log time.

"""

from __future__ import annotations

import dataclasses
import json
import os
import statistics
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from autorec import events
from autorec.core.timeline import Timeline, stream_times
from autorec.io.logfile import LogReader

CLOCK_STEP = 1.0  # seconds back in time treated as a clock step rather than jitter
DEFAULT_INTERVAL = 0.1  # frame interval assumed before two frames have been seen (10 fps)
_MIN_GAP = 0.001  # smallest gap put between frames whose times do not increase
_CAMERA_KINDS = frozenset({"image", "image_transform"})


@dataclass(frozen=True, slots=True)
class Item:
    """One decoded log record as the exporter sees it."""

    index: int
    kind: str
    timestamp: float | None  # the record's own timestamp
    event: object


@dataclass(frozen=True, slots=True)
class Frame:
    """A camera frame chosen for export."""

    index: int  # record index in the log
    log_time: float  # the log's time for this frame (own or carried forward)
    time: float  # presentation time on a strictly increasing clock (log_time + clock-step shift)
    jpeg: bytes


@dataclass
class SelectionStats:
    records: int = 0
    images: int = 0
    snapshot: int = 0  # images in the segment snapshot, not frames
    untimed: int = 0  # frames before any time was known
    no_timestamp: int = 0  # frames that got a carried-forward time
    clock_steps: int = 0  # steps of the rig's clock followed (forward) or absorbed (back)
    clock_outliers: int = 0  # records whose damaged timestamp was replaced by the carried time
    nudged: int = 0  # frames moved forward by <1 s to keep time increasing
    before_start: int = 0
    after_end: int = 0
    undecodable_records: int = 0
    log_problem: str | None = None  # truncated/corrupt tail of the log


def tag_snapshot(items: Iterable[Item], declared: int | None = None) -> Iterator[tuple[Item, bool]]:
    """Yield `(item, is_snapshot)`.

    With `declared` (the record count from the segment's sidecar), the first
    `declared` records are the snapshot. Otherwise the snapshot is the leading
    run of records that share one timestamp (records without a timestamp
    included), at most one per kind, provided the run holds a timestamped
    record of a kind other than image/image_transform: a live stream never
    stamps two different sensor events with the very same nanosecond, while a
    segmenter's re-stamped snapshot does, and pdserver may stamp an
    image_transform + image pair alike.
    """
    it = iter(items)
    if declared is not None:
        for item in it:
            yield item, item.index < declared
        return
    run: list[Item] = []
    kinds: set[str] = set()
    t0: float | None = None
    ended_by: Item | None = None
    for item in it:
        ts = item.timestamp
        if item.kind in kinds or (ts is not None and t0 is not None and ts != t0):
            ended_by = item
            break
        kinds.add(item.kind)
        if ts is not None:
            t0 = ts
        run.append(item)
    is_snapshot = any(r.timestamp is not None and r.kind not in _CAMERA_KINDS for r in run)
    for item in run:
        yield item, is_snapshot
    if ended_by is not None:
        yield ended_by, False
    for item in it:
        yield item, False


def snapshot_records_from_sidecar(log_path: str | os.PathLike[str]) -> int | None:
    """Leading snapshot record count declared by the segment sidecar `NAME.json`, if any."""
    sidecar = Path(log_path).with_suffix(".json")
    try:
        meta = json.loads(sidecar.read_text())
    except (OSError, ValueError):
        return None
    snap = meta.get("snapshot") if isinstance(meta, dict) else None
    records = snap.get("records") if isinstance(snap, dict) else None
    if isinstance(records, int) and not isinstance(records, bool) and records >= 0:
        return records
    return None


@dataclass(frozen=True)
class TimeRef:
    """A `--start`/`--end` value: seconds from the log's first timestamp, or absolute epoch seconds."""

    seconds: float
    absolute: bool = False

    def resolve(self, log_start: float) -> float:
        return self.seconds if self.absolute else log_start + self.seconds

    @classmethod
    def parse(cls, text: str) -> TimeRef:
        """`90`, `10s`, `5min` (from the log's start) or an ISO time (`2026-11-24T11:20:00`, local
        time unless it names a zone, `Z` allowed). Raises ValueError with a usage message."""
        from autorec.units import parse_duration

        try:
            return cls(parse_duration(text))
        except ValueError:
            pass
        iso = text.strip()
        if iso.endswith(("Z", "z")):
            iso = iso[:-1] + "+00:00"
        try:
            moment = datetime.fromisoformat(iso)
        except ValueError:
            raise ValueError(
                f"expected seconds from the log's start (90, 10s, 5min) or an ISO time "
                f"(2026-11-24T11:20:00), got {text!r}"
            ) from None
        return cls(moment.timestamp(), absolute=True)


class FrameClock:
    """Turns frames' log times into strictly increasing presentation times (the contract above). Sans-I/O."""

    def __init__(self, stats: SelectionStats) -> None:
        self.stats = stats
        self.first_time: float | None = None  # first stream time of the log (set by `select_frames`)
        self._shift = 0.0
        self._prev: float | None = None
        self._intervals: deque[float] = deque(maxlen=32)

    @property
    def interval(self) -> float:
        """The typical frame interval so far (median of recent ones)."""
        return statistics.median(self._intervals) if self._intervals else DEFAULT_INTERVAL

    def frame_time(self, log_time: float) -> float:
        """Presentation time for a frame at `log_time`, later than every earlier one."""
        t = log_time + self._shift
        prev = self._prev
        if prev is not None:
            if t <= prev:
                if prev - t < CLOCK_STEP:
                    t = prev + _MIN_GAP
                    self.stats.nudged += 1
                else:
                    target = prev + self.interval
                    self._shift += target - t
                    t = target
                    self.stats.clock_steps += 1
            else:
                self._intervals.append(t - prev)
        self._prev = t
        return t


def select_frames(
    records: Iterable[Item],
    stats: SelectionStats,
    clock: FrameClock,
    start: TimeRef | None = None,
    end: TimeRef | None = None,
    snapshot_records: int | None = None,
) -> Iterator[Frame]:
    """The frames to export, in log order, with their times (the contract above)."""
    # A step back of a second or more is a clock step for a video (not jitter to clamp): the rest of the
    # footage goes on after it at its own pace instead of being squeezed into 1 ms nudges.
    timeline: Timeline[tuple[Item, bool]] = Timeline(jump_threshold=CLOCK_STEP)
    tagged = tag_snapshot(records, snapshot_records)
    try:
        for log_time, (item, in_snapshot) in stream_times(((i.timestamp, (i, s)) for i, s in tagged), timeline):
            if log_time is not None and clock.first_time is None:
                clock.first_time = log_time
            if item.kind != "image":
                continue
            stats.images += 1
            if in_snapshot:
                stats.snapshot += 1
                continue
            if log_time is None:
                stats.untimed += 1
                continue
            if item.timestamp is None:
                stats.no_timestamp += 1
            first = clock.first_time if clock.first_time is not None else log_time
            if start is not None and log_time < start.resolve(first):
                stats.before_start += 1
                continue
            if end is not None and log_time > end.resolve(first):
                stats.after_end += 1
                return
            yield Frame(item.index, log_time, clock.frame_time(log_time), item.event.image.image_data)
    finally:
        stats.clock_outliers = timeline.outliers
        stats.clock_steps += timeline.steps


def read_items(reader: LogReader, stats: SelectionStats) -> Iterator[Item]:
    """Decoded records of a log; undecodable ones are counted and skipped."""
    for index, record in enumerate(reader.records()):
        stats.records += 1
        try:
            event = events.decode(record.payload)
        except events.DecodeError:
            stats.undecodable_records += 1
            continue
        yield Item(index, events.kind(event) or "", events.timestamp(event), event)
    if reader.truncated is not None:
        stats.log_problem = f"log cut off in the record at byte {reader.truncated.offset}"
    elif reader.corrupt is not None:
        stats.log_problem = f"log unreadable from byte {reader.corrupt.offset}: {reader.corrupt.reason}"


def fixed_rate(frames: Iterable[Frame], fps: float) -> Iterator[Frame]:
    """`frames` re-timed to one every 1/fps seconds from the first (log times unchanged)."""
    t0: float | None = None
    for n, frame in enumerate(frames):
        if t0 is None:
            t0 = frame.time
        yield dataclasses.replace(frame, time=t0 + n / fps)
