"""The simulated rig as a pure, deterministic generator of timed events.

`Simulation(scenario, seed, start_time, ...)` holds a board with drops, a
timeline cursor and a schedule of periodic sources. `advance(until)` returns
every item due up to epoch time `until`, in time order, as `(t, item)` where
item is a `PurpleDropEvent` (already stamped with `t` when its kind carries a
timestamp), a `CameraFrame` (what the camera would see at `t`; the stream
encoder renders it) or a `Fault` (a bad frame or a connection close for the
I/O edge to perform). No sockets, clocks or sleeps: the caller decides how
fast simulated time passes.

Contracts:
- Same scenario, seed, start_time, fps, camera flag and faults -> the same
  items, whatever the sequence of `advance` calls.
- Upstream's quirks are kept: `electrode_state` carries no timestamp, always
  the full state (2 drive + 5 scan groups of 128 pins), and is sent on every
  control step, also unchanged ones (keepalive steps while idle); nothing is
  sent for a new client (the core does not know about clients).
- A drop at rest moves to an edge-adjacent cell when that cell's electrode is
  driven and its own is not; the move takes `scenario.move_time`.
- `truth` records activity windows (first control step of a burst to the
  moment its last drop settled, which is also its last electrode change),
  lighting events, device disconnects, injected faults and `failures`:
  commanded moves that did not happen (a `stuck` fault arms the next one: the
  drop that should move refuses to for `scenario.stuck_for` seconds).
- A resting drop with driven free cells on two opposite sides (and its own
  electrode off) splits into two drops, one on each side (`split` steps).
- Commands from outside (pdserver's JSON-RPC, `autorec.sim.rpc`): `drive(t, pins, group)`
  sets one drive group at `t` (not before the last item handed out) as `set_electrode_pins`
  does: it sends the full `electrode_state` and the physics above moves the drops; the
  timeline's own control steps set group 0 too (the last command wins). A commanded move is
  an activity window in `truth` ("commanded: ..."). `board_definition()` and
  `scan_capacitance(t)` answer as pdserver's methods of those names.
"""

from __future__ import annotations

import heapq
import json
import math
import random
from collections.abc import Callable
from dataclasses import dataclass, field

from autorec import events
from autorec.proto import PurpleDropEvent
from autorec.sim.board import PIN_COUNT, Cell
from autorec.sim.scenario import Scenario, Step

DRIVE_SETTING = 255  # what pdserver reports for its two drive groups
SCAN_GROUPS = 5
GROUP_PF_PER_DROP = 32.8  # group_capacitance of one drop on a group's electrodes (upstream's simulator: 32.76)
GROUP_NOISE_PF = 0.3
SERIAL_NUMBER = "SIM-0001"
FIRMWARE_VERSION = "autorec-sim 0.1"
# Camera positions and brightness are quantized so that repeated pictures are
# identical and the renderer's cache can reuse their JPEG encoding.
POSITION_STEP = 1 / 8
GAIN_STEP = 1 / 100


@dataclass(frozen=True, slots=True)
class CameraFrame:
    """What the camera sees: drops as (col, row, radius) in grid cells, and lighting (gain x, offset +)."""

    drops: tuple[tuple[float, float, float], ...]
    gain: float
    offset: float
    spot: tuple[float, float, float, float, float] | None = None  # (gain, x, y, w, h): a blinking region


@dataclass(frozen=True, slots=True)
class Fault:
    """A fault for the I/O edge: `close` all connections, or send a `garbage`/`text`/`truncated`/`oversized` frame."""

    kind: str


Item = PurpleDropEvent | CameraFrame | Fault


