"""`threshold`: a numeric field crossed a level, or changed by `delta`.

`field` is any numeric field path, starting with the event kind:
`temperature_control.temperatures[0]`, `hv_regulator.voltage`,
`active_capacitance.calibrated`, `scan_capacitance.measurements[12].capacitance`.

- `above: L` fires when the value goes above L, then re-arms only once it has
  fallen below L - `hysteresis` (so a value hovering at L fires once).
- `below: L` likewise downwards (re-arms above L + `hysteresis`).
  `above` and `below` may be combined (fires on leaving the band either way).
- `for: T` (with above/below) fires only once the value has stayed past the
  level for T (on every event of the kind in between); the firing's onset is
  the first event past the level, so pre-roll counts from there.
- `delta: D` fires when the value differs by at least D from the reference,
  which is the first value seen and then the value at each firing.

Scores (`Trigger.score`): the value against `above` (a `below`-only rule reports
none: "how close" runs the other way), or the change against `delta`.

The first value counts: a temperature already above the level when recording
starts fires at once. Events whose field is missing (a list shorter than the
index) are ignored.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

from autorec.proto import PurpleDropEvent
from autorec.triggers.base import Firing, FiringResult, Option, Score, StateView, Trigger
from autorec.triggers.fields import parse_path


class ThresholdTrigger(Trigger):
    name: ClassVar[str] = "threshold"
    description: ClassVar[str] = "a numeric field went above/below a level, or changed by delta"
    options: ClassVar[tuple[Option, ...]] = (
        Option("field", "str", help="field path, e.g. temperature_control.temperatures[0]"),
        Option("above", "float", default=None, help="fire when the value rises above this"),
        Option("below", "float", default=None, help="fire when the value falls below this"),
        Option("delta", "float", default=None, min=0.0, help="fire when the value changed by this much"),
        Option("hysteresis", "float", default=0.0, min=0.0, help="re-arm only this far back past the level"),
        Option("for", "duration", default=0.0, min=0.0, max=60.0, help="fire only once past the level this long"),
    )
    kinds: ClassVar[frozenset[str] | None] = None  # set per instance from `field`
    threshold_option: ClassVar[str | None] = "above"  # with `above:` (its scores are the values)

    def __init__(self, rule: str, **options: Any) -> None:
        super().__init__(rule, **options)
        try:
            self._path = parse_path(self.field)
        except ValueError as exc:
            raise ValueError(f"field: {exc}") from None
        if not self._path.numeric:
            raise ValueError(f"field: {self.field} is not numeric (a threshold needs a number field)")
        if self.above is None and self.below is None and self.delta is None:
            raise ValueError("above: give one of above, below (a level) or delta (a change)")
        if self.delta is not None and (self.above is not None or self.below is not None):
            raise ValueError("delta: use delta alone, or above/below, not both")
        if self.delta is not None and self.delta <= 0:
            raise ValueError(f"delta: must be more than 0, got {self.delta}")
        if self.delta is not None and self.hysteresis:
            raise ValueError("hysteresis: applies to above/below only")
        if self.above is not None and self.below is not None and self.below >= self.above:
            raise ValueError(f"below: with above too, below must be less than above ({self.below} >= {self.above})")
        self._hold: float = getattr(self, "for")  # `for` is a keyword: not an attribute name in code
        if self._hold and self.delta is not None:
            raise ValueError("for: applies to above/below only")
        self._past_since: dict[str, float | None] = {"above": None, "below": None}
        self.kinds = frozenset({self._path.kind})
        self._armed_above = True
        self._armed_below = True
        self._reference: float | None = None

    def feed(self, time: float, event: PurpleDropEvent, state: StateView) -> FiringResult:
        raw = self._path.get(event)
        if raw is None:
            return None
        value = float(raw)
        if not math.isfinite(value):
            return None
        return self._decide(time, value)

    def _decide(self, time: float, value: float) -> list[Firing] | Firing | None:
        if self.delta is not None:
            if self._reference is None:
                self._reference = value
                return None
            self.score(time, abs(value - self._reference), self.delta)
            if abs(value - self._reference) >= self.delta:
                previous, self._reference = self._reference, value
                return self.fire(time, field=self.field, value=value, previous=previous, change=value - previous)
            return None
        out = []
        if self.above is not None:
            self.score(time, value, self.above)
            if self._armed_above and value > self.above:
                onset = self._held("above", time)
                if onset is not None:
                    self._armed_above = False
                    out.append(self.fire(time, onset=onset, field=self.field, value=value, above=self.above))
            else:
                self._past_since["above"] = None
                if not self._armed_above and value < self.above - self.hysteresis:
                    self._armed_above = True
        if self.below is not None:
            if self._armed_below and value < self.below:
                onset = self._held("below", time)
                if onset is not None:
                    self._armed_below = False
                    out.append(self.fire(time, onset=onset, field=self.field, value=value, below=self.below))
            else:
                self._past_since["below"] = None
                if not self._armed_below and value > self.below + self.hysteresis:
                    self._armed_below = True
        return out

    def decider(self, threshold: float) -> _ThresholdDecider | None:
        """With `above:`, every value is reported as a score, so a twin trigger with `above` set
        to `threshold` fed those values decides exactly as this one would have."""
        if self.above is None or self.delta is not None:
            return None
        options = {o.name: getattr(self, o.name) for o in self.options}
        options["above"] = threshold
        if self.below is not None and self.below >= threshold:
            return None  # no such rule could exist: below must stay under above
        return _ThresholdDecider(ThresholdTrigger(self.rule, **options))

    @property
    def max_onset_lag(self) -> float:  # type: ignore[override]
        """The hold, plus slack for the events' own spacing."""
        return self._hold + 2.0 if self._hold else 0.0

    def _held(self, side: str, time: float) -> float | None:
        """The onset if the value has now been past the level on `side` for `for`, else None."""
        since = self._past_since[side]
        if since is None or time < since:  # first event past the level (or the clock went back)
            since = self._past_since[side] = time
        if time - since < self._hold - 1e-9:
            return None
        self._past_since[side] = None
        return since


class _ThresholdDecider:
    """A twin `ThresholdTrigger` fed the reported values: see `ThresholdTrigger.decider`."""

    def __init__(self, twin: ThresholdTrigger) -> None:
        self.twin = twin

    def feed(self, score: Score) -> FiringResult:
        result = self.twin._decide(score.time, score.value)
        self.twin.__dict__.pop("_scores", None)  # the twin's own score reports go nowhere
        return result
