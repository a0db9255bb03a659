"""Search by electrode: when was each pin driven, covered by a drop, uncovered, over a whole night.

`build_electrode_index(paths)` reads the telemetry track (`telemetry-*.bin`,
a daily track, `autorec.io.dailytrack`) once and keeps, per pin, the spans it was driven
(`electrode_state`: the legacy list and every drive group, as
`autorec.core.state` reads them) and the spans it was covered
(`scan_capacitance`: `drop_present` or a capacitance clearly above the
board's empty level, `autorec.core.state.covered_from_scan`). `moments(pins)`
then answers from memory: every span start ("driven", "covered") and end
("released", "uncovered"), in time order.

Contracts:
- Never raises for bad content: a damaged record is skipped (`skipped`), a
  cut-off or corrupt log is read up to there and named in `problems`.
- A record without a timestamp (pdserver's `electrode_state`) happened at
  the last known time, as `autorec.report.sensorseries` reads it.
- An electrode state equal to the previous one costs one bytes comparison;
  scans are worked out one in `SCAN_STRIDE` (and every scan around a change,
  so a change keeps its exact time); a cover shorter than that stride can
  be missed.
- The build is blocking (seconds for a 12-hour night): call it in a worker
  thread and keep the index (`ElectrodeIndexCache`: a log that grew is read
  on from where the index stopped, so a search beside a running recorder
  costs only the new records). A query is a few list walks: milliseconds.
"""

from __future__ import annotations

import json
import logging
import os
import time as _time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from autorec import events
from autorec.core.state import covered_from_scan
from autorec.io.boundedread import open_regular
from autorec.io.logfile import LogReader
from autorec.proto import PurpleDropEvent

log = logging.getLogger(__name__)

MAX_PIN = 4096  # a pin number above this is not a board's
MAX_MOMENTS = 5000  # moments returned by one query; the rest are counted
# Working out which pins a scan shows covered is most of the build (~80 µs a scan: 128 measurements read
# from protobuf, two medians). Only every SCAN_STRIDE-th scan is worked out, and the ones between it and
# the last only when the covered pins changed: 12 hours went from 14.6 s to ~4 s (benchmarks/electrode_search.py).
# The cost: a drop that comes and goes between two worked-out scans (under 1 s at pdserver's 4 scans/s) is
# not seen.
SCAN_STRIDE = 4


@dataclass
class Moment:
    time: float
    pin: int
    what: str  # driven, released, covered, uncovered

    def as_dict(self) -> dict[str, Any]:
        return {"time": self.time, "pin": self.pin, "what": self.what}


@dataclass
class ElectrodeIndex:
    """Per pin, the driven and covered spans `[start, end]` (end None: still so at the end of the logs)."""

    driven: dict[int, list[list[float | None]]] = field(default_factory=dict)
    covered: dict[int, list[list[float | None]]] = field(default_factory=dict)
    records: int = 0
    skipped: int = 0
    problems: list[str] = field(default_factory=list)
    first: float | None = None
    last: float | None = None
    build_seconds: float = 0.0
    layout: list[list[int | None]] | None = None  # the board's grid of pins, if the stream carried one
    # where the last update stopped, to read on from there when a log grows (a run still writing it)
    _offsets: dict[str, int] = field(default_factory=dict, repr=False)
    _last_time: float | None = None
    _driven: frozenset[int] = frozenset()
    _covered: frozenset[int] = frozenset()
    _last_state: bytes = b""

    def update(self, paths: Sequence[str | os.PathLike[str]]) -> None:
        """Read what the logs hold beyond the last update (all of a log not seen before)."""
        _update(self, paths)

    def moments(self, pins: Iterable[int], limit: int = MAX_MOMENTS) -> tuple[list[Moment], int]:
        """Every change of the given pins, in time order, and how many more there were past `limit`."""
        out: list[Moment] = []
        for pin in set(pins):
            for spans, on, off in ((self.driven, "driven", "released"), (self.covered, "covered", "uncovered")):
                for start, end in spans.get(pin, ()):
                    out.append(Moment(start, pin, on))
                    if end is not None:
                        out.append(Moment(end, pin, off))
        out.sort(key=lambda m: (m.time, m.pin))
        return out[:limit], max(0, len(out) - limit)

    def pins(self) -> list[int]:
        return sorted(set(self.driven) | set(self.covered))


