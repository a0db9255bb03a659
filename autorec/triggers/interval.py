"""`interval`: fires every `every`, for a context clip of the quiet hours.

The clip's length is the rule's `post_roll` (and `pre_roll` before it). With
`align: true` (default) firings fall on multiples of `every` since the epoch in
UTC (every: 30min fires at :00 and :30); otherwise the first firing is `every`
after the first time seen. Time comes from the stream, so it works the same live,
sped up and offline. A jump forward over several periods fires once, not a burst;
a jump back re-plans from the new time.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

from autorec.proto import PurpleDropEvent
from autorec.triggers.base import FiringResult, Option, StateView, Trigger


class IntervalTrigger(Trigger):
    name: ClassVar[str] = "interval"
    description: ClassVar[str] = "fires every `every` (a context clip; its length is the rule's post_roll)"
    options: ClassVar[tuple[Option, ...]] = (
        Option("every", "duration", help="period, e.g. 30min"),
        Option("align", "bool", default=True, help="fire on multiples of `every` in UTC"),
    )
    kinds: ClassVar[frozenset[str] | None] = frozenset()  # time only: ticks

    def __init__(self, rule: str, **options: Any) -> None:
        super().__init__(rule, **options)
        if self.every < 1.0:
            raise ValueError(f"every: must be at least 1s, got {self.every:g}s")
        self._next: float | None = None

    def _plan(self, time: float) -> float:
        if self.align:
            return (math.floor(time / self.every) + 1) * self.every
        return time + self.every

    def feed(self, time: float, event: PurpleDropEvent, state: StateView) -> FiringResult:
        return self.tick(time, state)

    def tick(self, time: float, state: StateView) -> FiringResult:
        if self._next is None or time < self._next - 2 * self.every:
            self._next = self._plan(time)
            return None
        if time < self._next:
            return None
        scheduled = self._next
        # Plan strictly after `time`, so a jump over many periods fires once, not a burst.
        self._next = self._plan(time) if self.align else scheduled + self.every
        if self._next <= time:
            self._next = time + self.every
        return self.fire(time, scheduled=scheduled)
