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
records are streamed (a night's log is never held in memory), and each
series is reduced to at most `max_points` points by keeping the minimum and
the maximum of each time bin, so a spike survives the reduction. Records
without a usable timestamp, undecodable records and non-finite values are
skipped and counted in `SensorData.skipped`; a damaged or truncated file is
read up to the damage and named in `SensorData.problems`. Never raises for
bad content.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np

from autorec import events
from autorec.logfile import LogReader

log = logging.getLogger(__name__)

_KINDS = frozenset({"temperature_control", "hv_regulator", "group_capacitance", "electrode_state"})


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
    problems: list[str] = field(default_factory=list)

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
    if len(state.drive_groups):
        return sum(sum(1 for on in g.electrodes if on) for g in state.drive_groups)
    return sum(1 for on in state.electrodes if on)


def read_sensor_series(
    paths: Iterable[str | os.PathLike[str]],
    since: float | None = None,
    until: float | None = None,
    max_points: int = 4000,
) -> SensorData:
    """Read telemetry logs into plot-sized series. See the module docstring."""
    data = SensorData()
    raw: dict[tuple[str, str, str], tuple[list[float], list[float]]] = {}

    def add(name: str, group: str, unit: str, t: float, v: float) -> None:
        if not math.isfinite(v):
            data.skipped += 1
            return
        ts, vs = raw.setdefault((name, group, unit), ([], []))
        ts.append(t)
        vs.append(v)

    last_time: float | None = None
    for path in sorted(paths, key=os.fspath):
        reader = LogReader(path)
        try:
            for record in reader.records():
                data.records += 1
                kind = events.peek_kind(record.payload)
                if kind not in _KINDS:
                    continue
                try:
                    event = events.decode(record.payload)
                except events.DecodeError:
                    data.skipped += 1
                    continue
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
                if kind == "temperature_control":
                    for i, v in enumerate(event.temperature_control.temperatures):
                        add(f"temperature[{i}]", "temperature", "°C", t, v)
                elif kind == "hv_regulator":
                    add("hv", "voltage", "V", t, event.hv_regulator.voltage)
                elif kind == "group_capacitance":
                    for i, v in enumerate(event.group_capacitance.measurements):
                        add(f"capacitance[{i}]", "capacitance", "pF", t, v)
                else:
                    add("driven electrodes", "electrodes", "pins", t, float(_driven(event.electrode_state)))
        except OSError as exc:
            data.problems.append(f"{path}: cannot read: {exc.strerror or exc}")
            continue
        if reader.corrupt is not None:
            data.problems.append(
                f"{path}: corrupt at offset {reader.corrupt.offset} ({reader.corrupt.reason}); read up to there"
            )
        elif reader.truncated is not None:
            data.problems.append(f"{path}: ends in a cut-off record at offset {reader.truncated.offset}")
    for (name, group, unit), (ts, vs) in sorted(raw.items()):
        times = np.asarray(ts, dtype=np.float64)
        values = np.asarray(vs, dtype=np.float64)
        order = np.argsort(times, kind="stable")
        times, values = reduce_minmax(times[order], values[order], max_points)
        data.series.append(Series(name, group, unit, times, values))
    return data
