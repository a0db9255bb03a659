"""Helpers for the rule-file, trigger and engine tests: write rule files, build events, feed logs."""

from __future__ import annotations

import textwrap
from collections.abc import Iterable, Iterator
from pathlib import Path

from autorec import events
from autorec.io.logfile import LogReader
from autorec.proto import PurpleDropEvent


def write_rules(tmp_path: Path, text: str, name: str = "rules.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text).lstrip("\n"))
    return path


def electrode_state(drive: Iterable[int] = (), scan: Iterable[int] = (), legacy: Iterable[int] | None = None):
    """An electrode_state shaped like pdserver's: 2 drive + 5 scan groups of 128 bools, no timestamp."""
    ev = PurpleDropEvent()
    es = ev.electrode_state
    drive, scan = set(drive), set(scan)
    if legacy is not None:
        legacy = set(legacy)
        es.electrodes.extend(i in legacy for i in range(128))
        return ev
    for g in range(2):
        group = es.drive_groups.add()
        group.electrodes.extend((i in drive) if g == 0 else False for i in range(128))
        group.setting = 255
    for g in range(5):
        group = es.scan_groups.add()
        group.electrodes.extend((i in scan) if g == 0 else False for i in range(128))
    return ev


def scan(t: float, caps: dict[int, float], base: float = 0.0, present: Iterable[int] = (), noise=None):
    """A scan_capacitance with 128 pins at `base` (plus optional noise(pin)), `caps` overriding pins."""
    ev = PurpleDropEvent()
    sc = ev.scan_capacitance
    present = set(present)
    for pin in range(128):
        m = sc.measurements.add()
        value = caps.get(pin, base + (noise(pin) if noise else 0.0))
        m.capacitance = value
        m.raw = 1000.0 if pin in caps else 0.0
        m.drop_present = pin in present
    events.set_timestamp(ev, t)
    return ev


def message(kind: str, t: float | None = None, **fields) -> PurpleDropEvent:
    ev = PurpleDropEvent()
    inner = getattr(ev, kind)
    for key, value in fields.items():
        field = getattr(inner, key)
        if isinstance(value, list):
            field.extend(value)
        else:
            setattr(inner, key, value)
    if kind == "device_info":
        inner.SetInParent()
    if t is not None:
        events.set_timestamp(ev, t)
    return ev


def timed(path: Path) -> Iterator[tuple[float, PurpleDropEvent]]:
    """(time, event) for every event of a log, carrying the last timestamp forward."""
    last = None
    for _record, ev in LogReader(path).events():
        ts = events.timestamp(ev)
        if ts is not None:
            last = ts
        if last is None:
            continue
        yield last, ev
