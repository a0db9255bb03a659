"""The pre-roll ring: the recent past of the stream, kept while no segment is open.

Contract:
- entries are `(time, payload, kind)` appended in non-decreasing time order;
- `trim(now)` drops entries older than `now - seconds`; appending drops the
  oldest entries while the payload bytes held exceed `max_bytes`. Drops made
  to honour the byte cap are the only ones counted (`dropped`,
  `dropped_bytes`): falling out of the time window is the ring's purpose,
  not a loss;
- every entry that leaves the ring without being taken (by time or by bytes)
  is handed to `on_evict`, so the owner can keep "the latest of each kind that
  predates the pre-roll" for segment snapshots;
- `take(since)` evicts everything older than `since` and returns the rest in
  order, leaving the ring empty.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Buffered:
    """One message of the stream: its stream time, payload as received, and kind."""

    time: float
    payload: bytes
    kind: str


class PreRoll:
    """A ring buffer bounded by `seconds` and `max_bytes`. See the module docstring."""

    def __init__(self, seconds: float, max_bytes: int, on_evict: Callable[[Buffered], None] | None = None) -> None:
        self.seconds = seconds
        self.max_bytes = max_bytes
        self._on_evict = on_evict
        self._ring: deque[Buffered] = deque()
        self.bytes = 0
        self.dropped = 0  # entries dropped by the byte cap, ever
        self.dropped_bytes = 0
        # (time, bytes) of byte-cap drops still inside the longest window: lets
        # a segment report how much of its own pre-roll the cap cost it.
        self._recent_drops: deque[tuple[float, int]] = deque()

    def __len__(self) -> int:
        return len(self._ring)

    def __iter__(self):
        return iter(self._ring)

    @property
    def first_time(self) -> float | None:
        return self._ring[0].time if self._ring else None

    def append(self, entry: Buffered) -> None:
        self._ring.append(entry)
        self.bytes += len(entry.payload)
        # Never drop the entry just added: a single message above the cap is
        # still the most recent past, and the segment that opens next wants it.
        while self.bytes > self.max_bytes and len(self._ring) > 1:
            old = self._evict()
            self.dropped += 1
            self.dropped_bytes += len(old.payload)
            self._recent_drops.append((old.time, len(old.payload)))
        self.trim(entry.time)

    def trim(self, now: float) -> None:
        """Drop entries older than `now - seconds` (and forget drop records beyond the window)."""
        limit = now - self.seconds
        while self._ring and self._ring[0].time < limit:
            self._evict()
        while self._recent_drops and self._recent_drops[0][0] < limit:
            self._recent_drops.popleft()

    def drops_since(self, since: float) -> tuple[int, int]:
        """(count, bytes) of byte-cap drops of entries with time >= `since` still remembered."""
        n = b = 0
        for t, size in self._recent_drops:
            if t >= since:
                n += 1
                b += size
        return n, b

    def take(self, since: float) -> list[Buffered]:
        """Evict entries older than `since`, return the remaining ones (oldest first) and empty the ring."""
        while self._ring and self._ring[0].time < since:
            self._evict()
        taken = list(self._ring)
        self._ring.clear()
        self.bytes = 0
        self._recent_drops.clear()
        return taken

    def _evict(self) -> Buffered:
        old = self._ring.popleft()
        self.bytes -= len(old.payload)
        if self._on_evict is not None:
            self._on_evict(old)
        return old
