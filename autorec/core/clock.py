"""The rule that tells a damaged timestamp from a real step of the rig's clock.

A pure decision rule (no clock, no I/O), used by `autorec.core.timeline.Timeline`.
One damaged record (a timestamp of 0, year 1, year 4000) must not move the
stream clock; a rig whose clock really steps (NTP, an RTC-less board that
syncs after boot, a log with a long gap) must be followed.

Contract of `ClockNormaliser.judge(t, last, expected, mono)`, called for
every record with a timestamp (already shifted by the timeline's offset), in
order:
- `t` *deviates* from the clock when it is more than `jump_threshold`
  seconds behind `last` (the last stream time given out), or too far ahead
  of `expected`: live (`mono` given), more than `jump_threshold` ahead of
  the last time plus the monotonic time elapsed since; offline, where a
  quiet stretch of the log looks the same as a jump, more than
  `step_threshold` ahead of the last time. Behind is measured
  from `last`, not `expected`: a receiver that lags (a burst queued in the
  socket) sees stamps behind the monotonic projection, which is no clock
  step. `last` is None before there is a clock.
- The first timestamp (`last` None) is ACCEPTED: it starts the clock. Were it
  damaged, the records after it deviate from it and confirm a step away
  from it, so the damage stays with that one record.
- A record that does not deviate from `ref` is ACCEPTED; any run of deviant
  records before it was a run of outliers (`refuted` says how many).
- A deviant record starts a run (HOLD), or joins the current one if it does
  not deviate from the run's last record (judged the same way, with the
  monotonic time elapsed since it). The `confirm`-th record of a run
  CONFIRMs it: the clock steps to the run. A deviant record that does not
  fit the current run refutes it (`refuted`) and starts a new run (HOLD).
- `flush()` forgets the current run (the timeline decides what it was).
The caller holds the records of a run until it is confirmed or refuted, so a
confirmed step moves no record and an outlier moves no clock.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field


class Verdict(enum.Enum):
    ACCEPTED = "accepted"  # consistent with the clock
    HOLD = "hold"  # deviates: held until the run is confirmed or refuted
    CONFIRMED = "confirmed"  # the run reached `confirm` records: the clock steps


@dataclass(frozen=True)
class Decision:
    verdict: Verdict
    refuted: int = 0  # records of the previous run that turned out to be outliers


_ACCEPTED = Decision(Verdict.ACCEPTED)


@dataclass
class ClockNormaliser:
    """Outlier/step rule for raw record times. See the module docstring."""

    jump_threshold: float = 5.0  # seconds behind the reference that count as a deviation
    step_threshold: float = 3600.0  # seconds ahead of the reference that count as a deviation
    confirm: int = 3  # consecutive consistent deviant records that confirm a step
    rate: float = 1.0  # stream seconds per monotonic second
    _run: list[tuple[float, float | None]] = field(default_factory=list)  # (time, monotonic) of the run

    def deviates(self, t: float, last: float, expected: float | None = None, live: bool = False) -> bool:
        ahead_of = last if expected is None else expected
        ahead = self.jump_threshold if live else self.step_threshold
        return t < last - self.jump_threshold or t > ahead_of + ahead

    @property
    def run_length(self) -> int:
        return len(self._run)

    def judge(self, t: float, last: float | None, expected: float | None = None, mono: float | None = None) -> Decision:
        live = mono is not None and expected is not None
        if last is None or not self.deviates(t, last, expected, live):
            if not self._run:
                return _ACCEPTED  # the common case, once per record: no allocation
            refuted = len(self._run)
            self._run.clear()
            return Decision(Verdict.ACCEPTED, refuted)
        if self._run:
            run_last, run_mono = self._run[-1]
            run_expected = run_last
            if mono is not None and run_mono is not None:
                run_expected += self.rate * max(0.0, mono - run_mono)
            if not self.deviates(t, run_last, run_expected, live and run_mono is not None):
                self._run.append((t, mono))
                if len(self._run) >= self.confirm:
                    self._run.clear()
                    return Decision(Verdict.CONFIRMED)
                return Decision(Verdict.HOLD)
        refuted = len(self._run)
        self._run = [(t, mono)]
        if self.confirm <= 1:
            self._run.clear()
            return Decision(Verdict.CONFIRMED, refuted)
        return Decision(Verdict.HOLD, refuted)

    def flush(self) -> None:
        self._run.clear()
