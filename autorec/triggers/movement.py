"""`movement`: drops moved: the set of covered pins changed on at least `min_pins` pins.

Covered pins come from `scan_capacitance` via the state tracker (`drop_present`, or
capacitance clearly above the empty level). Debounce: a covered set becomes the
new *settled* set only once it has been seen unchanged for `settle` seconds
(from its first scan to a later scan or tick), so a single noisy scan never
fires. The first settled set is the baseline and does not fire (a drop sitting
on the board when recording starts has not moved). A firing compares the new
settled set with the previous one and happens at the time it settled.
"""

from __future__ import annotations

from typing import Any, ClassVar

from autorec.proto import PurpleDropEvent
from autorec.triggers.base import FiringResult, Option, StateView, Trigger


class MovementTrigger(Trigger):
    name: ClassVar[str] = "movement"
    description: ClassVar[str] = "the set of pins covered by drops changed (from scan_capacitance)"
    options: ClassVar[tuple[Option, ...]] = (
        Option("min_pins", "int", default=1, min=1, help="fire when at least this many pins changed"),
        Option("settle", "duration", default=0.2, max=60.0, help="a new covered set must hold this long"),
        Option("pins", "list[int]", default=[], help="only these pins count (empty: all)"),
    )
    kinds: ClassVar[frozenset[str] | None] = frozenset({"scan_capacitance"})

    def __init__(self, rule: str, **options: Any) -> None:
        super().__init__(rule, **options)
        self._filter = frozenset(self.pins) or None
        self._settled: frozenset[int] | None = None
        self._pending: frozenset[int] | None = None
        self._pending_since = 0.0

    def feed(self, time: float, event: PurpleDropEvent, state: StateView) -> FiringResult:
        pins = state.covered_pins
        if self._filter is not None:
            pins = pins & self._filter
        out = []
        if pins != self._pending:
            # The previous candidate held until now: settle it before replacing it.
            fired = self._settle(time)
            if fired is not None:
                out.append(fired)
            self._pending, self._pending_since = pins, time
        fired = self._settle(time)
        if fired is not None:
            out.append(fired)
        return out

    def tick(self, time: float, state: StateView) -> FiringResult:
        return self._settle(time)

    def _settle(self, time: float):
        if self._pending is None or self._pending == self._settled:
            return None
        if time < self._pending_since:  # the clock jumped back: count the hold from now
            self._pending_since = time
        if time - self._pending_since < self.settle - 1e-9:
            return None
        previous, self._settled = self._settled, self._pending
        if previous is None:
            return None
        added, removed = sorted(self._settled - previous), sorted(previous - self._settled)
        if len(added) + len(removed) < self.min_pins:
            # Too small a change to report; keep the old baseline so that changes accumulate.
            self._settled = previous
            return None
        return self.fire(time, added=added, removed=removed, covered=sorted(self._settled), since=self._pending_since)
