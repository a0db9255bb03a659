"""Sensor time series from the telemetry logs, small enough to plot a whole night.

`read_sensor_series(paths, since, until, max_points)` reads `telemetry-*.bin`
logs (upstream format) and returns one `Series` per quantity a lab plots:
- `temperature[i]` (°C) from `temperature_control.temperatures`,
- `hv` (V) from `hv_regulator.voltage`,
- `capacitance[i]` (pF) from `group_capacitance.measurements`,
- `driven electrodes` (count) from `electrode_state` (drive groups, or the
  legacy `electrodes` list; pdserver sends it without a timestamp, so it
  takes the time of the last decoded record before it).

Only those kinds are decoded (the others are skipped by their first byte),
the logs are mapped, not read (a night's log is never copied into memory), and each
series is reduced to at most `max_points` points by keeping the minimum and
the maximum of each time bin, so a spike survives the reduction. Records
without a usable timestamp, undecodable records and non-finite values are
skipped and counted in `SensorData.skipped`; a damaged or truncated file is
read up to the damage and named in `SensorData.problems`. Never raises for
bad content.
"""

from __future__ import annotations

import logging
import mmap
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from autorec import events
from autorec.io.boundedread import Problems, open_regular
from autorec.io.logfile import DEFAULT_MAX_RECORD, HEADER
from autorec.proto import PurpleDropEvent

log = logging.getLogger(__name__)

_KINDS = frozenset({"temperature_control", "hv_regulator", "group_capacitance", "electrode_state"})
# The first byte of a record of each kind: the oneof field's tag (wire type 2).
_TAG = {name: (field.number << 3) | 2 for name, field in PurpleDropEvent.DESCRIPTOR.fields_by_name.items()}


@dataclass
class Series:
    """One quantity over time: `times` (epoch s) and `values`, same length, time order."""

    name: str
    group: str  # which plot it belongs to: temperature, voltage, capacitance, electrodes
    unit: str
    times: np.ndarray
    values: np.ndarray


@dataclass
class SensorData:
    series: list[Series] = field(default_factory=list)
    records: int = 0  # telemetry records read
    skipped: int = 0
    problems: list[str] = field(default_factory=Problems)

    def group(self, name: str) -> list[Series]:
        return [s for s in self.series if s.group == name]


def reduce_minmax(times: np.ndarray, values: np.ndarray, max_points: int) -> tuple[np.ndarray, np.ndarray]:
    """At most `max_points` points: the min and max of each of `max_points // 2` equal time bins, in time order."""
    n = len(times)
    if n <= max_points or max_points < 2:
        return times, values
    bins = max_points // 2
    t0, t1 = float(times[0]), float(times[-1])
    if t1 <= t0:
        return times[:max_points], values[:max_points]
    edges = np.searchsorted(times, np.linspace(t0, t1, bins + 1)[1:-1])
    keep: list[int] = []
    for chunk_start, chunk_end in zip(np.concatenate(([0], edges)), np.concatenate((edges, [n]))):
        if chunk_end <= chunk_start:
            continue
        chunk = values[chunk_start:chunk_end]
        lo, hi = int(np.argmin(chunk)) + chunk_start, int(np.argmax(chunk)) + chunk_start
        keep.extend(sorted({lo, hi}))
    idx = np.array(keep, dtype=np.int64)
    return times[idx], values[idx]


def _driven(state) -> int:
    # list.count in C: summing 128 protobuf bools in Python cost 40 µs a state (measured)
    if len(state.drive_groups):
        return sum(list(g.electrodes).count(True) for g in state.drive_groups)
    return list(state.electrodes).count(True)


def _records(path: str | os.PathLike[str], data: SensorData, wanted: set[int]) -> Iterator[bytes]:
    """The payloads of the records whose first byte is in `wanted`, through mmap; `data.records` counts all.

    Only wanted payloads are copied out. Stops at a cut-off record or an absurd length prefix, as
    `LogReader` does, and names it in `data.problems`.
    """
    with open_regular(path) as f:  # a FIFO planted under a day's name is a problem, never a hang
        size = os.fstat(f.fileno()).st_size
        if size == 0:
            return
        with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mm:
            offset = 0
            unpack = HEADER.unpack_from
            while offset + 4 <= size:
                (length,) = unpack(mm, offset)
                if length > DEFAULT_MAX_RECORD:
                    data.problems.append(
                        f"{path}: corrupt at offset {offset} (record length {length}); read up to there"
                    )
                    return
                end = offset + 4 + length
                if end > size:
                    break
                data.records += 1
                if length and mm[offset + 4] in wanted:
                    yield mm[offset + 4 : end]
                offset = end
            if offset != size:
                data.problems.append(f"{path}: ends in a cut-off record at offset {offset}")


