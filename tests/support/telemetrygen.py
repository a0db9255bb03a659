"""A generated telemetry log of any length, fast: a night's worth of records in seconds.

`write_telemetry(path, start, hours)` writes what the recorder's telemetry track
holds for a quiet protocol: scans at 4 Hz (128 pins, noise on the capacitance,
one drop), temperature at 1 Hz, HV at 0.4 Hz, group capacitance at 2 Hz, and
every `step_every` seconds a protocol step that drives the drop one pin further
along a path (electrode_state without a timestamp, as pdserver sends it). Messages
are built from pre-serialised parts (only the timestamp changes), so 12 hours
(~320 000 records) take about a second. `layout`: an `electrode_layout` record first (8 x 16 pins).
Returns the steps: `[(time, pin driven)]`; each pin is driven for 2 s.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

from autorec import events
from autorec.io.logfile import LogWriter
from autorec.proto.purpledrop_pb2 import Timestamp
from tests.support import eventbuilder as build

PINS = build.PINS


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _wrap(field: int, body: bytes) -> bytes:
    return bytes([(field << 3) | 2]) + _varint(len(body)) + body


def _ts(t: float) -> bytes:
    ts = Timestamp(seconds=int(t), nanos=int((t - int(t)) * 1e9))
    return _wrap(1, ts.SerializeToString())


def _scan_variants(pin: int, rng: random.Random, n: int = 8) -> list[bytes]:
    """Serialised `measurements` fields of scans with the drop on `pin` (a few noise variants)."""
    raw = [1000.0 if p == pin else 10.0 for p in range(PINS)]
    out = []
    for _ in range(n):
        caps = [(210.0 if p == pin else 2.0) + rng.gauss(0, 1.0) for p in range(PINS)]
        out.append(build.scan_pins(None, caps, raw).scan_capacitance.SerializeToString())
    return out


def write_telemetry(
    path: Path, start: float, hours: float, step_every: float = 600.0, seed: int = 1, layout: bool = False
) -> list[tuple[float, int]]:
    rng = random.Random(seed)
    kinds = events.NUMBER_BY_KIND
    temp_body = build.temperature(None, [37.0]).temperature_control.SerializeToString()
    hv_body = build.hv(None, 200.0).hv_regulator.SerializeToString()
    grp_body = build.group_capacitance(None, [1.0, 2.0]).group_capacitance.SerializeToString()
    path_pins = [10, 11, 12, 13, 14, 30, 31, 32, 50, 51]
    pin_i = 0
    scans = {path_pins[0]: _scan_variants(path_pins[0], rng)}
    steps: list[tuple[float, int]] = []
    end = start + hours * 3600.0
    next_step = start + step_every / 2
    release_at: float | None = None
    tick = 0.25
    t = start
    k = 0
    with LogWriter(path, mode="new") as w:
        if layout:  # upstream's board JSON: 8 rows of 16 pins
            grid = [list(range(r * 16, r * 16 + 16)) for r in range(8)]
            w.write(build.electrode_layout(None, json.dumps({"layout": {"grid": grid}})).SerializeToString())
        while t < end:
            if t >= next_step:  # a protocol step: drive the next pin of the path for 2 s (timeless, as pdserver)
                pin_i = (pin_i + 1) % len(path_pins)
                pin = path_pins[pin_i]
                w.write(_electrode_state({pin}))
                steps.append((t, pin))
                release_at = t + 2.0
                next_step += step_every
                if pin not in scans:
                    scans[pin] = _scan_variants(pin, rng)
            elif release_at is not None and t >= release_at:
                w.write(_electrode_state(set()))
                release_at = None
            ts = _ts(t)
            w.write(_wrap(kinds["scan_capacitance"], ts + scans[path_pins[pin_i]][k % 8]))
            if k % 2 == 0:
                w.write(_wrap(kinds["group_capacitance"], ts + grp_body))
            if k % 4 == 0:
                w.write(_wrap(kinds["temperature_control"], ts + temp_body))
            if k % 10 == 0:
                w.write(_wrap(kinds["hv_regulator"], hv_body + _wrap(3, Timestamp(seconds=int(t)).SerializeToString())))
            k += 1
            t = start + k * tick
    return steps


def _electrode_state(pins: set[int]) -> bytes:
    return build.drive_group(p in pins for p in range(PINS)).SerializeToString()
