"""Stream time: the clock the rule engine and the segmenter run on.

Stream time is the events' own timestamps (the rig's wall clock), never the
recorder's wall clock, which may differ from the rig's. This module turns
what arrives into one non-decreasing time line:

- a message without a timestamp (`device_info`, pdserver's `electrode_state`)
  gets the last known time carried forward (live, once no timed record has
  arrived for `quiet` seconds: advanced by the tick clock); timed records are
  judged against the last *timestamp*, not against that estimate, so one that
  arrives behind it is clamped, never a clock step;
- small backwards steps (messages built on different threads of the server
  arrive slightly out of order) are clamped to the last time, so time never
  runs backwards;
- a timestamp far from the clock (more than `jump_threshold` behind the
  last time; ahead of the expected time by more than `jump_threshold` live,
  by more than `step_threshold` offline, where a quiet stretch of a log
  looks like a jump) is judged by `autorec.core.clock.ClockNormaliser`:
  the record is held until the next records decide. If the stream returns
  to the clock, it was an *outlier* (a damaged record: 0 = 1970, year 1, far
  future): it is kept, stamped with the carried-forward time, counted in
  `outliers`, and the clock does not move. If `confirm` consecutive records
  agree with it, it is a real *step* (counted in `steps` and `jumps`): a
  backward step is absorbed (stream time continues from where it was and
  later timestamps are shifted by the step, `offset`), a forward step is
  followed. Held records are released in order with their final times, so
  a confirmed step moves no record and an outlier moves no clock;
- live, a forward jump (the stamps ran ahead of the monotonic clock by more
  than `jump_threshold`: a rig clock step, a simulator running faster than
  `rate`, a replay shortening gaps) is followed once confirmed like any step;
- `tick(monotonic)` is the time of a quiet moment: the last event time plus
  the monotonic time elapsed since that event arrived (times `rate`, the
  simulator's speed-up). Post-roll therefore
  ends on time live, under the simulator's `--speed` and offline.

Records are handed in with `push(timestamp, monotonic, item)`, which returns
the `(stream time, item)` pairs released by it, in arrival order (usually
just this one). Untimed records before the first timestamp are held too and
released with it; beyond `max_held` they are dropped and counted in
`dropped`. The first timestamp starts the clock (if it was damaged, the
records after it confirm a step away from it). `flush()` decides a pending
run now (end of stream, (dis)connection): its records are outliers.
`expire(monotonic)` does the same live for a run held longer than
`max_hold` seconds, so a rig that goes quiet right after a damaged record
does not hold it for ever.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from autorec.core.clock import ClockNormaliser, Verdict

T = TypeVar("T")


@dataclass
class ClockJump:
    """A detected step of the rig's clock: `size` seconds (negative = backwards) at stream time `at`."""

    at: float
    size: float


