"""The latest state of a PurpleDrop stream, decoded for triggers and segment snapshots.

`StateTracker` implements `autorec.triggers.base.StateView`. Feed it every event
with `update(time, event)` (time: the event's own timestamp or the last known
time carried forward); it keeps:
- the latest event of each kind and the time it arrived (`latest`, `latest_time`);
- the driven pins: the union of `electrode_state.drive_groups` and the legacy
  `electrodes` list (older senders use only the latter);
- the scan pins: the union of `scan_groups`;
- the covered pins from the latest `scan_capacitance` (see `covered_from_scan`; worked out
  when first asked for after each scan);
- `time`, the latest time seen (set by `update` and `advance`).

Events are stored as given, not copied: callers must not mutate an event after
feeding it (copy it first, e.g. to re-stamp a snapshot).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from autorec import events
from autorec.proto import PurpleDropEvent

# A pin counts as covered when its capacitance exceeds the scan's empty level by at least
# this much (pF) or by several times the scan's noise, whichever is larger. Upstream's
# simulator reports 0 for empty pins and ~33 pF (one electrode's drop) to ~220 pF (larger
# drops) for covered ones, with drop_present never set; hardware has an offset and noise of
# a few pF on empty pins, which the median and MAD below absorb.
COVERED_MIN_DELTA = 5.0
COVERED_NOISE_FACTOR = 6.0


def covered_from_scan(
    measurements: Sequence, min_delta: float = COVERED_MIN_DELTA, noise_factor: float = COVERED_NOISE_FACTOR
) -> frozenset[int]:
    """Pins covered by a drop in one scan: `drop_present`, or capacitance clearly above empty.

    The empty level is the median capacitance over the scan (most pins of a board are
    empty); "clearly above" is more than max(`min_delta`, `noise_factor` x MAD-sigma).
    """
    # Plain lists and sorted() medians: ~5x faster than statistics.median on 128 pins, and
    # this runs for every scan of a night's log when backtesting.
    caps = []
    covered = set()
    for pin, m in enumerate(measurements):  # one pass: each element access builds a Python object
        caps.append(m.capacitance)
        if m.drop_present:
            covered.add(pin)
    if caps:
        empty = _median(caps)
        mad = _median([abs(c - empty) for c in caps]) * 1.4826
        level = empty + max(min_delta, noise_factor * mad)
        covered.update(pin for pin, c in enumerate(caps) if c > level)
    return frozenset(covered)


def _median(values: list[float]) -> float:
    ordered = sorted(values)
    n = len(ordered)
    return (ordered[n // 2] + ordered[(n - 1) // 2]) / 2


def _pins(flags: Iterable[bool]) -> set[int]:
    return {i for i, on in enumerate(flags) if on}


class StateTracker:
    """Latest-state bookkeeping; implements the `StateView` protocol for triggers."""

    def __init__(self, covered_min_delta: float = COVERED_MIN_DELTA) -> None:
        self._latest: dict[str, PurpleDropEvent] = {}
        self._latest_time: dict[str, float | None] = {}
        self._time: float | None = None
        self._driven: frozenset[int] = frozenset()
        self._scan: frozenset[int] = frozenset()
        self._covered: frozenset[int] | None = frozenset()  # None: the latest scan's, not worked out yet
        self._covered_min_delta = covered_min_delta
        self.counts: dict[str, int] = {}

    # -- StateView -------------------------------------------------------------------------

    @property
    def time(self) -> float | None:
        return self._time

    def latest(self, kind: str) -> PurpleDropEvent | None:
        return self._latest.get(kind)

    def latest_time(self, kind: str) -> float | None:
        return self._latest_time.get(kind)

    @property
    def driven_pins(self) -> frozenset[int]:
        return self._driven

    @property
    def covered_pins(self) -> frozenset[int]:
        covered = self._covered
        if covered is None:
            scan = self._latest["scan_capacitance"].scan_capacitance
            covered = self._covered = covered_from_scan(scan.measurements, self._covered_min_delta)
        return covered

    # -- extras ----------------------------------------------------------------------------

    @property
    def scan_pins(self) -> frozenset[int]:
        return self._scan

    @property
    def electrodes_known(self) -> bool:
        """False until the first electrode_state: pdserver sends no snapshot on connect."""
        return "electrode_state" in self._latest

    @property
    def covered_known(self) -> bool:
        return "scan_capacitance" in self._latest

    def kinds_seen(self) -> list[str]:
        return [k for k in events.KINDS if k in self._latest]

    def snapshot(self) -> dict[str, tuple[float | None, PurpleDropEvent]]:
        """kind -> (time, latest event) for every kind seen, in protocol order (do not mutate)."""
        return {k: (self._latest_time[k], self._latest[k]) for k in self.kinds_seen()}

    # -- updates ---------------------------------------------------------------------------

    def advance(self, time: float) -> None:
        """Time moved on without an event (a tick)."""
        self._time = time

    def update(self, time: float | None, event: PurpleDropEvent) -> str | None:
        """Record `event` at `time`; returns its kind (None for an event with no field set)."""
        kind = event.WhichOneof("msg")
        if kind is None:
            return None
        if time is not None:
            self._time = time
        self._latest[kind] = event
        self._latest_time[kind] = time if time is not None else self._time
        self.counts[kind] = self.counts.get(kind, 0) + 1
        if kind == "electrode_state":
            es = event.electrode_state
            # Current pdserver fills drive_groups and leaves the legacy list empty; older
            # senders do the opposite. The union reads either.
            driven = _pins(es.electrodes)
            for group in es.drive_groups:
                driven |= _pins(group.electrodes)
            scan: set[int] = set()
            for group in es.scan_groups:
                scan |= _pins(group.electrodes)
            self._driven = frozenset(driven)
            self._scan = frozenset(scan)
        elif kind == "scan_capacitance":
            # Worked out when a trigger asks (`covered_pins`): reading 128 measurements out of the
            # message costs ~0.1 ms a scan, which most rule files never need.
            self._covered = None
        return kind
