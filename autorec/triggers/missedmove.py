"""`missed-move`: a commanded drop move that did not happen.

pdserver broadcasts what the electrodes are told to do (`electrode_state`: the
driven pins) and what the board measures (`scan_capacitance`: the pins a drop
covers). This trigger compares the two:

- **No arrival.** A pin that becomes driven while no drop covers it is an
  *expected arrival* (a drop is being pulled onto it). If no scan shows a drop
  on it within `within` of the drive, the trigger fires. Arrivals are judged
  on scans only: a scan at or after the deadline must say "still not there",
  so a stream whose scans stop (device disconnect) never fires by itself.
  Expectations without any scan for `10 x within` are forgotten and counted
  (`unjudged`).
- **Left the path.** A drop appears on a pin that is not driven while
  electrodes are being driven, confirmed by the next scan: it went somewhere it
  was not sent (slid off the path, half a split ran the wrong way).
- A half-done split (two sides driven, one side never reached) is a no-arrival
  on that side.

Which driven pins count as "next to a drop": when an `electrode_layout` message
has been seen (upstream's board definition: a JSON `{"layout": {"grid": [[pin,
...], ...]}}`, or the grid alone; `null`/negative cells have no electrode), only
pins edge-adjacent to a covered pin are expected arrivals. Without a layout,
every newly driven pin that no drop covers is (pdserver and upstream's
simulator send no layout; controllers drive a pin to pull a drop onto it).

One failure, one firing: a stuck drop makes every later step of its path miss
too. A pin driven while an earlier expected arrival is still pending continues
that one's chain (the controller walking a path); once a chain has fired, its
later misses are counted (`suppressed`), not fired.

Evidence: `what` (`no_arrival` or `left_path`), `pin`, `driven_at`, `waited`,
`drops_on` (pins still covered near the missed one, or the pins the drop left)
and `text`, e.g. "pin 24 driven at 03:12:07.4Z; no drop after 2.0 s; drop still
on pin 22" (UTC).

`watch: camera` is the variant for rigs without capacitance scans: a newly
driven pin expects its electrode's part of the picture to change (a drop
arriving) within `within`; if it has not, the trigger fires (`what`:
`no_change`). It needs the electrode layout (pin -> grid cell) and the
`image_transform` homography (grid -> pixels; cell (col, row) spans grid
coordinates col..col+1, row..row+1, its centre at col+0.5, row+0.5). Until both
are known nothing is expected (counter `no_geometry`). The region is a square
of 0.7 cell around the centre, compared as mean absolute difference of the
grayscale (1/`scale` size) against the frame at the drive: above `change`
levels is a change. At most `detect_fps` frames a second are decoded, and only
while an arrival is pending. A pin driven under a drop that is already there
(holding) looks like a miss: the camera cannot tell it from a stuck drop.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any, ClassVar

from autorec.dates import utc_strftime
from autorec.proto import PurpleDropEvent
from autorec.triggers.base import Firing, FiringResult, Option, StateView, Trigger

# Expectations that no scan has judged for this many `within`s are dropped (scans stopped).
UNJUDGED_FACTOR = 10.0


def clock(t: float) -> str:
    """`t` (epoch seconds) as UTC `HH:MM:SS.dZ` for evidence text."""
    # autorec.dates never raises: a damaged time in the evidence must not become a trigger error
    tenths = int((t % 1) * 10) if t == t and abs(t) != float("inf") else 0
    return utc_strftime(t, "%H:%M:%S") + f".{tenths}Z"


def _pin_list(pins: Any) -> str:
    pins = sorted(pins)
    if not pins:
        return "nowhere on the board"
    word = "pin" if len(pins) == 1 else "pins"
    return f"{word} {', '.join(map(str, pins))}"


def neighbours_from_layout(text: str) -> dict[int, frozenset[int]]:
    """pin -> edge-adjacent pins, from an `electrode_layout.layout` string; ValueError if unreadable.

    Accepts upstream's board definition (`{"layout": {"grid": [[...]]}}`), a
    `{"grid": [[...]]}` mapping or the bare grid (rows of pin numbers, `null`
    or negative where there is no electrode).
    """
    try:
        doc = json.loads(text)
    except (json.JSONDecodeError, TypeError) as exc:
        raise ValueError(f"layout is not JSON: {exc}") from None
    if isinstance(doc, dict):
        doc = doc.get("layout", doc)
    if isinstance(doc, dict):
        doc = doc.get("grid")
    if not isinstance(doc, list) or not all(isinstance(row, list) for row in doc):
        raise ValueError("layout has no grid (expected rows of pin numbers)")

    def pin(r: int, c: int) -> int | None:
        if 0 <= r < len(doc) and 0 <= c < len(doc[r]):
            v = doc[r][c]
            if isinstance(v, int) and not isinstance(v, bool) and v >= 0:
                return v
        return None

    out: dict[int, set[int]] = {}
    for r, row in enumerate(doc):
        for c in range(len(row)):
            p = pin(r, c)
            if p is None:
                continue
            near = out.setdefault(p, set())
            for dr, dc in ((0, 1), (0, -1), (1, 0), (-1, 0)):
                q = pin(r + dr, c + dc)
                if q is not None:
                    near.add(q)
    if not out:
        raise ValueError("layout grid holds no pins")
    return {p: frozenset(n) for p, n in out.items()}


def cells_from_layout(text: str) -> dict[int, tuple[int, int]]:
    """pin -> (col, row) from an `electrode_layout.layout` string (see `neighbours_from_layout`)."""
    doc = json.loads(text)
    if isinstance(doc, dict):
        doc = doc.get("layout", doc)
    if isinstance(doc, dict):
        doc = doc.get("grid")
    cells: dict[int, tuple[int, int]] = {}
    for r, row in enumerate(doc or []):
        for c, v in enumerate(row if isinstance(row, list) else []):
            if isinstance(v, int) and not isinstance(v, bool) and v >= 0:
                cells[v] = (c, r)
    return cells


@dataclass
class _Expected:
    since: float
    near: frozenset[int]  # covered pins next to it when it was driven (all covered pins without a layout)
    chain: int  # expectations driven while an earlier one was pending share its chain


class MissedMoveTrigger(Trigger):
    name: ClassVar[str] = "missed-move"
    description: ClassVar[str] = (
        "a driven electrode next to a drop got no drop within `within`, or a drop left the path"
    )
    options: ClassVar[tuple[Option, ...]] = (
        Option("within", "duration", default=2.0, min=0.05, max=600.0, help="a drop must arrive this soon"),
        Option("left_path", "bool", default=True, help="also fire when a drop turns up on a pin not driven"),
        Option(
            "watch",
            "str",
            default="capacitance",
            choices=("capacitance", "camera"),
            help="capacitance scans, or the camera picture (rigs without scans; needs the electrode layout)",
        ),
        Option("change", "float", default=12.0, min=1.0, max=255.0, help="camera: mean grey-level change of arrival"),
        Option("detect_fps", "float", default=5.0, min=0.1, max=100.0, help="camera: frames decoded a second"),
        Option("scale", "int", default=2, choices=(1, 2, 4, 8), help="camera: analyse at 1/scale of the frame size"),
    )
    kinds: ClassVar[frozenset[str] | None] = frozenset(
        {"electrode_state", "scan_capacitance", "electrode_layout", "image", "image_transform"}
    )

    def __init__(self, rule: str, **options: Any) -> None:
        super().__init__(rule, **options)
        self._neighbours: dict[int, frozenset[int]] | None = None
        self._driven: frozenset[int] = frozenset()
        self._driven_since: float | None = None  # when the current non-empty drive began
        self._covered: frozenset[int] | None = None
        self._expect: dict[int, _Expected] = {}
        self._offpath: dict[int, tuple[float, frozenset[int]]] = {}  # pin -> (first seen, pins lost then)
        self._chains = 0
        self._fired_chains: set[int] = set()
        self.counters: dict[str, int] = {
            "expected": 0,
            "arrived": 0,
            "missed": 0,
            "suppressed": 0,
            "unjudged": 0,
            "layout_errors": 0,
        }
        self._camera = _CameraWatch(self) if self.watch == "camera" else None
        if self._camera is not None:
            self.counters.update(no_geometry=0, corrupt_frames=0)
            self.kinds = frozenset({"electrode_state", "electrode_layout", "image", "image_transform"})
        else:  # the engine asks the instance: scans mode never sees camera frames
            self.kinds = frozenset({"electrode_state", "scan_capacitance", "electrode_layout"})

    def feed(self, time: float, event: PurpleDropEvent, state: StateView) -> FiringResult:
        kind = event.WhichOneof("msg")
        if kind == "electrode_layout":
            try:
                self._neighbours = neighbours_from_layout(event.electrode_layout.layout)
                if self._camera is not None:
                    self._camera.cells = cells_from_layout(event.electrode_layout.layout)
            except ValueError:
                self.counters["layout_errors"] += 1  # keep the previous layout (or none)
            return None
        if self._camera is not None:
            if kind == "electrode_state":
                self._camera.drive(time, state.driven_pins)
            elif kind == "image_transform":
                self._camera.transform = list(event.image_transform.transform)
            elif kind == "image":
                return self._camera.frame(time, event.image.image_data)
            return None
        if kind == "electrode_state":
            self._on_drive(time, state.driven_pins)
            return None
        if kind == "scan_capacitance":
            return self._on_scan(time, state.covered_pins)
        return None

    # -- internals -------------------------------------------------------------------------

    def _on_drive(self, time: float, driven: frozenset[int]) -> None:
        new = driven - self._driven
        if driven and not self._driven:
            self._driven_since = time
        self._driven = driven
        covered = self._covered
        if covered is None or not new:
            return  # before the first scan nothing is known about where the drops are
        earlier = [e for e in self._expect.values() if e.since < time]
        chain = min(earlier, key=lambda e: e.since).chain if earlier else self._chains + 1
        self._chains = max(self._chains, chain)
        for pin in sorted(new):
            if pin in covered or pin in self._expect:
                continue  # holding a drop in place, or already waiting for one
            if self._neighbours is not None:
                near = self._neighbours.get(pin, frozenset()) & covered
                if not near:
                    continue  # no drop next to it: nothing should move
            else:
                near = covered - driven
            self._expect[pin] = _Expected(time, near, chain)
            self.counters["expected"] += 1

    def _on_scan(self, time: float, covered: frozenset[int]) -> FiringResult:
        previous, self._covered = self._covered, covered
        firings: list[Firing] = []
        missed: list[tuple[int, _Expected]] = []
        for pin, exp in list(self._expect.items()):
            if pin in covered:
                del self._expect[pin]
                self.counters["arrived"] += 1
            elif time < exp.since:  # the clock went back: count from now
                exp.since = time
            elif time - exp.since >= self.within - 1e-9:
                del self._expect[pin]
                missed.append((pin, exp))
        if missed:
            self.counters["missed"] += len(missed)
            fresh = [(p, e) for p, e in missed if e.chain not in self._fired_chains]
            if not fresh:
                self.counters["suppressed"] += len(missed)
            else:
                self.counters["suppressed"] += len(missed) - len(fresh)
                pin, exp = fresh[0]
                self._fired_chains.update(e.chain for _, e in fresh)

                still = exp.near & covered if exp.near & covered else covered - self._driven
                text = (
                    f"pin {pin} driven at {clock(exp.since)}; no drop after {time - exp.since:.1f} s; "
                    f"drop still on {_pin_list(still)}"
                )
                firings.append(
                    self.fire(
                        time,
                        what="no_arrival",
                        pin=pin,
                        pins=[p for p, _ in fresh],
                        driven_at=exp.since,
                        waited=round(time - exp.since, 3),
                        drops_on=sorted(still),
                        text=text,
                    )
                )
        if not self._expect:
            self._fired_chains.clear()  # nothing pending can continue an old chain
        if previous is not None and self.left_path:
            firings.extend(self._check_path(time, previous, covered))
        return firings or None

    def _check_path(self, time: float, previous: frozenset[int], covered: frozenset[int]) -> list[Firing]:
        """Drops that turned up on undriven pins while a drive is on, confirmed by a second scan."""
        out: list[Firing] = []
        for pin, (seen, lost) in list(self._offpath.items()):
            if pin not in covered or pin in self._driven:
                del self._offpath[pin]  # gone again (noise) or now driven (the controller followed it)
            elif time > seen:
                del self._offpath[pin]
                since = self._driven_since if self._driven_since is not None else seen
                text = (
                    f"drop on pin {pin} at {clock(seen)}, not driven; driven: {_pin_list(self._driven)} "
                    f"since {clock(since)}; left {_pin_list(lost)}"
                )
                out.append(
                    self.fire(
                        time,
                        what="left_path",
                        pin=pin,
                        driven=sorted(self._driven),
                        driven_at=since,
                        drops_on=sorted(lost),
                        text=text,
                    )
                )
        if self._driven:
            for pin in covered - previous - self._driven:
                if self._neighbours is not None and not (self._neighbours.get(pin, frozenset()) & previous):
                    continue  # not next to where a drop was: a reading elsewhere, not a drop that slid
                self._offpath.setdefault(pin, (time, previous - covered))
        return out

    def tick(self, time: float, state: StateView) -> FiringResult:
        # Only forgets: deciding "no drop arrived" needs a scan (see the module docstring).
        limit = self.within * UNJUDGED_FACTOR
        for pin, exp in list(self._expect.items()):
            if time - exp.since > limit:
                del self._expect[pin]
                self.counters["unjudged"] += 1
        if self._camera is not None:  # frames stopped: nothing to judge with
            for pin, reg in list(self._camera._pending.items()):
                if time - reg.since > limit:
                    del self._camera._pending[pin]
                    self.counters["unjudged"] += 1
        return None


@dataclass
class _Region:
    pin: int
    since: float
    box: tuple[int, int, int, int]  # x0, y0, x1, y1 in analysed (scaled) pixels
    before: Any  # grayscale crop at the drive (numpy int16)
    chain: int


class _CameraWatch:
    """`watch: camera`: expected arrivals judged on the driven electrode's part of the picture."""

    def __init__(self, trigger: MissedMoveTrigger) -> None:
        self.t = trigger
        self.cells: dict[int, tuple[int, int]] = {}
        self.transform: list[float] = []
        self._decoder: Any = None
        self._jpeg: bytes | None = None  # the latest frame, decoded only when needed
        self._gray: Any = None  # (jpeg, pixels) of the last decode
        self._driven: frozenset[int] = frozenset()
        self._pending: dict[int, _Region] = {}
        self._last_analysis: float | None = None
        self._fired_chains: set[int] = set()
        self._chains = 0

    def _pixels(self) -> Any:
        if self._jpeg is None:
            return None
        if self._gray is not None and self._gray[0] is self._jpeg:
            return self._gray[1]
        if self._decoder is None:
            from autorec.frames.graydecode import GrayDecoder  # PyAV: only for camera rules

            self._decoder = GrayDecoder(self.t.scale)
        from autorec.frames.graydecode import FrameDecodeError

        try:
            pixels = self._decoder.decode(self._jpeg).pixels
        except FrameDecodeError:
            self.t.counters["corrupt_frames"] += 1
            self._jpeg = None
            return None
        self._gray = (self._jpeg, pixels)
        return pixels

    def _box(self, pin: int, shape: tuple[int, ...]) -> tuple[int, int, int, int] | None:
        cell = self.cells.get(pin)
        if cell is None or len(self.transform) != 9:
            return None
        h = self.transform
        scale = self.t.scale

        def px(x: float, y: float) -> tuple[float, float]:
            w = h[6] * x + h[7] * y + h[8]
            return (h[0] * x + h[1] * y + h[2]) / w / scale, (h[3] * x + h[4] * y + h[5]) / w / scale

        c, r = cell
        try:
            cx, cy = px(c + 0.5, r + 0.5)
            ex, ey = px(c + 1.5, r + 0.5)
        except ZeroDivisionError:
            return None
        half = max(1, int(0.35 * math.hypot(ex - cx, ey - cy)))
        x0, y0 = max(0, int(cx) - half), max(0, int(cy) - half)
        x1, y1 = min(shape[1], int(cx) + half + 1), min(shape[0], int(cy) + half + 1)
        if x1 - x0 < 2 or y1 - y0 < 2:
            return None
        return x0, y0, x1, y1

    def drive(self, time: float, driven: frozenset[int]) -> None:
        new = driven - self._driven
        self._driven = driven
        if not new:
            return
        pixels = self._pixels()
        earlier = [e for e in self._pending.values() if e.since < time]
        chain = min(earlier, key=lambda e: e.since).chain if earlier else self._chains + 1
        self._chains = max(self._chains, chain)
        for pin in sorted(new):
            if pin in self._pending:
                continue
            box = self._box(pin, pixels.shape) if pixels is not None else None
            if box is None:
                self.t.counters["no_geometry"] += 1
                continue
            x0, y0, x1, y1 = box
            crop = pixels[y0:y1, x0:x1].astype("int16")
            self._pending[pin] = _Region(pin, time, box, crop, chain)
            self.t.counters["expected"] += 1

    def frame(self, time: float, jpeg: bytes) -> FiringResult:
        self._jpeg = jpeg
        if not self._pending:
            self._fired_chains.clear()
            return None
        last = self._last_analysis
        if last is not None and last <= time < last + 1.0 / self.t.detect_fps - 1e-9:
            return None
        self._last_analysis = time
        pixels = self._pixels()
        if pixels is None:
            return None
        firings: list[Firing] = []
        for pin, reg in list(self._pending.items()):
            x0, y0, x1, y1 = reg.box
            now = pixels[y0:y1, x0:x1].astype("int16")
            if now.shape != reg.before.shape:
                del self._pending[pin]  # the frame size changed: nothing to compare with
                self.t.counters["unjudged"] += 1
                continue
            diff = float(abs(now - reg.before).mean())
            if diff > self.t.change:
                del self._pending[pin]
                self.t.counters["arrived"] += 1
            elif time < reg.since:
                reg.since = time
            elif time - reg.since >= self.t.within - 1e-9:
                del self._pending[pin]
                self.t.counters["missed"] += 1
                if reg.chain in self._fired_chains:
                    self.t.counters["suppressed"] += 1
                    continue
                self._fired_chains.add(reg.chain)
                scale = self.t.scale
                region = [x0 * scale, y0 * scale, (x1 - x0) * scale, (y1 - y0) * scale]
                text = (
                    f"pin {pin} driven at {clock(reg.since)}; its part of the picture did not change "
                    f"in {time - reg.since:.1f} s (change {diff:.1f} of {self.t.change:g} levels)"
                )
                firings.append(
                    self.t.fire(
                        time,
                        what="no_change",
                        pin=pin,
                        driven_at=reg.since,
                        waited=round(time - reg.since, 3),
                        region=region,
                        change=round(diff, 2),
                        text=text,
                    )
                )
        return firings or None
