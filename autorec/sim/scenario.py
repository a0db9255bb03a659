"""Simulator scenarios: which board, where the drops start, what happens when.

A scenario is YAML (built-ins live beside this module as `scenarios/*.yaml`):

    board: misl_v4.1
    drops: [[2, 2], [9, 5]]          # starting cells (col, row)
    rates: {scan_capacitance: 4}     # messages per simulated second (defaults below)
    control: {step: 0.5s, move_time: 0.3s, keepalive: 2s}
    timeline:                        # run in order, then from the top again
      - idle: 20s                    # only sensor traffic and unchanged control steps
      - burst: {moves: 8, drops: 2}  # 8 random single-cell moves shared by 2 drops
      - move: {drop: 0, path: [[3, 2], [4, 2]]}
      - move: {drop: 1, path: [[10, 5], [9, 5]], times: 20}   # a mix loop: the path 20 times over
      - lighting: 0.8                # global brightness step to 0.8x (instant)
      - flicker: {amplitude: 0.06, period: 1.5s, for: 10s}
      - flicker: {amplitude: 0.5, period: 4s, for: 1h, region: [0.05, 0.05, 0.1, 0.1]}  # one blinking spot
      - temperature: {to: 45, over: 30s}   # ramp runs in the background
      - disconnect: 3s               # the device drops off USB for 3 s
      - fault: garbage               # one bad frame (see config.FAULT_KINDS)
      - nudge: {drop: 0, distance: 0.125, for: 3s}   # barely moves (camera only), then back
      - split: {drop: 0}             # drive the two cells either side of drop 0: it splits in two
    faults: {close: 60s}             # periodic faults, as --faults
    drop_present: false              # leave drop_present unset, as upstream's simulator does
    layout: true                     # send an electrode_layout (board grid JSON) first; pdserver does not

Contract: `load_scenario(name_or_path)` returns a validated `Scenario` or
raises `ScenarioError` whose message starts with `file:line:`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from autorec.sim.board import Board, Cell, board_named
from autorec.sim.config import FAULT_KINDS
from autorec.units import parse_duration

# Messages per simulated second, as observed from pdserver (protocol.md) or
# plausible for hardware where upstream's simulator sends none.
DEFAULT_RATES: dict[str, float] = {
    "scan_capacitance": 4.0,
    "group_capacitance": 2.0,
    "hv_regulator": 0.4,
    "active_capacitance": 5.0,
    "temperature_control": 1.0,
    "duty_cycle_updated": 0.1,
}

ENTRY_KINDS = ("idle", "burst", "move", "lighting", "flicker", "temperature", "disconnect", "fault", "nudge", "split")


class ScenarioError(ValueError):
    """A scenario cannot be loaded; the message starts with `file:line:`."""


@dataclass(frozen=True)
class Step:
    """One timeline step. `args` depend on `kind` (see the module docstring); `line` is for messages."""

    kind: str
    args: dict[str, Any]
    line: int


@dataclass
class Scenario:
    name: str
    board: Board
    drops: list[Cell]
    timeline: list[Step]
    rates: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_RATES))
    step: float = 0.5
    move_time: float = 0.3
    keepalive: float = 2.0
    drop_radius: float = 0.42
    # How long a drop refuses to move after a `stuck` fault.
    stuck_for: float = 3.0
    faults: dict[str, float] = field(default_factory=dict)
    repeat: bool = True
    temperature: float = 25.0
    # False mimics upstream's simulator, which leaves drop_present unset (capacitance still shows drops).
    drop_present: bool = True
    # True: an electrode_layout event (upstream board JSON: {"layout": {"grid": [[pin, ...], ...]}}) first.
    layout: bool = False


class _LineDict(dict):
    line = 0


class _Loader(yaml.SafeLoader):
    """SafeLoader whose mappings remember their line (1-based) for error messages."""


def _construct_mapping(loader: _Loader, node: yaml.MappingNode) -> _LineDict:
    d = _LineDict(loader.construct_mapping(node, deep=True))
    d.line = node.start_mark.line + 1
    return d


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def builtin_names() -> list[str]:
    return sorted(
        p.name[:-5] for p in resources.files("autorec.sim").joinpath("scenarios").iterdir() if p.name.endswith(".yaml")
    )


def load_scenario(name_or_path: str) -> Scenario:
    """A scenario YAML file by path, or a built-in scenario by name.

    A regular file of that name wins; otherwise a built-in of that name (so an output directory
    called `idle` never hides the built-in `idle`). A directory or other non-file is never read:
    `ScenarioError` says so, as it does for a missing file.
    """
    path = Path(name_or_path)
    builtin = resources.files("autorec.sim").joinpath("scenarios", f"{name_or_path}.yaml")
    is_builtin = "/" not in name_or_path and name_or_path not in ("", ".", "..") and builtin.is_file()
    if not path.is_file() and is_builtin:
        return parse_scenario(builtin.read_text(), f"<built-in {name_or_path}>")
    if path.exists() and not path.is_file():
        kind = "a directory" if path.is_dir() else "not a regular file"
        raise ScenarioError(f"{path}:0: is {kind}, not a scenario file (built-ins: {', '.join(builtin_names())})")
    if path.suffix in (".yaml", ".yml") or path.exists():
        try:
            text = path.read_text()
        except OSError as exc:
            raise ScenarioError(f"{path}:0: cannot read scenario: {exc.strerror}") from None
        except UnicodeDecodeError as exc:  # a binary file given by mistake
            raise ScenarioError(f"{path}:0: cannot read scenario: not UTF-8 text ({exc.reason})") from None
        return parse_scenario(text, str(path))
    raise ScenarioError(
        f"{name_or_path}:0: no such scenario file or built-in (built-ins: {', '.join(builtin_names())})"
    )


def parse_scenario(text: str, source: str) -> Scenario:
    try:
        doc = yaml.load(text, Loader=_Loader)  # a SafeLoader subclass: no arbitrary objects
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else 0
        raise ScenarioError(f"{source}:{line}: not valid YAML: {getattr(exc, 'problem', exc)}") from None
    if not isinstance(doc, dict):
        raise ScenarioError(f"{source}:1: a scenario is a mapping with board, drops and timeline")

    def fail(line: int, msg: str) -> ScenarioError:
        return ScenarioError(f"{source}:{line}: {msg}")

    top = getattr(doc, "line", 1)
    known = {
        "name",
        "board",
        "drops",
        "rates",
        "control",
        "timeline",
        "faults",
        "repeat",
        "temperature",
        "drop_present",
        "layout",
    }
    for key in doc:
        if key not in known:
            raise fail(top, f"unknown key {key!r} (keys: {', '.join(sorted(known))})")
    try:
        board = board_named(str(doc.get("board", "misl_v4.1")))
    except ValueError as exc:
        raise fail(top, str(exc)) from None

    drops = [_cell(d, board, top, fail, "drops") for d in (doc.get("drops") or [])]
    if len(set(drops)) != len(drops):
        raise fail(top, "two drops start on the same cell")
    sc = Scenario(name=str(doc.get("name", Path(source).stem)), board=board, drops=drops, timeline=[])

    rates = doc.get("rates") or {}
    if not isinstance(rates, dict):
        raise fail(top, "rates: expected a mapping of message kind to messages per second")
    for k, v in rates.items():
        if k not in DEFAULT_RATES:
            raise fail(getattr(rates, "line", top), f"rates: unknown kind {k!r} (kinds: {', '.join(DEFAULT_RATES)})")
        if not isinstance(v, (int, float)) or v < 0:
            raise fail(getattr(rates, "line", top), f"rates: {k} must be a number >= 0")
        sc.rates[k] = float(v)

    control = doc.get("control") or {}
    cline = getattr(control, "line", top)
    for key in control:
        if key not in ("step", "move_time", "keepalive", "drop_radius", "stuck_for"):
            raise fail(
                cline, f"control: unknown key {key!r} (keys: step, move_time, keepalive, drop_radius, stuck_for)"
            )
    try:
        sc.step = parse_duration(control.get("step", sc.step))
        sc.move_time = parse_duration(control.get("move_time", sc.move_time))
        sc.keepalive = parse_duration(control.get("keepalive", sc.keepalive))
        sc.drop_radius = float(control.get("drop_radius", sc.drop_radius))
        sc.stuck_for = parse_duration(control.get("stuck_for", sc.stuck_for))
    except (ValueError, TypeError) as exc:
        raise fail(cline, f"control: {exc}") from None
    if not 0 < sc.move_time < sc.step:
        raise fail(cline, "control: move_time must be above zero and below step")

    faults = doc.get("faults") or {}
    for k, v in faults.items():
        if k not in FAULT_KINDS:
            raise fail(getattr(faults, "line", top), f"faults: unknown fault {k!r} (faults: {', '.join(FAULT_KINDS)})")
        try:
            sc.faults[k] = parse_duration(v)
        except ValueError as exc:
            raise fail(getattr(faults, "line", top), f"faults: {k}: {exc}") from None
    sc.repeat = bool(doc.get("repeat", True))
    sc.drop_present = bool(doc.get("drop_present", True))
    sc.layout = bool(doc.get("layout", False))
    sc.temperature = float(doc.get("temperature", 25.0))

    timeline = doc.get("timeline") or []
    if not isinstance(timeline, list):
        raise fail(top, "timeline: expected a list of steps")
    for raw in timeline:
        sc.timeline.append(_entry(raw, sc, top, fail))
    if sc.repeat and sc.timeline and _cycle_length(sc) <= 0:
        raise fail(top, "timeline: a repeating timeline needs at least one step that takes time (idle: 10s)")
    return sc


def _cell(value: Any, board: Board, line: int, fail, what: str) -> Cell:
    if not (isinstance(value, list) and len(value) == 2 and all(isinstance(v, int) for v in value)):
        raise fail(line, f"{what}: a cell is [col, row], got {value!r}")
    cell = (value[0], value[1])
    if not board.contains(cell):
        raise fail(line, f"{what}: cell {list(cell)} is off the {board.cols}x{board.rows} board")
    return cell


def _entry(raw: Any, sc: Scenario, top: int, fail) -> Step:
    line = getattr(raw, "line", top)
    if not isinstance(raw, dict) or len(raw) != 1:
        raise fail(line, f"timeline: each step is one `kind: value` ({', '.join(ENTRY_KINDS)}), got {raw!r}")
    ((kind, value),) = raw.items()
    if kind not in ENTRY_KINDS:
        raise fail(line, f"timeline: unknown step {kind!r} (steps: {', '.join(ENTRY_KINDS)})")
    args = dict(value) if isinstance(value, dict) else {}
    try:
        if kind in ("idle", "disconnect"):
            args = {"for": parse_duration(value)}
        elif kind == "burst":
            args = {"moves": int(args.get("moves", 6)), "drops": int(args.get("drops", 1))}
            if args["moves"] < 1 or args["drops"] < 1:
                raise ValueError("moves and drops must be at least 1")
            if not sc.drops:
                raise ValueError("a burst needs drops on the board")
        elif kind == "move":
            drop = int(args.get("drop", 0))
            if not 0 <= drop < len(sc.drops):
                raise ValueError(f"no drop {drop} (the scenario has {len(sc.drops)})")
            path = [_cell(c, sc.board, line, fail, "move") for c in args.get("path") or []]
            if not path:
                raise ValueError("path: give the cells to drive, in order")
            times = args.get("times", 1)
            if not isinstance(times, int) or isinstance(times, bool) or not 1 <= times <= 10_000:
                raise ValueError(f"times: how often to drive the path, 1-10000, got {times!r}")
            args = {"drop": drop, "path": path * times}
        elif kind == "nudge":
            drop = int(args.get("drop", 0))
            if not 0 <= drop < len(sc.drops):
                raise ValueError(f"no drop {drop} (the scenario has {len(sc.drops)})")
            args = {
                "drop": drop,
                "distance": float(args.get("distance", 0.125)),
                "for": parse_duration(args.get("for", "3s")),
            }
            if not 0 < abs(args["distance"]) < 0.5:
                raise ValueError("distance: a fraction of a cell, above 0 and below 0.5")
        elif kind == "split":
            drop = int(args.get("drop", 0))
            if not 0 <= drop < len(sc.drops):
                raise ValueError(f"no drop {drop} (the scenario has {len(sc.drops)})")
            args = {"drop": drop}
        elif kind == "lighting":
            gain = float(value)
            if gain <= 0:
                raise ValueError("the brightness factor must be above zero")
            args = {"gain": gain}
        elif kind == "flicker":
            region = args.get("region")
            args = {
                "amplitude": float(args.get("amplitude", 0.05)),
                "period": parse_duration(args.get("period", "1s")),
                "for": parse_duration(args.get("for", "10s")),
                "region": None,
            }
            if args["period"] <= 0:
                raise ValueError("period must be above zero")
            if region is not None:
                if not (
                    isinstance(region, list)
                    and len(region) == 4
                    and all(isinstance(v, (int, float)) and 0 <= v <= 1 for v in region)
                    and region[2] > 0
                    and region[3] > 0
                ):
                    raise ValueError(f"region: [x, y, width, height] as fractions of the picture (0-1), got {region!r}")
                args["region"] = [float(v) for v in region]
        elif kind == "temperature":
            args = {"to": float(args["to"]), "over": parse_duration(args.get("over", "30s"))}
        elif kind == "fault":
            if value not in FAULT_KINDS:
                raise ValueError(f"unknown fault {value!r} (faults: {', '.join(FAULT_KINDS)})")
            args = {"kind": value}
    except (ValueError, TypeError, KeyError) as exc:
        raise fail(line, f"timeline: {kind}: {exc}") from None
    return Step(kind, args, line)


def _cycle_length(sc: Scenario) -> float:
    """Simulated seconds one pass of the timeline takes (steps that block the timeline)."""
    total = 0.0
    for e in sc.timeline:
        if e.kind in ("idle", "disconnect", "flicker", "nudge"):
            total += e.args["for"]
        elif e.kind == "burst":
            total += e.args["moves"] * sc.step
        elif e.kind == "move":
            total += len(e.args["path"]) * sc.step
        elif e.kind == "split":
            total += sc.step
    return total
