"""`capacitance_step`: fires when a capacitance reading jumps away from its recent level.

A drop arriving on (or leaving) the electrodes of a capacitance group shows as
a step in `group_capacitance.measurements[group]`; on hardware the same holds
for `active_capacitance.calibrated`. A step where none was expected, or none
where one was, is what a failed split or a stuck drop looks like, so a lab can
record around every step and look at the moments that went wrong.

Written against autorec's public Trigger API only (`autorec.triggers.base`).
Like every trigger it is sans-I/O: it is given each event's time and keeps no
clock of its own.
"""

from __future__ import annotations

from collections import deque

from autorec.triggers.base import Firing, Option, StateView, Trigger


class CapacitanceStep(Trigger):
    name = "capacitance_step"
    description = "a capacitance reading steps away from its mean over the last `window`"
    options = (
        Option(
            "source",
            "str",
            default="group",
            choices=("group", "active"),
            help="group_capacitance measurements, or active_capacitance (calibrated)",
        ),
        Option("group", "int", default=0, min=0, help="which capacitance group (source: group)"),
        Option("step", "float", default=10.0, min=0.0, help="smallest change from the recent mean that fires"),
        Option("window", "duration", default=2.0, min=0.0, help="the recent mean is over this long"),
        Option("holdoff", "duration", default=1.0, min=0.0, help="no new firing this soon after one"),
    )
    kinds = frozenset({"group_capacitance", "active_capacitance"})

    def __init__(self, rule: str, **options) -> None:
        super().__init__(rule, **options)
        # only the one kind this rule reads: the engine then calls feed() for that kind alone
        self.kinds = frozenset({f"{self.source}_capacitance"})
        self._recent: deque[tuple[float, float]] = deque()
        self._quiet_until = float("-inf")

    def _value(self, event) -> float | None:
        if self.source == "active":
            return event.active_capacitance.calibrated if event.HasField("active_capacitance") else None
        if not event.HasField("group_capacitance"):
            return None
        values = event.group_capacitance.measurements
        return values[self.group] if self.group < len(values) else None  # a board with fewer groups: no reading

    def feed(self, time: float, event, state: StateView) -> Firing | None:
        value = self._value(event)
        if value is None:
            return None
        if self._recent and time < self._recent[-1][0]:
            self._recent.clear()  # the rig's clock went back: start a new baseline
        while self._recent and self._recent[0][0] < time - self.window:
            self._recent.popleft()
        firing = None
        if self._recent and time >= self._quiet_until:
            mean = sum(v for _, v in self._recent) / len(self._recent)
            if abs(value - mean) >= self.step:
                firing = self.fire(time, value=round(value, 3), mean=round(mean, 3), change=round(value - mean, 3))
                self._recent.clear()  # the new level is the baseline from now on
                self._quiet_until = time + self.holdoff
        self._recent.append((time, value))
        return firing