@dataclass
class Drop:
    cell: Cell
    src: Cell | None = None  # set while moving from src to cell
    t0: float = 0.0
    t1: float = 0.0
    nudge: float = 0.0  # a shift along the columns the camera sees, covering no other cell (a `nudge`)
    stuck_until: float = 0.0  # refuses to move before this time (a `stuck` fault)

    def fraction(self, t: float) -> float:
        """How far along its current move (1.0 when at rest)."""
        if self.src is None or t >= self.t1:
            return 1.0
        return max(0.0, (t - self.t0) / (self.t1 - self.t0))

    def at_rest(self, t: float) -> bool:
        return self.src is None or t >= self.t1

    def covered(self, t: float) -> tuple[Cell, ...]:
        """Cells the drop covers at `t` (both cells around the middle of a move)."""
        f = self.fraction(t)
        if f >= 1.0 or self.src is None:
            return (self.cell,)
        if f < 0.25:
            return (self.src,)
        if f > 0.75:
            return (self.cell,)
        return (self.src, self.cell)

    def position(self, t: float) -> tuple[float, float]:
        f = self.fraction(t)
        if f >= 1.0 or self.src is None:
            return float(self.cell[0]) + self.nudge, float(self.cell[1])
        f = 0.5 - 0.5 * math.cos(math.pi * f)  # drops accelerate and brake
        f = round(f / POSITION_STEP) * POSITION_STEP
        (c0, r0), (c1, r1) = self.src, self.cell
        return c0 + (c1 - c0) * f, r0 + (r1 - r0) * f


@dataclass
class Truth:
    """Ground truth of what the simulation did, in epoch seconds of simulated time."""

    activity: list[dict] = field(default_factory=list)
    lighting: list[dict] = field(default_factory=list)
    disconnects: list[dict] = field(default_factory=list)
    temperature: list[dict] = field(default_factory=list)
    faults: list[dict] = field(default_factory=list)
    # Deliberately sub-threshold changes in the picture (`nudge`): a good motion rule does not fire
    # on them, and lists them as near-misses.
    subtle: list[dict] = field(default_factory=list)
    failures: list[dict] = field(default_factory=list)

    def as_dict(self, until: float | None = None) -> dict[str, list[dict]]:
        """Entries that started by `until` (all when None); windows still running end at `until`."""

        def cut(entries: list[dict]) -> list[dict]:
            out = []
            for e in entries:
                start = e.get("start", e.get("t"))
                if until is not None and start > until:
                    continue
                e = dict(e)
                if until is not None and "end" in e and e["end"] > until:
                    e["end"] = until
                    e["cut"] = True
                out.append(e)
            return out

        return {
            "activity": cut(self.activity),
            "lighting": cut(self.lighting),
            "disconnects": cut(self.disconnects),
            "temperature": cut(self.temperature),
            "faults": cut(self.faults),
            "subtle": cut(self.subtle),
            "failures": cut(self.failures),
        }


