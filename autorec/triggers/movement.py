"""`movement`: drops moved: the set of covered pins changed on at least `min_pins` pins.

Covered pins come from `scan_capacitance` via the state tracker (`drop_present`, or
capacitance clearly above the empty level). Debounce: a covered set becomes the
new *settled* set only once scans have shown it unchanged over at least `settle`
seconds (its first scan to a later one), so with any `settle` > 0 a single noisy
scan never fires; pdserver scans ~4 times a second, so the default 200ms means
"seen in two consecutive scans". Only scans confirm (time passing without a scan
says nothing about the board). The first settled set is the baseline and does
not fire (a drop sitting on the board when recording starts has not moved). A
firing compares the new settled set with the previous one, at the confirming
scan's time; `since` in the evidence is when the new set was first seen. The
firing's onset (pre-roll counts from there) is the first scan that differed from
the settled set: while drops keep moving the set may never hold still long enough
to settle, and the firing only comes when they stop; the movement began at the
first departure. Each scan's score is the number of pins that differ from the
settled set, against `min_pins`. `max_onset_lag` (settle + 10 s) bounds how far back that reaches.
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
        self._departed: float | None = None  # first scan that differed from the settled set

    @property
    def max_onset_lag(self) -> float:  # type: ignore[override]
        """The hold, plus 10 s of drops moving without ever holding still (a burst)."""
        return self.settle + 10.0

    def feed(self, time: float, event: PurpleDropEvent, state: StateView) -> FiringResult:
        pins = state.covered_pins
        if self._filter is not None:
            pins = pins & self._filter
        if self._settled is not None:
            # How many pins differ from the settled drops, against the min_pins it takes to fire.
            self.score(time, float(len(pins ^ self._settled)), float(self.min_pins))
        if self._settled is not None and pins != self._settled:
            if self._departed is None or time < self._departed:
                self._departed = time
        if pins != self._pending:
            self._pending, self._pending_since = pins, time
        elif time < self._pending_since:  # the clock jumped back: count the hold from now
            self._pending_since = time
        held = time - self._pending_since >= self.settle - 1e-9
        if self._pending == self._settled:
            if held:  # back where they were, and still: a drop that left and came back started nothing new
                self._departed = None
            return None
        if not held:
            return None
        previous, self._settled = self._settled, self._pending
        if previous is None:
            return None
        added, removed = sorted(self._settled - previous), sorted(previous - self._settled)
        if len(added) + len(removed) < self.min_pins:
            # Too small a change to report; keep the old baseline so that changes accumulate.
            self._settled = previous
            return None
        onset = self._departed if self._departed is not None else self._pending_since
        self._departed = None  # the next movement departs from the new settled set
        return self.fire(
            time,
            onset=onset,
            added=added,
            removed=removed,
            covered=sorted(self._settled),
            since=self._pending_since,
        )