class Timeline(Generic[T]):
    """Turns event timestamps and monotonic arrival times into stream time. See the module docstring.

    `jump_threshold`: a timestamp this many seconds behind the last time is a deviation (less is
    clamped), and live, one this far ahead of the expected time. `step_threshold`: offline, a
    timestamp this far ahead of the last time is a deviation. `confirm`: consecutive consistent deviant records
    that confirm a clock step. `rate`: stream seconds per monotonic second (1 for a rig; the
    simulator's `--speed` when it runs faster than real time).
    """

    def __init__(
        self,
        jump_threshold: float = 5.0,
        rate: float = 1.0,
        *,
        step_threshold: float = 3600.0,
        confirm: int = 3,
        max_held: int = 10_000,
        max_hold: float = 2.0,
        quiet: float = 1.0,
    ) -> None:
        self.jump_threshold = jump_threshold
        self.rate = rate
        self.rule = ClockNormaliser(jump_threshold, step_threshold, confirm, rate)
        self.max_held = max_held
        self.max_hold = max_hold
        self.quiet = quiet
        self._mono_stamped: float | None = None  # monotonic arrival of the last timed record
        self.time: float | None = None  # last stream time given out
        # The last timestamp a record carried (plus offset): what a timed record is judged against. Not
        # `time`, which an untimed record may have moved on by the tick clock: live at --speed 150, a
        # 0.1 s stall of the recorder gave an electrode state a time 15 s ahead, and the next sensor
        # stamps, 15 s "behind" it, were taken for a backward clock step and shifted for the rest of the run.
        self._stamped: float | None = None
        self._mono: float | None = None  # monotonic arrival of the message that set `time`
        self.offset = 0.0  # added to raw timestamps after absorbed clock jumps
        self.jumps: list[ClockJump] = []
        self.clamped = 0  # small backward steps clamped to the last time
        self.carried = 0  # messages without a timestamp given the carried-forward time
        self.outliers = 0  # records whose timestamp was an outlier (kept, stamped with the carried time)
        self.steps = 0  # confirmed clock steps (each also in `jumps`)
        self.dropped = 0  # held records dropped beyond `max_held` while no clock was known
        self._held: list[_Held[T]] = []

    @property
    def holding(self) -> int:
        """How many records are held, waiting for a decision."""
        return len(self._held)

    def expected(self, monotonic: float | None) -> float | None:
        """Stream time now by the tick clock (last time + monotonic elapsed), or the last time offline."""
        if self.time is None:
            return None
        if monotonic is None or self._mono is None:
            return self.time
        return self.time + self.rate * max(0.0, monotonic - self._mono)

    def push(self, timestamp: float | None, monotonic: float | None, item: T) -> list[tuple[float, T]]:
        """Stream times for the record `item` (raw `timestamp`, None if it has none) and any it releases."""
        if timestamp is None:
            if self.time is None or self._held:
                return self._hold(None, monotonic, item)
            self.carried += 1
            # Carry the last time forward; in a quiet stream advanced by the tick clock so the
            # untimed message is not back-dated (see `_carried`).
            t = self._carried(monotonic)
            assert t is not None
            self._set(t, monotonic)
            return [(t, item)]
        t = timestamp + self.offset
        last = self._stamped if self._stamped is not None else self.time
        decision = self.rule.judge(t, last, self.expected(monotonic), monotonic)
        out = self._refute() if decision.refuted else []
        if decision.verdict is Verdict.ACCEPTED:
            out.extend(self._accept(t, monotonic, item))
        elif decision.verdict is Verdict.HOLD:
            out.extend(self._hold(t, monotonic, item))
        else:
            self._held.append(_Held(t, monotonic, item))
            out.extend(self._step())
        return out

    def flush(self) -> list[tuple[float, T]]:
        """Decide a held run now: its records are outliers. (Untimed records held before the first
        timestamp stay held: there is no time to give them yet.)"""
        if not self._held or self.time is None:
            return []
        self.rule.flush()
        return self._refute()

    def expire(self, monotonic: float) -> list[tuple[float, T]]:
        """Live: `flush()` if a run has been held longer than `max_hold` seconds."""
        if self._held and self.time is not None:
            first = self._held[0].mono
            if first is not None and monotonic - first > self.max_hold:
                return self.flush()
        return []

    def tick(self, monotonic: float) -> float | None:
        """Stream time of a quiet moment at `monotonic` (None before any timestamp). Does not move `time`."""
        if self.time is None:
            return None
        return self._carried(monotonic)

    def _carried(self, monotonic: float | None) -> float:
        """The time for an untimed record or a tick: the tick clock's estimate once no timed record has
        arrived for `quiet` seconds; the last time while they flow. A timed record stamped a moment ago
        says where the stream is better than the monotonic time since it arrived, which a stall of the
        recorder inflates: live at --speed 40, a 0.1 s stall ran the estimate 4 s ahead, past a 3 s
        post-roll, and one burst of moves became a dozen segments of 0.4 s."""
        assert self.time is not None
        if monotonic is None or self._mono_stamped is None or monotonic - self._mono_stamped >= self.quiet:
            t = self.expected(monotonic)
            assert t is not None
            return t
        return self.time

    # -- internals -----------------------------------------------------
    def _accept(self, t: float, monotonic: float | None, item: T) -> list[tuple[float, T]]:
        if self.time is None:
            # The first timestamp: it starts the clock, and the untimed records held for it get it too.
            held, self._held = self._held, []
            self._set(t, monotonic)
            self._stamped, self._mono_stamped = t, monotonic
            return [(t, h.item) for h in held] + [(t, item)]
        self._stamped, self._mono_stamped = t, monotonic
        if t < self.time:
            self.clamped += 1
            t = self.time
        self._set(t, monotonic)
        return [(t, item)]

    def _hold(self, t: float | None, monotonic: float | None, item: T) -> list[tuple[float, T]]:
        if len(self._held) >= self.max_held:
            if self.time is not None:
                # A run that never ends among a flood of untimed records: decide it now.
                out = self.flush()
                return out + self.push(t - self.offset if t is not None else None, monotonic, item)
            self.dropped += 1
            return []
        self._held.append(_Held(t, monotonic, item))
        return []

    def _refute(self) -> list[tuple[float, T]]:
        """Every timed record held so far was an outlier: release them all at the clock's time."""
        assert self.time is not None  # a run only starts once there is a clock
        out = []
        for h in self._held:
            if h.time is not None:
                self.outliers += 1
            else:
                self.carried += 1
            out.append((self.time, h.item))
        self._held.clear()
        return out

    def _step(self) -> list[tuple[float, T]]:
        """The held run is the clock from now on: release every held record with its time."""
        held, self._held = self._held, []
        first = held[0]  # a run starts with a timed record
        ref = self.expected(first.mono)
        assert first.time is not None and ref is not None and self.time is not None
        self.jumps.append(ClockJump(at=ref, size=first.time - ref))
        self.steps += 1
        shift = 0.0
        if first.time < ref:
            # The rig's clock stepped back: continue from the expected time and shift what follows.
            shift = ref - first.time
            self.offset += shift
        cur = self.time
        out = []
        for h in held:
            if h.time is None:
                t = cur
            else:
                t = h.time + shift
                self._stamped, self._mono_stamped = t, h.mono
                if t < cur:
                    self.clamped += 1
                    t = cur
            cur = t
            self._set(t, h.mono)
            out.append((t, h.item))
        return out

    def _set(self, t: float, monotonic: float | None) -> None:
        self.time = t
        if monotonic is not None:
            self._mono = monotonic