def _driven_pins(state) -> frozenset[int]:
    pins = {i for i, on in enumerate(state.electrodes) if on}
    for group in state.drive_groups:
        pins.update(i for i, on in enumerate(group.electrodes) if on)
    return frozenset(pins)


def _layout_grid(payload: bytes) -> list[list[int | None]] | None:
    """The pin grid of an `electrode_layout` record (upstream board JSON: `{"layout": {"grid": [[pin, ...]]}}`),
    or None when it is not one (a damaged or unknown layout is no picture, never an error)."""
    try:
        doc = json.loads(PurpleDropEvent.FromString(payload).electrode_layout.layout)
        grid = doc["layout"]["grid"]
    except Exception:
        return None
    if not isinstance(grid, list) or not grid or len(grid) > 64:
        return None
    out: list[list[int | None]] = []
    for row in grid:
        if not isinstance(row, list) or len(row) > 64:
            return None
        out.append([v if isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= MAX_PIN else None for v in row])
    return out


def _track(spans: dict[int, list[list[float | None]]], before: frozenset[int], now: frozenset[int], t: float) -> None:
    for pin in now - before:
        spans.setdefault(pin, []).append([t, None])
    for pin in before - now:
        spans[pin][-1][1] = t


def _settle(index: ElectrodeIndex, scans: list[tuple[float, Any]], covered: frozenset[int]) -> frozenset[int]:
    """Work out the last of `scans`; only when it differs from `covered` are the ones before it worked out too,
    so each change keeps the time of the scan that first showed it. Returns the covered pins after them."""
    t_last, last = scans[-1]
    now = covered_from_scan(last.measurements)
    if now == covered:
        return covered
    for t, scan in scans[:-1]:
        pins = covered_from_scan(scan.measurements)
        if pins != covered:
            _track(index.covered, covered, pins, t)
            covered = pins
    if now != covered:
        _track(index.covered, covered, now, t_last)
    return now


def build_electrode_index(paths: Sequence[str | os.PathLike[str]]) -> ElectrodeIndex:
    """Read the telemetry logs (in name order: one a UTC day) into an index. See the module docstring."""
    index = ElectrodeIndex()
    index.update(paths)
    return index


_STATE_TAG = (events.NUMBER_BY_KIND["electrode_state"] << 3) | 2
_SCAN_TAG = (events.NUMBER_BY_KIND["scan_capacitance"] << 3) | 2
_LAYOUT_TAG = (events.NUMBER_BY_KIND["electrode_layout"] << 3) | 2


