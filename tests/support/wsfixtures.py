"""A real websockets server standing in for pdserver, for tests.

`EventServer` listens on 127.0.0.1 (a random port, kept across restarts) in
its own thread and event loop, so both sync tests (subprocesses, threaded
APIs) and async code can talk to it. Like pdserver it only broadcasts: tests
push frames with `broadcast()`; `greeting` frames go to every new client the
moment it connects. `drop_connections()` cuts TCP without a close frame,
`stop()`/`start()` kill and revive the whole server on the same port,
`pause_reading()` makes it ignore close frames (so a client's closing
handshake hangs until its close timeout).

`wait_until` (from `tests.support.polling`) polls for a condition with a deadline
instead of sleeping.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterable
from pathlib import Path

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from autorec.io.logfile import LogReader
from tests.support.polling import wait_until  # re-exported: the websocket tests import it from here


def fixture_payloads(path: Path) -> list[bytes]:
    return [r.payload for r in LogReader(path).records()]


class EventServer:
    """pdserver stand-in. See the module docstring."""

    def __init__(self, greeting: Iterable[bytes | str] = ()):
        self.greeting = list(greeting)
        self.port = 0
        self.connects = 0  # connections accepted so far
        self._clients: set[ServerConnection] = set()
        self._server: Server | None = None
        self._loop = asyncio.new_event_loop()
        self._paused = False
        self._thread = threading.Thread(target=self._loop.run_forever, name="EventServer", daemon=True)
        self._thread.start()

    # -- plumbing -------------------------------------------------------------

    def _call(self, coro, timeout: float = 20.0):
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    async def _handler(self, ws: ServerConnection) -> None:
        self.connects += 1
        self._clients.add(ws)
        try:
            if self._paused:
                ws.transport.pause_reading()
            for frame in self.greeting:
                await ws.send(frame)
            await ws.wait_closed()
        except ConnectionClosed:
            pass
        finally:
            self._clients.discard(ws)

    @property
    def uri(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    @property
    def clients(self) -> int:
        return len(self._clients)

    # -- control ----------------------------------------------------------------

    def start(self) -> EventServer:
        async def _start() -> None:
            # compression=None: like pdserver's frames, nothing to gain; max_size only limits what we receive.
            self._server = await serve(self._handler, "127.0.0.1", self.port, compression=None, max_size=None)
            self.port = self._server.sockets[0].getsockname()[1]

        self._call(_start())
        return self

    def stop(self) -> None:
        """The server dies: listener closed, every connection cut without a close frame."""

        async def _stop() -> None:
            if self._server is None:
                return
            self._server.close(close_connections=False)
            for ws in list(self._clients):
                ws.transport.abort()
            await self._server.wait_closed()
            self._server = None

        self._call(_stop())

    def drop_connections(self) -> None:
        """Cut every client's TCP connection (no close frame); the server keeps listening."""

        async def _drop() -> None:
            for ws in list(self._clients):
                ws.transport.abort()

        self._call(_drop())

    def pause_reading(self) -> None:
        """Stop reading from clients (current and future): their close frames go unanswered."""

        async def _pause() -> None:
            self._paused = True
            for ws in list(self._clients):
                ws.transport.pause_reading()

        self._call(_pause())

    def broadcast(self, frames: Iterable[bytes | str], timeout: float = 20.0) -> int:
        """Send `frames` in order to every connected client; returns the number of clients reached."""
        frames = list(frames)

        async def _send() -> int:
            reached = 0
            for ws in list(self._clients):
                try:
                    for frame in frames:
                        await ws.send(frame)
                    reached += 1
                except ConnectionClosed:
                    pass
            return reached

        return self._call(_send(), timeout)

    def wait_for_clients(self, n: int = 1, timeout: float = 10.0) -> None:
        wait_until(lambda: self.clients >= n, timeout, f"{n} client(s) on {self.uri}")

    def close(self) -> None:
        self.stop()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    def __enter__(self) -> EventServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()
