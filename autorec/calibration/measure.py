"""What calibration measures, phase by phase (sans-I/O: stream items and pipeline outputs in, figures out).

`Meter(ruleset)` is fed, in stream order, every source item (`received(msg)`, before the
pipeline sees it: raw timestamps, arrival clock, bytes) and every output of the `Pipeline`
the item caused (`outputs(outs)`: `ScoreUpdate` rows, `Fired`, `Processed`). `phase(name)`
starts a phase at the latest stream time ("idle", "activity"); `result()` returns `Measurements`.

What it keeps:
- per rule, the per-second score maxima (`ScoreRow`s of the pipeline's score track) and firings;
- electrode changes (the driven pins differ from before; pdserver re-sends unchanged states);
  a change that newly drives pins is a commanded move, and during the activity phase an
  activity window whose `arrival` is the first capacitance scan showing a drop on a newly
  driven pin (`drop_present`, or capacitance clearly above empty: `covered_from_scan`);
- during idle, the stretches around electrode changes (`IDLE_EXCLUDE_BEFORE` before to
  `IDLE_EXCLUDE_AFTER` after), which are left out of the noise figures;
- camera frames: their own timestamps (rate, jitter), sizes, and for up to `BRIGHTNESS_RATE`
  frames a second of stream time, mean brightness and frame-to-frame noise of a 1/8-size
  grayscale picture (decoded here: pure computation, no I/O);
- timestamps: kinds sent without one, steps backwards, the rig clock against this computer's;
- bytes (payload + the log's 4-byte header) and messages per phase.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field

from autorec import events
from autorec.core.pipeline import Fired, Output, Processed, ScoreUpdate
from autorec.core.ruleset import RuleSet
from autorec.core.state import covered_from_scan
from autorec.core.streamitems import Message

IDLE_EXCLUDE_BEFORE = 1.0  # seconds before an electrode change left out of the idle figures
IDLE_EXCLUDE_AFTER = 10.0  # ...and after it (the drop moves, the motion background re-learns)
WINDOW_TAIL = 1.5  # seconds after an arrival still counted as the move's activity (the camera)
NO_ARRIVAL_SPAN = 3.0  # a move without a measured arrival: its window is this long
BRIGHTNESS_RATE = 2.0  # frames a second of stream time decoded for brightness and noise


@dataclass
class Window:
    """A commanded move: electrodes newly driven at `start` (stream time), the drop there at `arrival`."""

    start: float
    pins: frozenset[int]
    arrival: float | None = None

    @property
    def end(self) -> float:
        return (self.arrival if self.arrival is not None else self.start + NO_ARRIVAL_SPAN) + WINDOW_TAIL

    @property
    def delay(self) -> float | None:
        return None if self.arrival is None else self.arrival - self.start


@dataclass
class PhaseStats:
    """Counts of one phase."""

    start: float | None = None
    end: float | None = None
    messages: int = 0
    bytes: int = 0
    image_bytes: int = 0
    kinds: dict[str, int] = field(default_factory=dict)

    @property
    def duration(self) -> float:
        if self.start is None or self.end is None:
            return 0.0
        return max(0.0, self.end - self.start)


@dataclass
class Measurements:
    """Everything `Meter` measured; `proposal.propose` turns it into thresholds."""

    phases: dict[str, PhaseStats]
    rows: dict[str, list[tuple[int, float]]]  # rule -> [(second, max score)], whole run
    firings: dict[str, list[float]]  # rule -> firing times
    changes: list[tuple[float, frozenset[int]]]  # (time, driven pins after) for every electrode change
    windows: list[Window]  # commanded moves of the activity phase
    excluded: list[tuple[float, float]]  # idle stretches left out (around electrode changes)
    frame_times: list[float]  # image timestamps (idle phase)
    frame_sizes: list[int]
    brightness: list[float]  # mean level 0-255 of sampled idle frames
    noise: list[float]  # mean absolute frame-to-frame difference (levels) of consecutive samples, brightness removed
    untimed: dict[str, int]  # kind -> messages without a timestamp
    backwards: dict[str, int]  # kind -> timestamps earlier than the kind's previous one
    clock_offsets: list[float]  # rig timestamp - this computer's clock at arrival (live only)
    scan_times: list[float]  # capacitance scans (idle), for their interval

    def idle_scores(self, rule: str) -> list[float]:
        """Per-second maxima of `rule` in whole seconds inside the idle phase, without the excluded stretches."""
        idle = self.phases.get("idle")
        if idle is None or idle.start is None:
            return []
        end = idle.end if idle.end is not None else math.inf
        out = []
        for second, value in self.rows.get(rule, []):
            # Whole seconds inside the phase only: the second in which the activity phase starts
            # may already hold the first commanded move.
            if not (idle.start <= second and second + 1 <= end):
                continue
            if any(a <= second + 1 and second <= b for a, b in self.excluded):
                continue
            out.append(value)
        return out

    def idle_firings(self, rule: str) -> int:
        idle = self.phases.get("idle")
        if idle is None or idle.start is None:
            return 0
        end = idle.end if idle.end is not None else math.inf
        return sum(
            1
            for t in self.firings.get(rule, [])
            if idle.start <= t < end and not any(a <= t <= b for a, b in self.excluded)
        )

    def window_peak(self, rule: str, w: Window) -> float | None:
        """The highest per-second maximum of `rule` in the seconds `w` spans (None: no score there)."""
        lo, hi = math.floor(w.start), math.floor(w.end)
        values = [v for s, v in self.rows.get(rule, []) if lo <= s <= hi]
        return max(values) if values else None

    def first_firing(self, rule: str, w: Window) -> float | None:
        """Seconds from `w`'s command to `rule`'s first firing in it (None: it did not fire)."""
        times = [t for t in self.firings.get(rule, []) if w.start - 0.5 <= t <= w.end + 1.0]
        return min(times) - w.start if times else None

    def window_fired(self, rule: str, w: Window) -> bool:
        return any(w.start - 0.5 <= t <= w.end + 1.0 for t in self.firings.get(rule, []))


class Meter:
    """See the module docstring."""

    def __init__(self, ruleset: RuleSet, decode_frames: bool = True) -> None:
        self.ruleset = ruleset
        self.current: str | None = None
        self.time: float | None = None  # latest stream time
        self._phases: dict[str, PhaseStats] = {}
        self._rows: dict[str, list[tuple[int, float]]] = {}
        self._firings: dict[str, list[float]] = {}
        self._changes: list[tuple[float, frozenset[int]]] = []
        self._windows: list[Window] = []
        self._pending: list[Window] = []
        self._excluded: list[tuple[float, float]] = []
        self._driven: frozenset[int] | None = None
        self._frame_times: list[float] = []
        self._frame_sizes: list[int] = []
        self._brightness: list[float] = []
        self._noise: list[float] = []
        self._last_sample: tuple[float, object] | None = None
        self._untimed: dict[str, int] = {}
        self._backwards: dict[str, int] = {}
        self._last_stamp: dict[str, float] = {}
        self._offsets: list[float] = []
        self._scan_times: list[float] = []
        self._decoder = None
        if decode_frames:
            from autorec.frames.graydecode import GrayDecoder

            self._decoder = GrayDecoder(8)

    # -- phases -------------------------------------------------------------------

    def phase(self, name: str | None) -> None:
        """End the current phase and start `name` (None: no phase) at the latest stream time."""
        if self.current is not None:
            self._phases[self.current].end = self.time
        self.current = name
        if name is not None:
            self._phases[name] = PhaseStats(start=self.time)

    @property
    def stats(self) -> PhaseStats | None:
        return self._phases.get(self.current) if self.current is not None else None

    def elapsed(self) -> float:
        """Stream seconds since the current phase started (0 before any time)."""
        s = self.stats
        if s is None or s.start is None or self.time is None:
            return 0.0
        return self.time - s.start

    @property
    def driven(self) -> frozenset[int] | None:
        """The pins the latest electrode_state drives (None before the first one)."""
        return self._driven

    @property
    def windows(self) -> list[Window]:
        return self._windows

    # -- inputs -------------------------------------------------------------------

    def received(self, msg: Message) -> None:
        """A source item as it arrived, before the pipeline sees it."""
        decoded = msg.decoded()
        if decoded is None:
            return
        event, kind = decoded
        stamp = events.timestamp(event)
        if stamp is None:
            self._untimed[kind] = self._untimed.get(kind, 0) + 1
        else:
            last = self._last_stamp.get(kind)
            if last is not None and stamp < last:
                self._backwards[kind] = self._backwards.get(kind, 0) + 1
            self._last_stamp[kind] = stamp
            if msg.received > 0 and len(self._offsets) < 10_000:
                self._offsets.append(stamp - msg.received)
        s = self.stats
        if s is not None:
            s.messages += 1
            s.bytes += len(msg.payload) + 4
            s.kinds[kind] = s.kinds.get(kind, 0) + 1
            if kind in ("image", "image_transform"):
                s.image_bytes += len(msg.payload) + 4

    def outputs(self, outs: Iterable[Output]) -> None:
        for out in outs:
            if isinstance(out, ScoreUpdate):
                for row in out.output.rows:
                    self._rows.setdefault(row.rule, []).append((row.second, row.max))
            elif isinstance(out, Fired):
                for f in out.firings:
                    if not f.evidence.get("near_miss"):
                        self._firings.setdefault(f.rule, []).append(f.time)
            elif isinstance(out, Processed):
                self._processed(out.time, out.kind, out.event)

    def _processed(self, t: float, kind: str, event) -> None:
        if self.time is None and self.current is not None:
            self._phases[self.current].start = t  # a phase started before the first stream time
        self.time = t if self.time is None else max(self.time, t)
        if kind == "electrode_state":
            self._electrodes(t, event.electrode_state)
        elif kind == "scan_capacitance":
            if self._pending:
                covered = covered_from_scan(event.scan_capacitance.measurements)
                for w in list(self._pending):
                    if w.pins & covered:
                        w.arrival = t
                        self._pending.remove(w)
            if self.current == "idle":
                self._scan_times.append(t)
        elif kind == "image" and self.current == "idle":
            own = events.timestamp(event)
            data = event.image.image_data
            self._frame_times.append(own if own is not None else t)
            self._frame_sizes.append(len(data))
            self._sample(t, data)

    def _electrodes(self, t: float, es) -> None:
        driven = {i for i, on in enumerate(es.electrodes) if on}
        for group in es.drive_groups:
            driven |= {i for i, on in enumerate(group.electrodes) if on}
        now = frozenset(driven)
        before = self._driven
        self._driven = now
        if before is None or now == before:
            return  # the first state seen (pdserver sends none on connect), or a repeat
        self._changes.append((t, now))
        added = now - before
        if self.current == "idle":
            self._excluded.append((t - IDLE_EXCLUDE_BEFORE, t + IDLE_EXCLUDE_AFTER))
        elif self.current == "activity" and added:
            # A newly driven pin starts the next move: an earlier one still waiting never arrived.
            self._pending = []
            w = Window(t, frozenset(added))
            self._windows.append(w)
            self._pending.append(w)
        if self._pending:
            self._pending = [w for w in self._pending if t - w.start < 10.0]

    def _sample(self, t: float, jpeg: bytes) -> None:
        if self._decoder is None:
            return
        last = self._last_sample
        if last is not None and t - last[0] < 1.0 / BRIGHTNESS_RATE:
            return
        from autorec.frames.graydecode import FrameDecodeError

        try:
            image = self._decoder.decode(jpeg)
        except FrameDecodeError:
            return
        import numpy as np

        pixels = image.pixels.astype(np.float32)
        mean = float(pixels.mean())
        self._brightness.append(mean)
        if last is not None and getattr(last[1], "shape", None) == pixels.shape:
            prev = last[1]
            self._noise.append(float(np.abs((pixels - mean) - (prev - prev.mean())).mean()))
        self._last_sample = (t, pixels)

    def result(self) -> Measurements:
        if self.current is not None:
            self._phases[self.current].end = self.time
        return Measurements(
            phases=dict(self._phases),
            rows={k: list(v) for k, v in self._rows.items()},
            firings={k: list(v) for k, v in self._firings.items()},
            changes=list(self._changes),
            windows=list(self._windows),
            excluded=list(self._excluded),
            frame_times=list(self._frame_times),
            frame_sizes=list(self._frame_sizes),
            brightness=list(self._brightness),
            noise=list(self._noise),
            untimed=dict(self._untimed),
            backwards=dict(self._backwards),
            clock_offsets=list(self._offsets),
            scan_times=list(self._scan_times),
        )