def _update(index: ElectrodeIndex, paths: Sequence[str | os.PathLike[str]]) -> None:
    began = _time.perf_counter()
    decode = PurpleDropEvent.FromString
    state_tag, scan_tag, layout_tag = _STATE_TAG, _SCAN_TAG, _LAYOUT_TAG
    last_time, driven, covered, last_state = index._last_time, index._driven, index._covered, index._last_state
    pending: list[tuple[float, Any]] = []  # scans since the last one worked out
    index.problems = []
    for path in sorted(paths, key=os.fspath):
        name = os.fspath(path)
        try:
            f = open_regular(path)  # a FIFO planted under a day's name is a problem, never a blocked worker
        except OSError as exc:
            index.problems.append(f"{path}: cannot read: {exc.strerror or exc}")
            continue
        with f:
            f.seek(index._offsets.get(name, 0))
            reader = LogReader(f)
            try:
                for record in reader.records():
                    payload = record.payload
                    index.records += 1
                    if not payload:
                        continue
                    tag = payload[0]
                    if tag == layout_tag:
                        index.layout = _layout_grid(payload) or index.layout
                        continue
                    if tag != state_tag and tag != scan_tag:
                        # the clock of timeless records: the last timestamp seen on any kind
                        kind = events.KIND_BY_NUMBER.get(tag >> 3) if tag & 7 == 2 else None
                        if kind is not None:
                            t = events.head_timestamp(kind, payload[:48])
                            if isinstance(t, float):
                                last_time = t
                        continue
                    if tag == state_tag and payload == last_state:
                        continue
                    try:
                        event = decode(payload)
                    except Exception:  # protobuf's DecodeError, or a value error from a damaged field
                        index.skipped += 1
                        continue
                    inner = event.electrode_state if tag == state_tag else event.scan_capacitance
                    t = events.timestamp(event) if inner.HasField("timestamp") else None
                    t = t if t is not None else last_time
                    if t is None:
                        index.skipped += 1
                        continue
                    last_time = t
                    index.first = t if index.first is None else index.first
                    index.last = t
                    if tag == state_tag:
                        last_state = payload
                        now = _driven_pins(inner)
                        if now != driven:
                            _track(index.driven, driven, now, t)
                            driven = now
                    else:
                        pending.append((t, inner))
                        if len(pending) == SCAN_STRIDE:
                            covered = _settle(index, pending, covered)
                            pending = []
            except OSError as exc:
                index.problems.append(f"{path}: cannot read: {exc.strerror or exc}")
            index._offsets[name] = reader.end_offset  # the next update reads on from the last whole record
        if reader.corrupt is not None:
            index.problems.append(f"{path}: corrupt at offset {reader.corrupt.offset}; read up to there")
    if pending:
        covered = _settle(index, pending, covered)
    index._last_time, index._driven, index._covered, index._last_state = last_time, driven, covered, last_state
    index.build_seconds += _time.perf_counter() - began


class ElectrodeIndexCache:
    """One index per directory. When the logs only grew (a run still writing them, a new day's log), the index
    reads on from where it stopped; when one shrank, was replaced or went away, it is built again."""

    def __init__(self) -> None:
        self._files: dict[str, tuple[int, int]] = {}  # path -> (inode, size) when last read
        self.index: ElectrodeIndex | None = None

    @staticmethod
    def _stat(paths: Sequence[Path]) -> dict[str, tuple[int, int]]:
        files = {}
        for p in paths:
            try:
                st = p.stat()
                files[os.fspath(p)] = (st.st_ino, st.st_size)
            except OSError:
                continue
        return files

    def get(self, paths: Sequence[Path]) -> ElectrodeIndex:
        """The index of `paths` (blocking when it must read: call it in a worker thread, one call at a time)."""
        files = self._stat(paths)
        if files == self._files and self.index is not None:
            return self.index
        grown = self.index is not None and all(
            name in files and files[name][0] == ino and files[name][1] >= size
            for name, (ino, size) in self._files.items()
        )
        if not grown:
            self.index = ElectrodeIndex()
        assert self.index is not None
        self.index.update(list(files))
        self._files = files
        return self.index


def parse_pins(text: str) -> list[int]:
    """`12, 13 40-42` -> [12, 13, 40, 41, 42]; ValueError saying what is accepted."""
    pins: list[int] = []
    for part in text.replace(",", " ").split():
        lo, sep, hi = part.partition("-")
        try:
            a = int(lo)
            b = int(hi) if sep else a
        except ValueError:
            raise ValueError(f"pin {part!r} not understood: give pin numbers like 12, 13 or 40-42") from None
        if not (0 <= a <= b <= MAX_PIN) or b - a > 256:
            raise ValueError(f"pins {part!r} out of range (0-{MAX_PIN}, at most 256 in one range)")
        pins.extend(range(a, b + 1))
    if not pins:
        raise ValueError("no pin given: give pin numbers like 12, 13 or 40-42")
    return sorted(set(pins))