MAX_COLUMNS = 64  # values of one record plotted as separate lines (temperatures, capacitance groups)

_SERIES = (
    ("temperature_control", "temperature", "temperature", "°C"),
    ("hv_regulator", "hv", "voltage", "V"),
    ("group_capacitance", "capacitance", "capacitance", "pF"),
    ("electrode_state", "driven electrodes", "electrodes", "pins"),
)


def _add(data: SensorData, name: str, group: str, unit: str, times: np.ndarray, values: np.ndarray, n: int) -> None:
    finite = np.isfinite(values)
    data.skipped += int((~finite).sum())
    times, values = times[finite], values[finite]
    if not len(times):
        return
    order = np.argsort(times, kind="stable")
    times, values = reduce_minmax(times[order], values[order], n)
    data.series.append(Series(name, group, unit, times, values))


def read_sensor_series(
    paths: Iterable[str | os.PathLike[str]],
    since: float | None = None,
    until: float | None = None,
    max_points: int = 4000,
) -> SensorData:
    """Read telemetry logs into plot-sized series. See the module docstring."""
    data = SensorData()

    # Per kind: times and rows of values (a group count can change mid-night: rows may differ in length).
    rows: dict[str, tuple[list[float], list[Any]]] = {k: ([], []) for k in _KINDS}
    wanted = {_TAG[k] for k in _KINDS}
    decode = PurpleDropEvent.FromString
    last_time: float | None = None
    for path in sorted(paths, key=os.fspath):
        try:
            for payload in _records(path, data, wanted):
                try:
                    event = decode(payload)
                except Exception:  # protobuf's DecodeError, or a value error from a damaged field
                    data.skipped += 1
                    continue
                kind = event.WhichOneof("msg")
                inner = getattr(event, kind)
                t = None
                if kind != "electrode_state" or inner.HasField("timestamp"):
                    t = events.timestamp(event)
                if t is None:
                    # pdserver's electrode_state carries no timestamp: it happened at the last known time
                    t = last_time
                    if t is None:
                        data.skipped += 1
                        continue
                last_time = t
                if (since is not None and t < since) or (until is not None and t > until):
                    continue
                ts, vs = rows[kind]
                ts.append(t)
                if kind == "temperature_control":
                    vs.append(list(inner.temperatures))
                elif kind == "hv_regulator":
                    vs.append(inner.voltage)
                elif kind == "group_capacitance":
                    vs.append(list(inner.measurements))
                else:
                    vs.append(_driven(inner))
        except (OSError, ValueError) as exc:  # ValueError: mmap of an unmappable file
            data.problems.append(f"{path}: cannot read: {getattr(exc, 'strerror', None) or exc}")
            continue
    for kind, name, group, unit in _SERIES:
        ts, vs = rows[kind]
        if not ts:
            continue
        times = np.asarray(ts, dtype=np.float64)
        if kind in ("hv_regulator", "electrode_state"):
            _add(data, name, group, unit, times, np.asarray(vs, dtype=np.float64), max_points)
            continue
        lengths = np.fromiter((len(v) for v in vs), dtype=np.int64, count=len(vs))
        if int(lengths.max()) > MAX_COLUMNS:
            # a damaged or hostile record with thousands of values: a plot of thousands of lines (and a
            # records x values table) would take minutes and gigabytes; the first MAX_COLUMNS are plotted
            wide = int((lengths > MAX_COLUMNS).sum())
            data.problems.append(
                f"telemetry: {wide} {kind} record(s) with more than {MAX_COLUMNS} values; "
                f"the first {MAX_COLUMNS} plotted"
            )
            vs = [v[:MAX_COLUMNS] for v in vs]
            lengths = np.minimum(lengths, MAX_COLUMNS)
        width = int(lengths.max())
        if int(lengths.min()) == width:
            table = np.asarray(vs, dtype=np.float64).reshape(len(vs), width)
        else:  # the number of groups changed: pad the short rows, and leave the padding out below
            table = np.full((len(vs), width), np.nan)
            for i, v in enumerate(vs):
                table[i, : len(v)] = v
        for col in range(width):
            present = lengths > col
            _add(data, f"{name}[{col}]", group, unit, times[present], table[present, col], max_points)
    return data
