"""The segmenter: turns the stream and the rules' firings into log segments.

A sans-I/O state machine: no clock, no files, no sockets. The caller feeds it
stream time (see `autorec.core.timeline`) and gets back a list of actions
(`OpenSegment`, `Write`, `CloseSegment`) to carry out in order, in a writer
or a dry-run summary.

Contract:
- `feed(time, payload, kind, firings)` for every message that parses, in
  arrival order with non-decreasing `time`; `firings` are what the rule
  engine returned for that message. `tick(time, firings)` when time advances
  without a message (quiet stream, disconnect, or tick firings such as the
  interval trigger). `disconnected(time)` / `connected(time)` mark a gap in
  the stream. `close(time)` closes the open segment (shutdown).
- While no segment is open, messages go into the pre-roll ring
  (`autorec.core.preroll`), bounded by the longest `pre_roll` and the largest
  `pre_roll_max_bytes` of all rules.
- A firing at time `f` of a rule with policy `p` opens a segment if none is
  open: first a **snapshot** (a copy of the latest message of each
  non-image kind that predates the pre-roll, re-stamped to the segment's
  start so the segment replays on its own with a consistent time line;
  `device_info` has no timestamp and is copied as is), then every ring entry
  with time >= `o - p.pre_roll`, where `o` is the firing's onset (when its
  evidence began; never earlier than `f` minus the rule's onset lag, see
  `set_onset_lags`), then live messages. The message that caused
  the firing is the first live message. The segment's start is the time of
  its first pre-roll message, or the current time if the ring held none.
- Every firing (opening or not) extends the open segment's end to at least
  `f + p.post_roll`; rules that overlap share one segment and each firing is
  listed. A message with time <= end belongs to the segment; the first time
  (message or tick) beyond `end` closes it with `end` as its end.
- `max_length` (the smallest among the segment's rules) splits: the first
  message at or after `start + max_length` starts the next part, which opens
  with its own snapshot (the latest of each kind before the split) and no
  pre-roll. Nothing is lost or duplicated across the split.
- After a segment closes the ring starts empty: a segment opening soon after
  never repeats messages the previous one already holds.
- A disconnect while a segment is open is recorded as a gap in it; if the
  segment is still open when data returns, the gap has both ends, otherwise
  the segment closes when its post-roll expires on the tick clock and the gap
  is left open-ended.
- `pause(time, reason)` closes the open segment and opens none until
  `resume()` (the disk floor uses it); firings meanwhile are only counted.
- `note(firings)` lists firings in the open segment without extending it or
  adding their rules (budget-blocked firings); False when no segment is open.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

from autorec import events
from autorec.core.preroll import Buffered, PreRoll
from autorec.triggers.base import Firing

# Snapshot order: what a reader needs first (board layout, device, settings,
# electrodes, camera geometry), then sensor readings by their original time.
STATE_KINDS: tuple[str, ...] = ("electrode_layout", "device_info", "settings", "electrode_state", "image_transform")
SENSOR_KINDS: tuple[str, ...] = tuple(k for k in events.KINDS if k not in STATE_KINDS and k != "image")
SNAPSHOT_KINDS: frozenset[str] = frozenset(STATE_KINDS + SENSOR_KINDS)


@dataclass(frozen=True)
class SegmentPolicy:
    """How a rule's firings shape a segment (the rule file's `segments` keys), in seconds and bytes."""

    pre_roll: float = 10.0
    post_roll: float = 20.0
    max_length: float = 1800.0
    pre_roll_max_bytes: int = 256_000_000


@dataclass(frozen=True)
class SnapshotItem:
    """One snapshot message: its kind, original stream time, and the time it was re-stamped to (None: not)."""

    kind: str
    original_time: float
    stamped_time: float | None

    def as_dict(self) -> dict:
        return {"kind": self.kind, "original_time": self.original_time, "stamped_time": self.stamped_time}


@dataclass(frozen=True)
class PreRollExtent:
    """What the pre-roll put into a segment, and what the byte cap cost it."""

    first: float | None
    last: float | None
    records: int
    bytes: int
    dropped: int = 0
    dropped_bytes: int = 0

    def as_dict(self) -> dict:
        return {
            "first": self.first,
            "last": self.last,
            "records": self.records,
            "bytes": self.bytes,
            "dropped": self.dropped,
            "dropped_bytes": self.dropped_bytes,
        }


@dataclass(frozen=True)
class Gap:
    """No data from `start` to `end` (stream time; `end` None: the segment closed before data returned)."""

    start: float
    end: float | None
    reason: str = "disconnected"
    records: int = 0  # messages known to be lost (writer drops); 0 when unknown
    bytes: int = 0

    def as_dict(self) -> dict:
        d: dict = {"start": self.start, "end": self.end, "reason": self.reason}
        if self.records:
            d["records"] = self.records
            d["bytes"] = self.bytes
        return d


@dataclass(frozen=True)
class OpenSegment:
    """Start a new segment file. `seq` counts segments (parts included) from 1; `part` counts splits."""

    seq: int
    part: int
    start: float
    reason: Literal["trigger", "split"]
    rules: tuple[str, ...]
    firings: tuple[Firing, ...]
    snapshot: tuple[SnapshotItem, ...]
    pre_roll: PreRollExtent


@dataclass(frozen=True, slots=True)
class Write:
    """Append one record to the open segment. `origin`: snapshot, pre_roll or live."""

    time: float
    payload: bytes
    kind: str
    origin: str = "live"


@dataclass(frozen=True)
class CloseSegment:
    """Close the open segment at stream time `end`. `reason`: post_roll, max_length or shutdown."""

    seq: int
    part: int
    start: float
    end: float
    reason: str
    rules: tuple[str, ...]
    firings: tuple[Firing, ...]
    gaps: tuple[Gap, ...]


Action = OpenSegment | Write | CloseSegment


@dataclass
class _Open:
    seq: int
    part: int
    start: float
    end: float
    max_length: float
    rules: list[str]
    firings: list[Firing]
    gaps: list[Gap] = field(default_factory=list)


class Segmenter:
    """The segment state machine. See the module docstring.

    `policies` maps rule names to their `SegmentPolicy`; rules not listed use `default`.
    """

    def __init__(self, policies: Mapping[str, SegmentPolicy] | None = None, default: SegmentPolicy | None = None):
        self._ring = PreRoll(0.0, 0, on_evict=self._remember)
        self._onset_lags: dict[str, float] = {}
        self.set_policies(policies, default)
        self._latest: dict[str, Buffered] = {}  # latest of each snapshot kind already behind us
        self._open: _Open | None = None
        self._seq = 0
        self._time: float | None = None
        self._disconnected_at: float | None = None
        self._last_gap: Gap | None = None
        self.segments = 0  # segments opened (parts included)
        self.paused: str | None = None  # why segments are not being opened (see `pause`)
        self.suppressed = 0  # firings ignored while paused

    def set_policies(
        self, policies: Mapping[str, SegmentPolicy] | None = None, default: SegmentPolicy | None = None
    ) -> None:
        """Replace the rules' policies (a rule file reload). The open segment keeps its end and
        max_length; the pre-roll ring is re-bounded (shrinking applies from the next message)."""
        self.default = default or SegmentPolicy()
        self.policies = dict(policies or {})
        every = [self.default, *self.policies.values()]
        self._ring.seconds = max(p.pre_roll for p in every)
        self._ring.max_bytes = max(p.pre_roll_max_bytes for p in every)
        self._bound_ring()

    def set_onset_lags(self, lags: Mapping[str, float]) -> None:
        """How far before its firing time each rule's onsets may lie (seconds; unlisted: 0).
        The ring then holds `pre_roll + lag` for each rule (still capped by `pre_roll_max_bytes`),
        and an onset earlier than `time - lag` counts as `time - lag`."""
        self._onset_lags = {rule: max(0.0, float(lag)) for rule, lag in lags.items()}
        self._bound_ring()

    def _bound_ring(self) -> None:
        seconds = self.default.pre_roll
        for rule, lag in self._onset_lags.items():
            seconds = max(seconds, self.policy(rule).pre_roll + lag)
        for p in self.policies.values():
            seconds = max(seconds, p.pre_roll)
        self._ring.seconds = seconds

    def onset(self, firing: Firing) -> float:
        """The time `firing`'s pre-roll is counted from: its onset, bounded by its rule's onset lag."""
        onset = firing.onset if firing.onset is not None else firing.time
        return min(firing.time, max(onset, firing.time - self._onset_lags.get(firing.rule, 0.0)))

    # -- queries -------------------------------------------------------
    @property
    def is_open(self) -> bool:
        return self._open is not None

    @property
    def open_rules(self) -> tuple[str, ...]:
        return tuple(self._open.rules) if self._open else ()

    @property
    def open_end(self) -> float | None:
        """The open segment's current end (when its post-roll expires), or None."""
        return self._open.end if self._open else None

    def open_holds(self, time: float) -> dict[str, float]:
        """For the open segment: each rule that fired in it, and how long its post-roll still holds the
        segment open at `time` (seconds, 0 once expired). Empty when no segment is open."""
        if self._open is None:
            return {}
        last: dict[str, float] = {}
        for f in self._open.firings:
            last[f.rule] = max(last.get(f.rule, f.time), f.time)
        return {rule: max(0.0, t + self.policy(rule).post_roll - time) for rule, t in last.items()}

    @property
    def pre_roll_bytes(self) -> int:
        """Payload bytes held in the pre-roll now (metrics)."""
        return self._ring.bytes

    @property
    def pre_roll_dropped(self) -> tuple[int, int]:
        """(records, bytes) dropped from the pre-roll by its byte cap since start."""
        return self._ring.dropped, self._ring.dropped_bytes

    def policy(self, rule: str) -> SegmentPolicy:
        return self.policies.get(rule, self.default)

    # -- inputs --------------------------------------------------------
    def feed(self, time: float, payload: bytes, kind: str, firings: Sequence[Firing] = ()) -> list[Action]:
        actions = self._advance(time)
        if firings:
            self._fire(time, firings, actions)
        entry = Buffered(time, payload, kind)
        if self._open is not None:
            actions.append(self._write(entry, "live"))
        else:
            self._ring.append(entry)
        return actions

    def tick(self, time: float, firings: Sequence[Firing] = ()) -> list[Action]:
        actions = self._advance(time)
        if self._open is None:
            self._ring.trim(time)
        if firings:
            self._fire(time, firings, actions)
        return actions

    def disconnected(self, time: float) -> list[Action]:
        actions = self._advance(time)
        if self._disconnected_at is None:
            self._disconnected_at = time
        return actions

    def connected(self, time: float) -> list[Action]:
        actions = self._advance(time)
        if self._disconnected_at is not None:
            gap = Gap(self._disconnected_at, time)
            self._last_gap = gap
            if self._open is not None:
                self._open.gaps.append(Gap(max(gap.start, self._open.start), time))
            self._disconnected_at = None
        return actions

    def close(self, time: float | None = None, reason: str = "shutdown") -> list[Action]:
        """Close the open segment now at `time` (or the last time seen), e.g. at shutdown or end of log."""
        if self._open is None:
            return []
        t = time if time is not None else (self._time if self._time is not None else self._open.start)
        t = min(max(t, self._open.start), self._open.end)
        return [self._close(t, reason)]

    def pause(self, time: float | None, reason: str) -> list[Action]:
        """Stop recording segments (e.g. the disk floor): the open segment closes with `reason`, and
        firings open nothing until `resume()` (they are counted in `suppressed`). The ring keeps running.
        `time` None: no stream time is known yet (so nothing is open), and no clock is set."""
        if time is None:
            self.paused = reason
            return []
        actions = self._advance(time)
        self.paused = reason
        if self._open is not None:
            actions.append(self._close(time, reason))
        return actions

    def resume(self) -> None:
        self.paused = None

    def note(self, firings: Sequence[Firing]) -> bool:
        """List `firings` in the open segment's firings only (no extension, no new rule). False if none is open."""
        if self._open is None:
            return False
        self._open.firings.extend(firings)
        return True

    # -- internals -----------------------------------------------------
    def _advance(self, time: float) -> list[Action]:
        if self._time is not None and time < self._time:
            time = self._time  # the timeline guarantees order; be safe if a caller does not
        self._time = time
        seg = self._open
        if seg is None:
            return []
        if time > seg.end:
            return [self._close(seg.end, "post_roll")]
        if time >= seg.start + seg.max_length:
            closing = self._close(time, "max_length", continued=True)
            actions: list[Action] = [closing]
            self._start(
                time,
                part=seg.part + 1,
                reason="split",
                rules=list(seg.rules),
                firings=[],
                end=seg.end,
                max_length=seg.max_length,
                pre_roll=[],
                pre_roll_extent=PreRollExtent(None, None, 0, 0),
                actions=actions,
            )
            return actions
        return []

    def _fire(self, time: float, firings: Sequence[Firing], actions: list[Action]) -> None:
        seg = self._open
        if seg is None and self.paused is not None:
            self.suppressed += len(firings)
            return
        if seg is None:
            window = min(self.onset(f) - self.policy(f.rule).pre_roll for f in firings)
            cap = max(self.policy(f.rule).pre_roll_max_bytes for f in firings)
            dropped, dropped_bytes = self._ring.drops_since(window)
            entries = self._ring.take(window)  # older entries are evicted into the snapshot state
            # A rule may ask for a smaller byte cap than the ring's (the largest of all rules):
            # keep the newest entries within it, the rest only update the snapshot state.
            total = sum(len(e.payload) for e in entries)
            i = 0
            while total > cap and i < len(entries) - 1:
                total -= len(entries[i].payload)
                dropped += 1
                dropped_bytes += len(entries[i].payload)
                self._remember(entries[i])
                i += 1
            entries = entries[i:]
            start = entries[0].time if entries else time
            extent = PreRollExtent(
                entries[0].time if entries else None,
                entries[-1].time if entries else None,
                len(entries),
                total,
                dropped,
                dropped_bytes,
            )
            rules = list(dict.fromkeys(f.rule for f in firings))
            self._start(
                start,
                part=1,
                reason="trigger",
                rules=rules,
                firings=list(firings),
                end=max(f.time + self.policy(f.rule).post_roll for f in firings),
                max_length=min(self.policy(r).max_length for r in rules),
                pre_roll=entries,
                pre_roll_extent=extent,
                actions=actions,
            )
            return
        for f in firings:
            seg.firings.append(f)
            if f.rule not in seg.rules:
                seg.rules.append(f.rule)
                seg.max_length = min(seg.max_length, self.policy(f.rule).max_length)
            seg.end = max(seg.end, f.time + self.policy(f.rule).post_roll)

    def _start(
        self,
        start: float,
        *,
        part: int,
        reason: Literal["trigger", "split"],
        rules: list[str],
        firings: list[Firing],
        end: float,
        max_length: float,
        pre_roll: list[Buffered],
        pre_roll_extent: PreRollExtent,
        actions: list[Action],
    ) -> None:
        self._seq += 1
        self.segments += 1
        seg = _Open(self._seq, part, start, end, max_length, rules, firings)
        snap_items, snap_writes = self._snapshot(start)
        if self._last_gap is not None and pre_roll and self._last_gap.end is not None:
            if self._last_gap.end >= pre_roll[0].time:
                seg.gaps.append(self._last_gap)
        self._open = seg
        actions.append(
            OpenSegment(
                seq=seg.seq,
                part=part,
                start=start,
                reason=reason,
                rules=tuple(rules),
                firings=tuple(firings),
                snapshot=tuple(snap_items),
                pre_roll=pre_roll_extent,
            )
        )
        actions.extend(snap_writes)
        for e in pre_roll:
            actions.append(self._write(e, "pre_roll"))

    def _snapshot(self, start: float) -> tuple[list[SnapshotItem], list[Write]]:
        chosen = [self._latest[k] for k in STATE_KINDS if k in self._latest]
        chosen += sorted((self._latest[k] for k in SENSOR_KINDS if k in self._latest), key=lambda e: e.time)
        items: list[SnapshotItem] = []
        writes: list[Write] = []
        for e in chosen:
            payload, stamped = _restamp(e.payload, start)
            if payload is None:
                continue
            items.append(SnapshotItem(e.kind, e.time, start if stamped else None))
            writes.append(Write(start, payload, e.kind, "snapshot"))
        return items, writes

    def _write(self, entry: Buffered, origin: str) -> Write:
        self._remember(entry)
        return Write(entry.time, entry.payload, entry.kind, origin)

    def _remember(self, entry: Buffered) -> None:
        if entry.kind in SNAPSHOT_KINDS:
            self._latest[entry.kind] = entry

    def _close(self, end: float, reason: str, continued: bool = False) -> CloseSegment:
        seg = self._open
        assert seg is not None
        gaps = list(seg.gaps)
        if self._disconnected_at is not None and not continued:
            gaps.append(Gap(max(self._disconnected_at, seg.start), None))
        elif self._disconnected_at is not None and continued:
            gaps.append(Gap(max(self._disconnected_at, seg.start), end))
        self._open = None
        return CloseSegment(
            seq=seg.seq,
            part=seg.part,
            start=seg.start,
            end=end,
            reason=reason,
            rules=tuple(seg.rules),
            firings=tuple(seg.firings),
            gaps=tuple(gaps),
        )


def _restamp(payload: bytes, time: float) -> tuple[bytes | None, bool]:
    """`payload` re-stamped to `time` (or unchanged if its kind has no timestamp); None if it does not parse."""
    try:
        event = events.decode(payload)
    except events.DecodeError:
        return None, False
    if not events.set_timestamp(event, time):
        return payload, False
    return event.SerializeToString(), True
