"""Websocket broadcast to many clients, pdserver style, with bounded per-client queues.

`Broadcaster.publish(messages)` is synchronous and never blocks: it appends
each message to every connected client's queue. A writer task per client
sends its queue in order. When a client falls behind by more than
`max_queue_bytes`, its oldest messages are dropped (an `image_transform`
goes together with the `image` after it), counted in its stats and logged at
most every few seconds; other clients never wait for it.

`BroadcastServer(broadcaster, host, port)` is the async context manager that
serves the websocket (binary frames; no compression: JPEGs do not shrink
and deflating 100 MB/s would cost a core). Port 0 picks a
free port; `.port` and `.uri` tell which.

`StreamServer` is the shell of a server that plays one stream to all its
clients (the simulator, the log replayer): see its docstring.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from autorec import events

log = logging.getLogger(__name__)

_IMAGE_TRANSFORM_TAG = (events.NUMBER_BY_KIND["image_transform"] << 3) | 2
_IMAGE_TAG = (events.NUMBER_BY_KIND["image"] << 3) | 2
_DROP_LOG_INTERVAL = 5.0  # seconds between "client is too slow" lines per client


@dataclass
class ClientStats:
    """Counters for one client connection."""

    peer: str
    connected_at: float
    sent: int = 0
    sent_bytes: int = 0
    dropped: int = 0
    dropped_bytes: int = 0
    closed: bool = False

    def as_dict(self) -> dict[str, object]:
        return {
            "peer": self.peer,
            "sent": self.sent,
            "sent_bytes": self.sent_bytes,
            "dropped": self.dropped,
            "dropped_bytes": self.dropped_bytes,
            "closed": self.closed,
        }


@dataclass
class _Client:
    ws: ServerConnection
    stats: ClientStats
    queue: deque[bytes | str] = field(default_factory=deque)
    queued_bytes: int = 0
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    last_drop_log: float = float("-inf")
    logged_drops: int = 0


class Broadcaster:
    """See the module docstring."""

    def __init__(self, max_queue_bytes: int = 32 * 1024 * 1024, name: str = "broadcast"):
        self.max_queue_bytes = max_queue_bytes
        self.name = name
        self._clients: dict[ServerConnection, _Client] = {}
        self.history: list[ClientStats] = []  # every client ever connected, in order
        self.published = 0
        self._client_change: asyncio.Event | None = None

    @property
    def client_count(self) -> int:
        return len(self._clients)

    def publish(self, messages: Iterable[bytes | str]) -> None:
        """Queue `messages` for every client, dropping the oldest of a client that is too far behind."""
        batch = messages if isinstance(messages, list) else list(messages)
        if not batch:
            return
        self.published += len(batch)
        size = sum(len(m) for m in batch)
        for client in self._clients.values():
            client.queue.extend(batch)
            client.queued_bytes += size
            if client.queued_bytes > self.max_queue_bytes:
                self._shed(client)
            client.wake.set()

    def _shed(self, client: _Client) -> None:
        q, stats = client.queue, client.stats
        while client.queued_bytes > self.max_queue_bytes and len(q) > 1:
            m = q.popleft()
            n = len(m)
            client.queued_bytes -= n
            stats.dropped += 1
            stats.dropped_bytes += n
            # An image_transform without its image is useless: drop them as a pair.
            if n and isinstance(m, bytes) and m[0] == _IMAGE_TRANSFORM_TAG and q:
                nxt = q[0]
                if isinstance(nxt, bytes) and nxt[:1] == bytes((_IMAGE_TAG,)):
                    q.popleft()
                    client.queued_bytes -= len(nxt)
                    stats.dropped += 1
                    stats.dropped_bytes += len(nxt)
        now = time.monotonic()
        if now - client.last_drop_log >= _DROP_LOG_INTERVAL:
            log.warning(
                "%s: client %s is too slow: dropped %d oldest message(s) (%d so far)",
                self.name,
                stats.peer,
                stats.dropped - client.logged_drops,
                stats.dropped,
            )
            client.last_drop_log = now
            client.logged_drops = stats.dropped

    def _changed(self) -> None:
        if self._client_change is not None:
            self._client_change.set()
            self._client_change = None

    async def wait_for_clients(self, n: int) -> None:
        """Return once at least `n` clients are connected."""
        while len(self._clients) < n:
            if self._client_change is None:
                self._client_change = asyncio.Event()
            await self._client_change.wait()

    async def handler(self, ws: ServerConnection) -> None:
        """The websocket connection handler: registers the client and sends its queue until it goes away."""
        peer = _peer(ws)
        client = _Client(ws, ClientStats(peer, time.time()))
        self._clients[ws] = client
        self.history.append(client.stats)
        self._changed()
        log.info("%s: client %s connected (%d connected)", self.name, peer, len(self._clients))
        stats = client.stats

        async def watch_close() -> None:
            # The writer below only wakes for new messages; wake it when the peer goes away too.
            await ws.wait_closed()
            stats.closed = True
            client.wake.set()

        watcher = asyncio.ensure_future(watch_close())
        try:
            while not stats.closed:
                if not client.queue:
                    client.wake.clear()
                    await client.wake.wait()
                    continue
                m = client.queue.popleft()
                client.queued_bytes -= len(m)
                await ws.send(m)
                stats.sent += 1
                stats.sent_bytes += len(m)
        except ConnectionClosed:
            pass
        finally:
            watcher.cancel()
            stats.closed = True
            self._clients.pop(ws, None)
            self._changed()
            log.info(
                "%s: client %s disconnected after %d message(s), %d dropped",
                self.name,
                peer,
                stats.sent,
                stats.dropped,
            )

    def queued_bytes(self) -> int:
        return sum(c.queued_bytes for c in self._clients.values())

    async def drain(self, timeout: float) -> bool:
        """Wait (up to `timeout` s) until every client's queue is empty; False if some never emptied."""
        deadline = time.monotonic() + timeout
        while any(c.queue for c in self._clients.values()):
            if time.monotonic() >= deadline:
                return False
            await asyncio.sleep(0.01)
        return True

    def close_all(self, code: int = 1001, reason: str = "server restarting") -> int:
        """Close every connection (without waiting for slow peers); returns how many."""
        clients = list(self._clients.values())
        for c in clients:
            c.queue.clear()
            c.queued_bytes = 0
            # Closing waits for the peer's close frame; never let one peer hold up the stream.
            task = asyncio.ensure_future(c.ws.close(code, reason))
            task.add_done_callback(_ignore_result)
        return len(clients)

    def stats(self) -> dict[str, object]:
        return {
            "published": self.published,
            "clients": [s.as_dict() for s in self.history],
            "dropped": sum(s.dropped for s in self.history),
        }


