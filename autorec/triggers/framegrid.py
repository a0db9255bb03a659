"""Which camera frames the motion trigger analyses: a grid of slots in stream time, slower when idle.

Contract (sans-I/O, pure: decisions from the frame times and the `wake` calls only, so a live
run, a backtest and a copy that reads ahead all choose the same frames):
- `due(time)`, called for every frame in stream order, says whether to analyse it: the first
  frame at or after each slot of a grid `interval` apart (0: every frame), so jittery frame
  times still give 1/interval analyses a second. Frames that stop for longer than a slot, or a
  clock that goes back, restart the grid at the frame.
- Idle rate (`idle_interval` > 0): once `idle_after` seconds of stream time have passed without a
  sign of activity, slots are `idle_step` apart (a whole number of `interval`s, so idle slots are
  full-rate slots and the phase never drifts). `wake(time)` records a sign (the trigger decides
  what counts): the next full-rate slot at or after `time` is due again, and the full rate holds
  until `idle_after` after the latest sign. The first frame, a gap in the frames longer than
  `GAP_WAKE` and a clock going back count as signs here (a reconnection looks like that in
  stream time).
- `follow(other)`: a copy that runs ahead of the trigger (the pre-decoder, `autorec.runs.predecode`)
  takes the trigger's grid's latest signs and phase, so its guess of the analysed frames is
  exact until a sign the trigger has not seen yet; what it guessed wrong costs decode time, never
  results (the trigger decides with its own grid).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

# A gap in the frames this long (s) is a sign: the camera or the connection came back.
GAP_WAKE = 2.0


@dataclass
class FrameGrid:
    """A motion trigger's choice of frames (see the module docstring). Times in stream seconds."""

    interval: float  # between full-rate slots; 0: every frame
    idle_interval: float = 0.0  # between idle slots (rounded to whole `interval`s); 0: no idle rate
    idle_after: float = 60.0  # quiet stream time before the idle rate
    last: float | None = None  # the last frame taken
    seen: float | None = None  # the last frame asked about
    slot: float | None = None  # the slot the last frame taken filled
    next_due: float | None = None  # frames from here (less float slack) are due
    woken: float | None = None  # the latest sign of activity

    @property
    def idle_step(self) -> float:
        """The spacing of idle slots: `idle_interval` in whole full-rate intervals (at least one)."""
        if self.interval <= 0:
            return self.idle_interval
        return max(1, round(self.idle_interval / self.interval)) * self.interval

    def idle_at(self, time: float) -> bool:
        """Whether a frame at `time` is in the idle rate (no sign for `idle_after`)."""
        return self.idle_interval > 0 and self.woken is not None and time - self.woken >= self.idle_after

    def due(self, time: float) -> bool:
        """Whether to analyse the frame at `time` (the grid moves on when it says yes)."""
        seen, self.seen = self.seen, time
        last, due = self.last, self.next_due
        if last is None or due is None or time < last:  # first frame, or the clock went backwards
            self._sign(time)
            self._take(time, time)
            return True
        if self.idle_interval > 0 and seen is not None and time - seen > GAP_WAKE:
            # Frames stopped and came back (camera or connection): a sign, and this frame is due.
            self._sign(time)
            due = self.next_due = min(due, time)
        step = self.interval if self.interval > 0 else 0.0
        # A little slack absorbs float noise in timestamps like 0.1 * n.
        if time < due - 0.01 * step:
            return False
        # Keep to the grid, unless frames stopped for a while (then restart it here).
        width = self.idle_step if self.idle_at(time) else step
        self._take(time, due if time - due < width else time)
        return True

    def _take(self, time: float, slot: float) -> None:
        self.last, self.slot = time, slot
        self.next_due = slot + (self.idle_step if self.idle_at(time) else self.interval)

    def wake(self, time: float) -> None:
        """A sign of activity at `time`: full rate from the next full-rate slot at or after it."""
        self._sign(time)
        if self.slot is None or self.next_due is None:
            return
        if self.interval <= 0:
            self.next_due = min(self.next_due, max(time, self.slot))
            return
        # The latest slot not after `time`, but at least one after the last frame taken: a frame
        # at `time` itself is due if a full-rate slot passed since the last one analysed.
        k = max(1, math.floor((time - self.slot) / self.interval + 0.01))
        self.next_due = min(self.next_due, self.slot + k * self.interval)

    def _sign(self, time: float) -> None:
        self.woken = time if self.woken is None else max(self.woken, time)

    def follow(self, other: FrameGrid) -> None:
        """Take `other`'s signs (a copy running ahead of the trigger whose grid `other` is)."""
        if other.woken is not None and (self.woken is None or other.woken > self.woken):
            self.wake(other.woken)

    def resync(self, other: FrameGrid) -> None:
        """Shift this grid onto `other`'s slots (the nearest one to this grid's next), after a wrong guess."""
        self.follow(other)
        if other.next_due is None or self.next_due is None or self.interval <= 0:
            return
        steps = round((self.next_due - other.next_due) / self.interval)
        self.next_due = other.next_due + steps * self.interval

    def copy(self) -> FrameGrid:
        return replace(self)
