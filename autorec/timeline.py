"""Stream time: the clock the rule engine and the segmenter run on.

Stream time is the events' own timestamps (the rig's wall clock), never the
recorder's wall clock, which may differ from the rig's. This module turns
what arrives into one non-decreasing time line:

- a message without a timestamp (`device_info`, pdserver's `electrode_state`)
  gets the last known time carried forward;
- small backwards steps (messages built on different threads of the server
  arrive slightly out of order) are clamped to the last time, so time never
  runs backwards;
- a backward clock jump (the rig's clock stepped back by NTP or by hand) is
  absorbed: stream time continues from where it was and later timestamps are
  shifted by the jump (`offset`), counted in `jumps`; otherwise time would
  stand still until the clock caught up, and no post-roll would end;
- a forward jump (live: the stamps ran ahead of the monotonic clock by more
  than the threshold) is only counted in `jumps`, not absorbed: it is
  harmless (a post-roll ends early), and a simulator running faster than
  `rate` or a long reconnect look the same, which must not shift time;
- `tick(monotonic)` is the time of a quiet moment: the last event time plus
  the monotonic time elapsed since that event arrived (times `rate`, the
  simulator's speed-up). Post-roll therefore
  ends on time live, under the simulator's `--speed` and offline.

Before the first timestamped message there is no stream time: `stamp` then
returns None and callers hold the message (or feed it with no time).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class ClockJump:
    """A detected step of the rig's clock: `size` seconds (negative = backwards) at stream time `at`."""

    at: float
    size: float


class Timeline:
    """Turns event timestamps and monotonic arrival times into stream time. See the module docstring.

    `jump_threshold`: a timestamp this many seconds behind the last stream time
    (or, with monotonic times, ahead of the expected time) is a clock jump.
    `rate`: stream seconds per monotonic second (1 for a rig; the simulator's
    `--speed` when it runs faster than real time).
    """

    def __init__(self, jump_threshold: float = 5.0, rate: float = 1.0) -> None:
        self.jump_threshold = jump_threshold
        self.rate = rate
        self.time: float | None = None  # last stream time given out
        self._mono: float | None = None  # monotonic arrival of the message that set `time`
        self.offset = 0.0  # added to raw timestamps after absorbed clock jumps
        self.jumps: list[ClockJump] = []
        self.clamped = 0  # small backward steps clamped to the last time
        self.carried = 0  # messages without a timestamp given the carried-forward time

    def expected(self, monotonic: float | None) -> float | None:
        """Stream time now by the tick clock (last time + monotonic elapsed), or the last time offline."""
        if self.time is None:
            return None
        if monotonic is None or self._mono is None:
            return self.time
        return self.time + self.rate * max(0.0, monotonic - self._mono)

    def stamp(self, timestamp: float | None, monotonic: float | None = None) -> float | None:
        """The stream time of a message with raw `timestamp` (None if it has none) arriving at `monotonic`."""
        if timestamp is None:
            if self.time is None:
                return None
            self.carried += 1
            # Carry the last time forward, advanced by the tick clock so a quiet
            # stream's untimed message is not back-dated.
            t = self.expected(monotonic)
            assert t is not None
            self._set(t, monotonic)
            return t
        t = timestamp + self.offset
        if self.time is None:
            self._set(t, monotonic)
            return t
        expected = self.expected(monotonic)
        assert expected is not None
        if t < self.time - self.jump_threshold:
            # The rig's clock stepped back: continue from the expected time and shift what follows.
            self.jumps.append(ClockJump(at=expected, size=t - expected))
            self.offset += expected - t
            t = expected
        elif monotonic is not None and self._mono is not None and t > expected + self.jump_threshold:
            self.jumps.append(ClockJump(at=expected, size=t - expected))
        elif t < self.time:
            self.clamped += 1
            t = self.time
        self._set(t, monotonic)
        return t

    def tick(self, monotonic: float) -> float | None:
        """Stream time of a quiet moment at `monotonic` (None before any timestamp). Does not move `time`."""
        return self.expected(monotonic)

    def _set(self, t: float, monotonic: float | None) -> None:
        self.time = t
        if monotonic is not None:
            self._mono = monotonic
