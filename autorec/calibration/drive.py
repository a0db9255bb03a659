"""`calibrate --drive`: known drop moves over pdserver's JSON-RPC, every driven electrode off afterwards.

- `RpcClient(url)`: blocking JSON-RPC 2.0 over HTTP POST (stdlib urllib); `call(method, **params)`
  returns the result or raises `RpcError` (no answer, an HTTP error, a JSON-RPC error).
- `board_cells(definition)`: pdserver's board definition -> {(grid, x, y): pin}.
- `covered(values)`: the pins a capacitance scan (one value per pin) shows a drop on.
- `plan_moves(cells, covered, steps, allowed)` (pure): a drop and a straight path of `steps` free
  electrodes next to no other drop, there and back; None when no drop has one (within `allowed`).
- `Driver(client, plan, ...)`: runs the plan, one electrode at a time in drive group 0: drives the
  next pin, waits until the scans show the drop there, pauses `gap`, and so on. A drop that does
  not arrive within `timeout` ends the moves (`failed` says why): the plan no longer holds.

Safety contract: a `Driver` drives only the pins of its plan, and refuses (RuntimeError) any
other; `run()` switches drive group 0 off (`set_electrode_pins([])`) in a `finally`, so at the
end, on a stop request (Ctrl-C: SIGINT through `autorec.io.mainloop`), on cancellation and on
any error; `off()` may be called again and retries. It never touches drive group 1.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger(__name__)

Cell = tuple[int, int, int]  # (grid index, x, y)
REAL_CAP = 30.0  # real seconds any one wait of the driver lasts at most


class RpcError(Exception):
    """A JSON-RPC call failed: no answer, an HTTP error or an error object."""


class RpcCallError(RpcError):
    """The server answered the call with a JSON-RPC error object (it is there, the call was refused)."""


class RpcClient:
    """See the module docstring."""

    def __init__(self, url: str, timeout: float = 5.0) -> None:
        self.url = url
        self.timeout = timeout
        self._id = 0

    def call(self, method: str, **params: Any) -> Any:
        self._id += 1
        body = json.dumps({"jsonrpc": "2.0", "method": method, "params": params, "id": self._id}).encode()
        request = urllib.request.Request(self.url, body, {"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                answer = json.loads(response.read() or b"null")
        except urllib.error.HTTPError as exc:
            raise RpcError(f"{method}: HTTP {exc.code} {exc.reason}") from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise RpcError(f"{method}: no answer from {self.url} ({reason})") from None
        except ValueError:
            raise RpcError(f"{method}: the answer is not JSON") from None
        if not isinstance(answer, dict):
            raise RpcError(f"{method}: not a JSON-RPC answer")
        if "error" in answer:
            err = answer["error"]
            raise RpcCallError(f"{method}: {err.get('message', err) if isinstance(err, dict) else err}")
        return answer.get("result")


def rpc_url_for(uri: str) -> str:
    """pdserver's JSON-RPC URL beside its websocket: ws://HOST:7001 -> http://HOST:7000/rpc."""
    parts = urllib.parse.urlsplit(uri)
    host = parts.hostname or "localhost"
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:7000/rpc"


def board_cells(definition: Any) -> dict[Cell, int]:
    """{(grid, x, y): pin} from `get_board_definition` (`layout.grids[].pins`, or a single `pins`/`grid`)."""
    layout = definition.get("layout", definition) if isinstance(definition, dict) else {}
    grids = layout.get("grids") if isinstance(layout, dict) else None
    if not grids:
        rows = layout.get("pins") or layout.get("grid") if isinstance(layout, dict) else None
        grids = [{"pins": rows}] if rows else []
    cells: dict[Cell, int] = {}
    for g, grid in enumerate(grids):
        rows = grid.get("pins") if isinstance(grid, dict) else None
        for y, row in enumerate(rows or []):
            for x, pin in enumerate(row or []):
                if isinstance(pin, int) and not isinstance(pin, bool) and pin >= 0:
                    cells[(g, x, y)] = pin
    return cells