def _ignore_result(task: asyncio.Future) -> None:
    with contextlib.suppress(BaseException):
        task.result()


def _peer(ws: ServerConnection) -> str:
    addr = ws.remote_address
    if isinstance(addr, tuple) and len(addr) >= 2:
        return f"{addr[0]}:{addr[1]}"
    return str(addr)


class BroadcastServer:
    """Serves a `Broadcaster` on a websocket. See the module docstring."""

    def __init__(self, broadcaster: Broadcaster, host: str = "127.0.0.1", port: int = 0):
        self.broadcaster = broadcaster
        self.host = host
        self._port = port
        self._server: Server | None = None

    async def __aenter__(self) -> BroadcastServer:
        self._server = await serve(
            self.broadcaster.handler,
            self.host,
            self._port,
            compression=None,
            max_size=1 << 20,  # inbound only: clients send nothing, so refuse anything big
            # Buffer up to this much in the transport before a send waits, so big
            # frames don't cost an event-loop round trip each.
            write_limit=1024 * 1024,
        )
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._server.wait_closed(), 5.0)
            self._server = None

    @property
    def port(self) -> int:
        assert self._server is not None, "server not started"
        return self._server.sockets[0].getsockname()[1]

    @property
    def uri(self) -> str:
        host = self.host if ":" not in self.host else f"[{self.host}]"
        if host in ("0.0.0.0", "", "[::]"):
            host = "127.0.0.1"
        return f"ws://{host}:{self.port}"


class StreamServer:
    """A `Broadcaster` served on a websocket plus the task that feeds it; subclasses write `_play()`.

    `async with` starts serving, then runs `_play()` as a task; `_play()` publishes
    through `self.broadcaster` and sets `self._finished` when it ends (also on
    error), which `wait_finished()` waits for. Leaving the context cancels the
    task, gives clients up to 2 s to receive what is already queued (a stalled
    client cannot hold this up), and closes the server.
    """

    def __init__(self, broadcaster: Broadcaster, host: str, port: int) -> None:
        self.broadcaster = broadcaster
        self._server = BroadcastServer(broadcaster, host, port)
        self._task: asyncio.Task | None = None
        self._finished: asyncio.Event | None = None

    async def _play(self) -> None:
        raise NotImplementedError

    async def __aenter__(self) -> StreamServer:
        self._finished = asyncio.Event()
        await self._server.__aenter__()
        self._task = asyncio.ensure_future(self._play())
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self.broadcaster.drain(2.0)
        await self._server.__aexit__(*exc)

    @property
    def port(self) -> int:
        return self._server.port

    @property
    def uri(self) -> str:
        return self._server.uri

    async def wait_finished(self) -> None:
        assert self._finished is not None, f"use `async with {type(self).__name__}(...)` first"
        await self._finished.wait()
