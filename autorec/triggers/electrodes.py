"""`electrodes`: the set of driven (or scanned) electrodes changed.

pdserver sends a full `electrode_state` on every control call, also when nothing
changed, so this compares sets and never counts messages. Before the first
`electrode_state` nothing is known (pdserver sends no snapshot on connect); the
unknown state is taken as "nothing driven", so a first state that drives pins
fires and an all-off first state does not.
"""

from __future__ import annotations

from typing import Any, ClassVar

from autorec.proto import PurpleDropEvent
from autorec.triggers.base import FiringResult, Option, StateView, Trigger


class ElectrodesTrigger(Trigger):
    name: ClassVar[str] = "electrodes"
    description: ClassVar[str] = "the set of driven electrodes changed (repeats of the same state never fire)"
    options: ClassVar[tuple[Option, ...]] = (
        Option("pins", "list[int]", default=[], help="only these pins count (empty: all)"),
        Option("groups", "str", default="drive", choices=("drive", "scan"), help="which electrode groups to watch"),
    )
    kinds: ClassVar[frozenset[str] | None] = frozenset({"electrode_state"})

    def __init__(self, rule: str, **options: Any) -> None:
        super().__init__(rule, **options)
        bad = [p for p in self.pins if not 0 <= p < 128]
        if bad:
            raise ValueError(f"pins: pin numbers are 0-127, got {bad}")
        self._filter = frozenset(self.pins) or None
        self._last: frozenset[int] = frozenset()

    def feed(self, time: float, event: PurpleDropEvent, state: StateView) -> FiringResult:
        pins = state.driven_pins if self.groups == "drive" else getattr(state, "scan_pins", None)
        if pins is None:  # a StateView without scan pins: read them from the event itself
            pins = frozenset(i for g in event.electrode_state.scan_groups for i, on in enumerate(g.electrodes) if on)
        if self._filter is not None:
            pins = pins & self._filter
        if pins == self._last:
            return None
        added, removed = sorted(pins - self._last), sorted(self._last - pins)
        self._last = frozenset(pins)
        return self.fire(time, pins=sorted(pins), added=added, removed=removed)
