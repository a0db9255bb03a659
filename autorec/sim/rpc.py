"""pdserver's JSON-RPC methods on the simulated rig (sans-I/O: a request body in, a response body out).

`RpcHandler(sim).handle(body, t)` takes one HTTP POST body of JSON-RPC 2.0 (a call or a batch)
and the simulated time it arrives at, acts on the `Simulation`, and returns the response body
(bytes; None for a notification, which gets no answer). The HTTP edge (`autorec.sim.server`)
serves it on `POST /rpc` and the method list on `GET /rpc/map`, as pdserver does on port 7000.

Methods (pdserver's names; `params` by name or by position, as upstream's pdclient sends them):
`get_board_definition()`, `get_scan_capacitance()`, `set_electrode_pins(pins, group_id=0,
duty_cycle=255)`, `get_electrode_pins()` (128 booleans, both drive groups), `get_device_info()`,
`get_hv_supply_voltage()`, `get_temperatures()`. Anything else is error -32601; bad params
-32602; a body that is not JSON -32700: every error is an answer, never an exception.
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Callable
from typing import Any

from autorec.sim.board import PIN_COUNT
from autorec.sim.core import FIRMWARE_VERSION, SERIAL_NUMBER, Simulation

PARSE_ERROR = -32700
INVALID_REQUEST = -32600
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602


class RpcHandler:
    """See the module docstring."""

    def __init__(self, sim: Simulation) -> None:
        self.sim = sim
        self.calls: dict[str, int] = {}  # method -> calls answered (tests, the sim's summary)
        self._t = sim.start_time
        self._methods: dict[str, Callable[..., Any]] = {
            "get_board_definition": self.get_board_definition,
            "get_scan_capacitance": self.get_scan_capacitance,
            "set_electrode_pins": self.set_electrode_pins,
            "get_electrode_pins": self.get_electrode_pins,
            "get_device_info": self.get_device_info,
            "get_hv_supply_voltage": self.get_hv_supply_voltage,
            "get_temperatures": self.get_temperatures,
        }

    def method_map(self) -> dict[str, str]:
        """`GET /rpc/map`: method name -> its first docstring line."""
        return {name: (inspect.getdoc(fn) or "").splitlines()[0] for name, fn in self._methods.items()}

    def handle(self, body: bytes, t: float) -> bytes | None:
        """One POST body at simulated time `t`: the response body, or None (notifications only)."""
        self._t = t
        try:
            request = json.loads(body)
        except (ValueError, UnicodeDecodeError):
            return _dump(_error(None, PARSE_ERROR, "parse error: the body is not JSON"))
        if isinstance(request, list):
            if not request:
                return _dump(_error(None, INVALID_REQUEST, "invalid request: empty batch"))
            answers = [a for a in (self._call(r) for r in request) if a is not None]
            return _dump(answers) if answers else None
        answer = self._call(request)
        return None if answer is None else _dump(answer)

    def _call(self, request: Any) -> dict | None:
        if not isinstance(request, dict) or not isinstance(request.get("method"), str):
            return _error(None, INVALID_REQUEST, "invalid request: expected an object with a method")
        rid = request.get("id")
        notification = "id" not in request
        fn = self._methods.get(request["method"])
        if fn is None:
            answer = _error(rid, METHOD_NOT_FOUND, f"method not found: {request['method']}")
            return None if notification else answer
        params = request.get("params", [])
        try:
            if isinstance(params, dict):
                result = fn(**params)
            elif isinstance(params, list):
                result = fn(*params)
            else:
                raise TypeError("params must be an array or an object")
        except (TypeError, ValueError) as exc:
            answer = _error(rid, INVALID_PARAMS, f"invalid params: {exc}")
            return None if notification else answer
        self.calls[request["method"]] = self.calls.get(request["method"], 0) + 1
        return None if notification else {"jsonrpc": "2.0", "result": result, "id": rid}

    # -- methods ------------------------------------------------------------

    def get_board_definition(self) -> dict:
        """The electrode board: grids of pin numbers (row y, column x), peripherals."""
        return self.sim.board_definition()

    def get_scan_capacitance(self) -> dict:
        """The latest capacitance scan: raw and calibrated, one value per pin."""
        return self.sim.scan_capacitance(self._t)

    def set_electrode_pins(self, pins: list[int], group_id: int = 0, duty_cycle: int = 255) -> None:
        """Drive exactly `pins` in drive group `group_id` (0 or 1); [] switches the group off."""
        if not isinstance(pins, list) or not all(isinstance(p, int) and not isinstance(p, bool) for p in pins):
            raise ValueError("pins must be a list of pin numbers")
        if not isinstance(group_id, int) or not isinstance(duty_cycle, int) or not 0 <= duty_cycle <= 255:
            raise ValueError("group_id must be 0 or 1 and duty_cycle 0-255")
        self.sim.drive(self._t, frozenset(pins), group_id)
        return None

    def get_electrode_pins(self) -> list[bool]:
        """The state of all pins: True where either drive group drives it."""
        driven = self.sim.driven
        return [p in driven for p in range(PIN_COUNT)]

    def get_device_info(self) -> dict:
        """Whether the device is connected, its serial number and software version."""
        return {"connected": self.sim.connected, "serial_number": SERIAL_NUMBER, "software_version": FIRMWARE_VERSION}

    def get_hv_supply_voltage(self) -> float:
        """The high-voltage rail (V)."""
        return 100.0

    def get_temperatures(self) -> list[float]:
        """Every temperature sensor (degrees C)."""
        return [round(self.sim.temperature(self._t), 2)]


def _error(rid: Any, code: int, message: str) -> dict:
    return {"jsonrpc": "2.0", "error": {"code": code, "message": message}, "id": rid}


def _dump(answer: Any) -> bytes:
    return json.dumps(answer).encode()