class Simulation:
    """See the module docstring."""

    def __init__(
        self,
        scenario: Scenario,
        seed: int = 0,
        start_time: float = 0.0,
        duration: float | None = None,
        fps: float = 10.0,
        camera: bool = True,
        faults: dict[str, float] | None = None,
    ):
        self.scenario = scenario
        self.board = scenario.board
        self.start_time = start_time
        self.end_time = None if duration is None else start_time + duration
        self.now = start_time
        # Separate random streams so that e.g. turning the camera off does not change the drop moves.
        self._plan_rng = random.Random(f"{seed}:plan")
        self._noise_rng = random.Random(f"{seed}:noise")
        self._jitter_rng = random.Random(f"{seed}:jitter")
        self.drops = [Drop(cell) for cell in scenario.drops]
        self.driven: frozenset[int] = frozenset()  # pins of both drive groups
        self.groups: tuple[frozenset[int], frozenset[int]] = (frozenset(), frozenset())  # drive groups A and B
        self.connected = True
        self.truth = Truth()
        self._heap: list[tuple[float, int, Callable[[float], None]]] = []
        self._seq = 0
        self._out: list[tuple[float, Item]] = []
        self._state_events: dict[frozenset[int], PurpleDropEvent] = {}
        self._burst: dict | None = None
        # lighting: base gain (steps) times an optional flicker (start, end, amplitude, period)
        self._gain = 1.0
        self._flicker: tuple[float, float, float, float] | None = None
        # a flickering region: (start, end, amplitude, period, (x, y, w, h) as fractions of the picture)
        self._spot: tuple[float, float, float, float, tuple[float, ...]] | None = None
        # temperature ramp: (t0, v0, t1, v1)
        self._temp = (start_time, scenario.temperature, start_time, scenario.temperature)
        self._entry_index = 0
        self._moves_started = 0
        self._stuck_armed = False

        for kind, rate in scenario.rates.items():
            if rate > 0:
                self._start_periodic(kind, 1.0 / rate, getattr(self, f"_emit_{kind}"), device=True)
        if scenario.keepalive > 0:
            self._start_periodic("keepalive", scenario.keepalive, self._keepalive, device=True)
        if camera and fps > 0:
            self._start_periodic("camera", 1.0 / fps, self._emit_camera, device=False, jitter=0.1)
        for kind, every in {**scenario.faults, **(faults or {})}.items():
            self._schedule(start_time + every, self._periodic_fault(kind, every))
        if scenario.layout:
            self._schedule(start_time, self._emit_layout)
        if scenario.timeline:
            self._schedule(start_time, self._next_entry)

    # -- scheduling -----------------------------------------------------

    def _schedule(self, t: float, fn: Callable[[float], None]) -> None:
        self._seq += 1
        heapq.heappush(self._heap, (t, self._seq, fn))

    def _start_periodic(
        self, name: str, period: float, emit: Callable[[float], None], device: bool, jitter: float = 0.05
    ) -> None:
        """Fire `emit` every `period` on a fixed grid (random phase), each firing jittered by +-jitter*period."""
        phase = self._jitter_rng.random() * period
        n = 0

        def fire(t: float) -> None:
            nonlocal n
            if self.connected or not device:
                emit(t)
            n += 1
            nominal = self.start_time + phase + n * period
            self._schedule(nominal + self._jitter_rng.uniform(-jitter, jitter) * period, fire)

        self._schedule(self.start_time + phase, fire)

    def next_time(self) -> float | None:
        """Time of the next item (or internal step), None when nothing more will happen."""
        if not self._heap:
            return None
        t = self._heap[0][0]
        return None if self.end_time is not None and t > self.end_time else t

    @property
    def finished(self) -> bool:
        return self.next_time() is None

    def advance(self, until: float) -> list[tuple[float, Item]]:
        """All items due at or before `until` (epoch seconds, capped at the end of the run), in order."""
        if self.end_time is not None:
            until = min(until, self.end_time)
        heap = self._heap
        while heap and heap[0][0] <= until:
            t, _, fn = heapq.heappop(heap)
            self.now = t
            fn(t)
        self.now = max(self.now, until)
        out, self._out = self._out, []
        return out

    def _emit(self, t: float, item: Item) -> None:
        self._out.append((t, item))

    def _event(self, t: float, kind: str) -> tuple[PurpleDropEvent, object]:
        ev = PurpleDropEvent()
        inner = getattr(ev, kind)
        inner.timestamp.SetInParent()  # selects the oneof field, so set_timestamp sees the kind
        events.set_timestamp(ev, t)
        return ev, inner

    # -- physics ----------------------------------------------------------

    def _apply_drive(self, t: float) -> None:
        """Start moves of resting drops that a driven neighbour pulls (own electrode not driven).

        Two driven free cells on opposite sides split the drop; a stuck drop stays put.
        """
        pins = self.board.pins
        for index, drop in enumerate(list(self.drops)):
            if not drop.at_rest(t) or pins[drop.cell] in self.driven:
                continue
            pulls = [
                n
                for n in self.board.neighbours(drop.cell)
                if pins[n] in self.driven and not any(d.cell == n for d in self.drops)
            ]
            if not pulls or t < drop.stuck_until:
                continue
            if self._stuck_armed:
                self._stuck_armed = False
                drop.stuck_until = t + self.scenario.stuck_for
                self.truth.failures.append(
                    {
                        "t": t,
                        "pins": sorted(pins[n] for n in pulls),
                        "what": f"drop {index} stuck on pin {pins[drop.cell]} for {self.scenario.stuck_for:g}s; "
                        f"pin(s) {', '.join(str(pins[n]) for n in pulls)} driven",
                    }
                )
                continue
            c, r = drop.cell
            opposite = [(a, b) for a in pulls for b in pulls if (a[0] + b[0], a[1] + b[1]) == (2 * c, 2 * r) and a < b]
            src, end = drop.cell, t + self.scenario.move_time
            drop.src, drop.cell, drop.t0, drop.t1 = src, (opposite[0][0] if opposite else pulls[0]), t, end
            if opposite:
                self.drops.append(Drop(opposite[0][1], src, t, end))
            self._moves_started += 1
            self._schedule(end, self._settle)

    def _settle(self, t: float) -> None:
        # A drop arriving next to a still-driven electrode keeps going.
        self._apply_drive(t)

    def _control_step(self, t: float, driven: frozenset[int], group: int = 0) -> None:
        groups = list(self.groups)
        groups[group] = driven
        self.groups = (groups[0], groups[1])
        self.driven = groups[0] | groups[1]
        self._emit(t, self._electrode_state(*self.groups))
        self._apply_drive(t)

    def _electrode_state(self, driven: frozenset[int], driven_b: frozenset[int] = frozenset()) -> PurpleDropEvent:
        key = (driven, driven_b)
        ev = self._state_events.get(key)
        if ev is None:
            ev = PurpleDropEvent()
            st = ev.electrode_state
            for pins in (driven, driven_b):
                g = st.drive_groups.add()
                g.electrodes.extend(p in pins for p in range(PIN_COUNT))
                g.setting = DRIVE_SETTING
            scan = set(self.board.scan_pins)
            for i in range(SCAN_GROUPS):
                g = st.scan_groups.add()
                g.electrodes.extend((i == 0 and p in scan) for p in range(PIN_COUNT))
                g.setting = 0
            if len(self._state_events) < 4096:
                self._state_events[key] = ev
        return ev

    def _keepalive(self, t: float) -> None:
        # pdserver sends the full state on every control call, also when nothing changed.
        self._emit(t, self._electrode_state(*self.groups))

    # -- commands (pdserver's JSON-RPC methods; see autorec.sim.rpc) --------------

    def drive(self, t: float, pins: frozenset[int], group: int = 0) -> int:
        """`set_electrode_pins(pins, group)` at `t`: drive exactly `pins` in drive group `group` (0 or 1).

        Returns how many drop moves it started; those are an activity window in `truth`. `t` is
        raised to the simulation's current time (a command cannot act in the past)."""
        if group not in (0, 1):
            raise ValueError(f"group_id must be 0 or 1, got {group}")
        bad = [p for p in pins if not 0 <= p < PIN_COUNT]
        if bad:
            raise ValueError(f"pin {bad[0]} is invalid: must be 0-{PIN_COUNT - 1}")
        t = max(t, self.now)
        before = self._moves_started
        self._control_step(t, frozenset(pins), group)
        moves = self._moves_started - before
        if moves:
            end = t + self.scenario.move_time
            self.truth.activity.append(
                {"start": t, "end": end, "what": f"commanded: pins {sorted(pins)} driven, {moves} drop move(s)"}
            )
        return moves

    def board_definition(self) -> dict:
        """The board as pdserver's `get_board_definition` returns it: one grid, rows of pins."""
        board = self.board
        rows = [[board.pin_at((c, r)) for c in range(board.cols)] for r in range(board.rows)]
        return {
            "layout": {"grids": [{"origin": [0, 0], "pitch": 1, "pins": rows}], "peripherals": []},
            "oversized_electrodes": [],
        }

    def scan_capacitance(self, t: float) -> dict[str, list[float]]:
        """`get_scan_capacitance`: raw ~1000 where a drop covers a pin, 0 elsewhere (as upstream's simulator)."""
        covered = self.covered_pins(max(t, self.now))
        raw = [1000.0 if p in covered else 0.0 for p in range(PIN_COUNT)]
        calibrated = [210.0 if p in covered else 0.0 for p in range(PIN_COUNT)]
        return {"raw": raw, "calibrated": calibrated}

    def covered_pins(self, t: float) -> set[int]:
        pins = self.board.pins
        return {pins[c] for d in self.drops for c in d.covered(t)}

    # -- timeline -----------------------------------------------------------

    def _next_entry(self, t: float) -> None:
        tl = self.scenario.timeline
        if self._entry_index >= len(tl):
            if not self.scenario.repeat:
                return
            self._entry_index = 0
        entry = tl[self._entry_index]
        self._entry_index += 1
        took = getattr(self, f"_entry_{entry.kind}")(t, entry)
        self._schedule(t + took, self._next_entry)

    def _entry_idle(self, t: float, e: Step) -> float:
        return e.args["for"]

    def _entry_lighting(self, t: float, e: Step) -> float:
        before, self._gain = self._gain, e.args["gain"]
        self.truth.lighting.append(
            {"start": t, "end": t, "what": f"brightness step x{self._gain / before:.3g} (to {self._gain:.3g})"}
        )
        return 0.0

    def _entry_flicker(self, t: float, e: Step) -> float:
        a = e.args
        if a.get("region") is not None:
            self._spot = (t, t + a["for"], a["amplitude"], a["period"], tuple(a["region"]))
            where = f" in region {list(a['region'])}"
        else:
            self._flicker = (t, t + a["for"], a["amplitude"], a["period"])
            where = ""
        self.truth.lighting.append(
            {
                "start": t,
                "end": t + a["for"],
                "what": f"flicker +-{a['amplitude']:.3g} every {a['period']:.3g}s{where}",
            }
        )
        return a["for"]

    def _entry_temperature(self, t: float, e: Step) -> float:
        now = self.temperature(t)
        self._temp = (t, now, t + e.args["over"], e.args["to"])
        self.truth.temperature.append(
            {"start": t, "end": t + e.args["over"], "what": f"ramp {now:.1f} -> {e.args['to']:.1f} C"}
        )
        return 0.0  # ramps run in the background

    def _entry_disconnect(self, t: float, e: Step) -> float:
        end = t + e.args["for"]
        self.truth.disconnects.append({"start": t, "end": end, "what": "device"})
        self._device_info(t, False)
        self.connected = False

        def reconnect(t2: float) -> None:
            self.connected = True
            self._device_info(t2, True)

        self._schedule(end, reconnect)
        return e.args["for"]

    def _entry_fault(self, t: float, e: Step) -> float:
        self._fault(t, e.args["kind"])
        return 0.0

    def _entry_move(self, t: float, e: Step) -> float:
        pins = [self.board.pin_at(c) for c in e.args["path"]]
        self._run_steps(t, pins, f"drop {e.args['drop']} scripted move of {len(pins)} cell(s)")
        return len(pins) * self.scenario.step

    def _entry_nudge(self, t: float, e: Step) -> float:
        """A drop shifts by a fraction of a cell (it barely moves: no electrode, no pin), then back."""
        a = e.args
        drop = self.drops[a["drop"]]
        end = t + a["for"]

        def shift(t2: float, by: float) -> None:
            drop.nudge = by

        shift(t, a["distance"])
        self._schedule(end, lambda t2: shift(t2, 0.0))
        self.truth.subtle.append(
            {"start": t, "end": end, "what": f"drop {a['drop']} nudged by {a['distance']:.3g} cell and back"}
        )
        return a["for"]

    def _entry_split(self, t: float, e: Step) -> float:
        index = e.args["drop"]
        if index < len(self.drops):
            drop = self.drops[index]
            (c, r), cells = drop.cell, {d.cell for d in self.drops}
            board = self.board
            for dc, dr in ((1, 0), (0, 1)):
                a, b = (c - dc, r - dr), (c + dc, r + dr)
                if not (board.contains(a) and board.contains(b)):
                    continue
                near = {n for x in (a, b) for n in board.neighbours(x)} | {a, b}
                if near & (cells - {drop.cell}):
                    continue  # another drop would be pulled too
                pair = frozenset((board.pin_at(a), board.pin_at(b)))
                self._schedule(t, lambda t2, p=pair: self._control_step(t2, p))
                end = t + self.scenario.move_time
                self._schedule(end, lambda t2: self._control_step(t2, frozenset()))
                self.truth.activity.append({"start": t, "end": end, "what": f"split of drop {index}"})
                break
        return self.scenario.step

    def _entry_burst(self, t: float, e: Step) -> float:
        moves, ndrops = e.args["moves"], e.args["drops"]
        pins, used = self._plan_burst(moves, ndrops)
        if pins:
            self._run_steps(t, pins, f"burst: {len(pins)} move(s) of drop(s) {', '.join(map(str, used))}")
        return moves * self.scenario.step

    def _run_steps(self, t0: float, pins: list[int], what: str) -> None:
        """Drive `pins` one per control step, then clear the drive when the last move has settled."""
        step = self.scenario.step
        for i, pin in enumerate(pins):
            self._schedule(t0 + i * step, lambda t, p=pin: self._control_step(t, frozenset((p,))))
        end = t0 + (len(pins) - 1) * step + self.scenario.move_time
        self._schedule(end, lambda t: self._control_step(t, frozenset()))
        self.truth.activity.append({"start": t0, "end": end, "what": what})

    def _plan_burst(self, moves: int, ndrops: int) -> tuple[list[int], list[int]]:
        """Pins to drive for `moves` single-cell moves shared by up to `ndrops` drops.

        Each target is a free cell next to the moving drop and next to no
        other drop, so exactly the intended drop is pulled (no merging).
        Assumes all drops are at rest, which holds between timeline steps.
        """
        rng = self._plan_rng
        board = self.board
        where = [d.cell for d in self.drops]
        order = rng.sample(range(len(where)), k=min(ndrops, len(where)))
        legs = [moves // len(order) + (1 if i < moves % len(order) else 0) for i in range(len(order))]
        pins: list[int] = []
        used: list[int] = []
        for drop_index, count in zip(order, legs):
            heading: tuple[int, int] | None = None
            moved = False
            for _ in range(count):
                here = where[drop_index]
                others = {c for j, c in enumerate(where) if j != drop_index}
                options = []
                for n in board.neighbours(here):
                    if n in others or any(m in others for m in board.neighbours(n)):
                        continue
                    options.append(n)
                if not options:
                    break
                straight = [n for n in options if heading and (n[0] - here[0], n[1] - here[1]) == heading]
                target = straight[0] if straight and rng.random() < 0.6 else rng.choice(options)
                heading = (target[0] - here[0], target[1] - here[1])
                where[drop_index] = target
                pins.append(board.pin_at(target))
                moved = True
            if moved:
                used.append(drop_index)
        return pins, sorted(used)

    # -- faults ---------------------------------------------------------------

    def _periodic_fault(self, kind: str, every: float) -> Callable[[float], None]:
        def fire(t: float) -> None:
            self._fault(t, kind)
            self._schedule(t + every, fire)

        return fire

    def _fault(self, t: float, kind: str) -> None:
        if kind == "stuck":
            self._stuck_armed = True  # a physical fault: nothing is sent
        else:
            self._emit(t, Fault(kind))
        if kind == "close":
            self.truth.disconnects.append({"start": t, "end": t, "what": "connections closed"})
        self.truth.faults.append({"t": t, "what": kind})

    # -- sensors ----------------------------------------------------------------

    def temperature(self, t: float) -> float:
        t0, v0, t1, v1 = self._temp
        if t >= t1 or t1 <= t0:
            return v1
        return v0 + (v1 - v0) * (t - t0) / (t1 - t0)

    def gain(self, t: float) -> float:
        g = self._gain
        if self._flicker is not None:
            start, end, amplitude, period = self._flicker
            if start <= t < end:
                g *= 1.0 + amplitude * math.sin(2 * math.pi * (t - start) / period)
        return round(g / GAIN_STEP) * GAIN_STEP

    def _device_info(self, t: float, connected: bool) -> None:
        ev = PurpleDropEvent()
        ev.device_info.connected = connected
        ev.device_info.serial_number = SERIAL_NUMBER
        ev.device_info.software_version = FIRMWARE_VERSION
        self._emit(t, ev)

    def _emit_scan_capacitance(self, t: float) -> None:
        ev, inner = self._event(t, "scan_capacitance")
        covered = self.covered_pins(t)
        gauss = self._noise_rng.gauss
        present = self.scenario.drop_present
        for pin in range(PIN_COUNT):
            m = inner.measurements.add()
            if pin in covered:
                m.capacitance = 210.0 + gauss(0, 4.0)
                m.raw = 1000.0 + gauss(0, 10.0)
                m.drop_present = present
        self._emit(t, ev)

    def group0_drops(self, t: float) -> float:
        """How many drops sit on scan group 0's electrodes at `t`: a moving drop counts by the share of it
        that has crossed (its capacitance follows the wetted area, which slides from one electrode to the next)."""
        group = set(self.board.scan_pins)
        pins = self.board.pins
        total = 0.0
        for d in self.drops:
            f = d.fraction(t)
            if pins[d.cell] in group:
                total += f
            if d.src is not None and f < 1.0 and pins[d.src] in group:
                total += 1.0 - f
        return total

    def _emit_group_capacitance(self, t: float) -> None:
        ev, inner = self._event(t, "group_capacitance")
        gauss = self._noise_rng.gauss
        # One drop on a group's electrodes reads ~32.8 pF, as in upstream's simulator log; the other
        # groups have no electrodes here and read 0.
        level = GROUP_PF_PER_DROP * self.group0_drops(t) + gauss(0, GROUP_NOISE_PF)
        values = [max(0.0, level) if i == 0 else 0.0 for i in range(SCAN_GROUPS)]
        inner.measurements.extend(values)
        inner.raw_measurements.extend(v * 4.0 for v in values)
        self._emit(t, ev)

    def _emit_active_capacitance(self, t: float) -> None:
        ev, inner = self._event(t, "active_capacitance")
        on_driven = len(self.covered_pins(t) & self.driven)
        baseline = 12.0
        measurement = baseline + 180.0 * on_driven + self._noise_rng.gauss(0, 0.8)
        inner.baseline = baseline
        inner.measurement = measurement
        inner.calibrated = measurement - baseline
        self._emit(t, ev)

    def _emit_hv_regulator(self, t: float) -> None:
        ev, inner = self._event(t, "hv_regulator")
        inner.voltage = 100.0 + self._noise_rng.gauss(0, 0.3)
        inner.v_target_out = 100.0
        self._emit(t, ev)

    def _emit_temperature_control(self, t: float) -> None:
        ev, inner = self._event(t, "temperature_control")
        temp = self.temperature(t)
        t0, _, t1, v1 = self._temp
        heating = 0.3 if t0 <= t < t1 and v1 > temp else 0.0
        duty = min(1.0, max(0.0, (temp - 20.0) / 80.0 + heating))
        inner.temperatures.append(temp + self._noise_rng.gauss(0, 0.05))
        inner.duty_cycles.append(duty)
        self._emit(t, ev)

    def _emit_duty_cycle_updated(self, t: float) -> None:
        ev, inner = self._event(t, "duty_cycle_updated")
        inner.duty_cycles.extend([DRIVE_SETTING, DRIVE_SETTING])
        self._emit(t, ev)

    def _emit_layout(self, t: float) -> None:
        """The board's electrode grid as upstream's board definition JSON (rows of pin numbers)."""
        board = self.board
        grid = [[board.pin_at((c, r)) for c in range(board.cols)] for r in range(board.rows)]
        ev, inner = self._event(t, "electrode_layout")
        inner.layout = json.dumps({"layout": {"grid": grid}})
        self._emit(t, ev)

    def _emit_camera(self, t: float) -> None:
        r = self.scenario.drop_radius
        drops = tuple((*d.position(t), r) for d in self.drops)
        spot = None
        if self._spot is not None:
            start, end, amplitude, period, region = self._spot
            if start <= t < end:
                g = 1.0 + amplitude * math.sin(2 * math.pi * (t - start) / period)
                spot = (round(g / GAIN_STEP) * GAIN_STEP, *region)
        self._emit(t, CameraFrame(drops, self.gain(t), 0.0, spot))