@dataclass
class _Held(Generic[T]):
    time: float | None  # timestamp + offset at arrival; None: untimed
    mono: float | None
    item: T


class LogClock(Generic[T]):
    """The one clock rule for every reader of a log (replay pacing, video timing, log spans,
    recovery), fed one record at a time: `feed(raw timestamp, item)` returns the `(stream time,
    item)` pairs it releases, in order, and `finish()` the rest at the end of the log.

    It is the recorder's own `Timeline` (`timeline`, offline: its counters `outliers`, `steps`,
    ... count for the log): a damaged timestamp is an outlier stamped with the carried-forward
    time, a confirmed step back is absorbed (time goes on from where it was), one forward is
    followed, small steps back are clamped, untimed records carry the last time. A log can be
    read ahead, which the live recorder cannot: the first timestamp is held back until `confirm`
    more have come, and if those agree with each other but not with it, it was damaged (one
    record stamped in 2500, a clock not set yet at boot): it comes out as untimed and counts as an
    outlier, so the clock starts at the real time instead of absorbing the real ones as a step.
    Records before the first timestamp that have none come out at once with None (nothing is
    held without a clock, so nothing can be dropped); a record is held only while a deviating
    run or the first timestamp is being decided (a few records, bounded by `max_held`)."""

    def __init__(self, timeline: Timeline[T] | None = None, **options: Any) -> None:
        self.timeline: Timeline[T] = timeline if timeline is not None else Timeline(**options)
        self._first: list[tuple[float | None, T]] | None = []  # held while the first timestamp is doubted
        self._stamps: list[float] = []

    def feed(self, timestamp: float | None, item: T) -> list[tuple[float | None, T]]:
        first = self._first
        if first is None or (timestamp is None and not first):
            return self._timed([(timestamp, item)])
        first.append((timestamp, item))
        if timestamp is not None:
            self._stamps.append(timestamp)
        if len(self._stamps) > self.timeline.rule.confirm or len(first) >= self.timeline.max_held:
            return self._timed(self._decide_first())
        return []

    def finish(self) -> list[tuple[float | None, T]]:
        out = self._timed(self._decide_first())
        return out + self.timeline.flush()

    def _decide_first(self) -> list[tuple[float | None, T]]:
        held, self._first = self._first, None
        if held is None:
            return []  # decided already
        stamps, rule = self._stamps, self.timeline.rule
        if len(stamps) > rule.confirm:
            rest = stamps[1:]
            agree = all(not rule.deviates(b, a) for a, b in itertools.pairwise(rest))
            if agree and rule.deviates(rest[0], stamps[0]):
                self.timeline.outliers += 1
                i = next(i for i, (t, _) in enumerate(held) if t is not None)
                held[i] = (None, held[i][1])
        return held

    def _timed(self, pairs: list[tuple[float | None, T]]) -> list[tuple[float | None, T]]:
        timeline = self.timeline
        out: list[tuple[float | None, T]] = []
        for timestamp, item in pairs:
            if timestamp is None and timeline.time is None and not timeline.holding:
                out.append((None, item))
            else:
                out += timeline.push(timestamp, None, item)
        return out


def stream_times(
    items: Iterable[tuple[float | None, T]], timeline: Timeline[T] | None = None, **options: Any
) -> Iterator[tuple[float | None, T]]:
    """Offline: `(stream time, item)` for each `(raw timestamp, item)` of a whole log, in order, by
    `LogClock`'s rule. `timeline`: a fresh offline `Timeline` to use (to read its counters
    after), or None for one made from `options` (`step_threshold`, `confirm`, ...)."""
    clock: LogClock[T] = LogClock(timeline, **options)
    for timestamp, item in items:
        yield from clock.feed(timestamp, item)
    yield from clock.finish()


class LogSpan:
    """First and last stream time of a log, by `LogClock`'s rule, fed one timestamp at a time.

    `add(timestamp)` per record, in order (None for a record without one); `finish()` then
    gives `(start, end)` (None, None without any timestamp), and `outliers` / `steps` count
    the damaged timestamps ignored and the clock steps followed."""

    def __init__(self, **options: Any) -> None:
        self._clock: LogClock[None] = LogClock(**options)
        self.start: float | None = None
        self.end: float | None = None

    def add(self, timestamp: float | None) -> None:
        self._seen(self._clock.feed(timestamp, None))

    def finish(self) -> tuple[float | None, float | None]:
        self._seen(self._clock.finish())
        return self.start, self.end

    def _seen(self, released: list[tuple[float | None, None]]) -> None:
        for t, _ in released:
            if t is not None:
                if self.start is None:
                    self.start = t
                self.end = t

    @property
    def outliers(self) -> int:
        return self._clock.timeline.outliers

    @property
    def steps(self) -> int:
        return self._clock.timeline.steps
