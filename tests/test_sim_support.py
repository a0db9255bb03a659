"""Helpers shared by the simulator, replay and broadcast tests (no tests here).

`receive(uri)` is a real websocket client that collects every message with
its arrival time until the server closes the connection (or a deadline).
`stream_run(config)` runs a SimServer to the end of its duration with one
client connected from the first message, and returns what that client got.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from autorec import events
from autorec.sim.config import SimConfig
from autorec.sim.server import SimServer

DEADLINE = 30.0  # seconds; generous for a loaded machine, tests normally take well under that


@dataclass
class Received:
    at: float  # time.monotonic() on arrival
    payload: bytes | str


async def receive(uri: str, deadline: float = DEADLINE, limit: int | None = None) -> list[Received]:
    """Every message until the server closes the connection, `limit` messages, or `deadline` seconds."""
    out: list[Received] = []
    end = time.monotonic() + deadline
    async with connect(uri, max_size=None, compression=None) as ws:
        while limit is None or len(out) < limit:
            left = end - time.monotonic()
            if left <= 0:
                break
            try:
                m = await asyncio.wait_for(ws.recv(), left)
            except (ConnectionClosed, asyncio.TimeoutError):
                break
            out.append(Received(time.monotonic(), m))
    return out


async def stream_run_async(config: SimConfig) -> tuple[list[Received], dict, dict]:
    config.wait_for_clients = max(config.wait_for_clients, 1)
    async with SimServer(config, port=0) as server:
        got = asyncio.ensure_future(receive(server.uri))
        await asyncio.wait_for(server.wait_finished(), DEADLINE)
        await server.broadcaster.drain(DEADLINE)
        truth, stats = server.truth, server.stats
    return await got, truth, stats


def stream_run(config: SimConfig) -> tuple[list[Received], dict, dict]:
    """(messages one client received, truth, stats) of a whole SimServer run."""
    return asyncio.run(stream_run_async(config))


def decoded(messages: list[Received]) -> list[tuple[float, object]]:
    """(arrival, event) for every message, asserting that each one decodes."""
    out = []
    for m in messages:
        assert isinstance(m.payload, bytes), f"unexpected text frame {m.payload!r}"
        out.append((m.at, events.decode(m.payload)))
    return out


def electrode_changes(evs) -> list[tuple[float, bytes]]:
    """(stream time, state bytes) of each electrode_state that differs from the one before.

    electrode_state carries no timestamp: it gets the time of the last
    timestamped message, as a recorder must do.
    """
    last_time = None
    prev = None
    changes = []
    for ev in evs:
        t = events.timestamp(ev)
        if t is not None:
            last_time = t
        if events.kind(ev) == "electrode_state":
            state = ev.electrode_state.SerializeToString()
            if prev is not None and state != prev:
                changes.append((last_time, state))
            prev = state
    return changes