def covered(values: list[float], min_delta: float = 5.0, noise_factor: float = 6.0) -> set[int]:
    """Pins whose value is clearly above the scan's empty level (median + max(min_delta, 6 MAD-sigma))."""
    if not values:
        return set()
    ordered = sorted(values)
    n = len(ordered)
    empty = (ordered[n // 2] + ordered[(n - 1) // 2]) / 2
    dev = sorted(abs(v - empty) for v in values)
    mad = (dev[n // 2] + dev[(n - 1) // 2]) / 2 * 1.4826
    level = empty + max(min_delta, noise_factor * mad)
    return {pin for pin, v in enumerate(values) if isinstance(v, (int, float)) and v > level}


@dataclass(frozen=True)
class MovePlan:
    """Drive `path` one pin at a time: `drop_pin`'s drop goes `steps` electrodes out and back."""

    drop_pin: int
    path: tuple[int, ...]

    @property
    def pins(self) -> frozenset[int]:
        return frozenset(self.path)


def plan_moves(
    cells: dict[Cell, int], covered_pins: set[int], steps: int = 2, allowed: frozenset[int] | None = None
) -> MovePlan | None:
    """See the module docstring. A drop covering more than one electrode is left alone."""
    at = {pin: cell for cell, pin in cells.items()}
    occupied = {at[p] for p in covered_pins if p in at}

    def neighbours(c: Cell) -> list[Cell]:
        g, x, y = c
        return [n for n in ((g, x + 1, y), (g, x - 1, y), (g, x, y + 1), (g, x, y - 1)) if n in cells]

    for drop in sorted(occupied, key=lambda c: cells[c]):
        if any(n in occupied for n in neighbours(drop)):
            continue
        if allowed is not None and cells[drop] not in allowed:
            continue
        for dx, dy in ((1, 0), (-1, 0), (0, 1), (0, -1)):
            g, x, y = drop
            path = [(g, x + dx * i, y + dy * i) for i in range(1, steps + 1)]
            if not all(c in cells for c in path):
                continue
            others = occupied - {drop}
            near = {n for c in path for n in neighbours(c)} | set(path)
            if near & others:
                continue
            pins = [cells[c] for c in path]
            if allowed is not None and not set(pins) <= allowed:
                continue
            back = [*pins[-2::-1], cells[drop]]
            return MovePlan(cells[drop], (*pins, *back))
    return None


@dataclass
class MoveRecord:
    """One commanded move: the pin driven, when (this computer's clock), and when a scan showed the drop there."""

    pin: int
    commanded: float
    arrived: float | None = None


@dataclass
class Driver:
    """See the module docstring. `clock()`: the stream's time (None before any), so that pauses and
    timeouts follow the rig's clock (a sped-up simulator); without one, this computer's."""

    client: RpcClient
    plan: MovePlan
    gap: float = 4.0  # stream seconds between a drop's arrival and the next move (the camera settles)
    timeout: float = 5.0  # stream seconds a drop may take to arrive
    clock: Callable[[], float | None] | None = None
    on_move: Callable[[MoveRecord], None] | None = None
    records: list[MoveRecord] = field(default_factory=list)
    driven: set[int] = field(default_factory=set)  # every pin this driver ever drove
    off_confirmed: bool = False
    failed: str | None = None  # why the moves stopped early

    def _set(self, pins: list[int]) -> None:
        if not set(pins) <= self.plan.pins:
            raise RuntimeError(f"refusing to drive pins {sorted(set(pins) - self.plan.pins)}: not in the plan")
        self.driven |= set(pins)  # before the call: a call that times out may still have acted
        self._call_set(pins)

    def _call_set(self, pins: list[int]) -> None:
        try:
            self.client.call("set_electrode_pins", pins=pins, group_id=0)
        except RpcCallError:
            # Older pdserver versions take `pins` alone (one drive group); refused either way, it raises.
            self.client.call("set_electrode_pins", pins=pins)

    def off(self, attempts: int = 3) -> bool:
        """Switch drive group 0 off; True once the rig acknowledged it."""
        for i in range(attempts):
            try:
                self._call_set([])
            except RpcError as exc:
                log.error("calibrate: switching the electrodes off failed (attempt %d of %d): %s", i + 1, attempts, exc)
                time.sleep(0.2)
                continue
            self.off_confirmed = True
            return True
        return False

    def _now(self) -> float:
        t = self.clock() if self.clock is not None else None
        return t if t is not None else time.monotonic()

    async def _wait(self, seconds: float, stopped: Callable[[], bool], done=None) -> None:
        """Until `seconds` of stream time passed, `done()` or `stopped()`; at most `REAL_CAP` real seconds
        (a stream that stopped moving its clock must not hold a driven electrode for ever)."""
        end = self._now() + seconds
        cap = time.monotonic() + REAL_CAP
        while self._now() < end and time.monotonic() < cap and not stopped():
            if done is not None and await done():
                return
            await asyncio.sleep(0.02)

    async def run(self, stopped: Callable[[], bool]) -> list[MoveRecord]:
        """Run the plan until done or `stopped()`; electrodes off in any case (see the module docstring)."""
        try:
            for pin in self.plan.path:
                if stopped():
                    break
                record = MoveRecord(pin, time.time())
                self.off_confirmed = False
                await asyncio.to_thread(self._set, [pin])
                self.records.append(record)

                async def arrived(pin: int = pin, record: MoveRecord = record) -> bool:
                    scan = await asyncio.to_thread(self.client.call, "get_scan_capacitance")
                    values = scan.get("raw") if isinstance(scan, dict) else None
                    if values and pin in covered(list(values)):
                        record.arrived = time.time()
                        return True
                    return False

                await self._wait(self.timeout, stopped, arrived)
                if self.on_move is not None:
                    self.on_move(record)
                if record.arrived is None and not stopped():
                    # The drop did not follow (stuck, or not where the scan said): driving on would pull
                    # on a drop that is not where the plan thinks. Stop here; the finally switches off.
                    self.failed = f"the drop did not reach pin {pin} within {self.timeout:g} s"
                    log.debug("calibrate: %s: no more moves", self.failed)
                    break
                await self._wait(self.gap, stopped)
        finally:
            self.off()  # blocking on purpose: it must happen even while this task is being cancelled
        return self.records
