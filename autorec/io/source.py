"""The live event stream of a rig: a websocket client that never gives up.

`WebsocketSource(uri)` connects to pdserver's websocket (``ws://host:7001``)
and is consumed with ``async for item in source:``. Every command that
listens to a rig (record, run, the EventRecorder API) reads through it.

Contract of the iteration (single consumer, one asyncio loop):

- `Message` for every binary frame, in arrival order, with the payload
  exactly as received, the wall-clock (`received`, `time.time()`) and
  monotonic receive times, its `kind`, and the decoded `event`. A frame
  that does not parse as a `PurpleDropEvent` (garbage, empty, no event field
  set) is still yielded, with `rejected` set to the reason, `event` None and
  `kind` the kind its first byte names (or None): consumers decide where it
  goes, nothing is dropped silently.
- Text frames are skipped and counted in `stats.text_frames` (pdserver only
  sends binary frames).
- `Connected(time)` after every successful opening handshake, before any
  message of that connection. Frames the server sends after that point are
  never missed: they queue in the connection until read.
- `Disconnected(time, cause)` once when a gap starts: the connection was lost,
  or the first connection attempt failed. Retries inside one gap are not
  reported again; the next `Connected` ends the gap. Gaps (start, end, cause)
  are also kept in `stats.gaps` (`end` is None while the gap is open).
- Retries use capped exponential backoff (`min_backoff` doubling up to
  `max_backoff`, <= 5 s by default). The backoff resets when a connection
  delivers its first frame (a server that drops every connection after a
  second still gets recorded, reconnected at once each time) or stayed up
  for at least `max_backoff`; a server that accepts and drops without
  sending anything is not hammered.
- The iteration ends (StopAsyncIteration) only after `stop()` or `close()`.
  Frames already received when the stop is requested are still yielded
  while the closing handshake runs (bounded by `close_timeout`).

`stop()` is synchronous and must run on the source's loop (use
``loop.call_soon_threadsafe(source.stop)`` from another thread); `close()`
is the awaitable version that also waits until the connection is closed.
`async with WebsocketSource(uri) as source:` closes on exit.

Connection options: `max_size` (default 64 MiB; camera frames over 1 MiB
exist and websockets' own default is 1 MiB), permessage-deflate off (JPEGs do
not compress, and compressing costs the Pi CPU), keepalive pings so a
half-open connection (rig unplugged) is noticed.

Paced reads (`read_interval`, default `READ_INTERVAL` = 0.2 s): after a read
of the socket that did not fill asyncio's read buffer, the connection stops
reading for `read_interval` seconds; what arrives meanwhile waits in the
kernel's socket buffer and comes in with the next read. A rig sends ~30
messages a second (10 camera frames, the sensors), each of which used to
wake the event loop, the websockets parser and the consumer on its own;
paced, one wake-up takes a handful and the consumer handles them in a row
(measured beside upstream pdrecord: `autorec record` 0.33 -> 0.18 CPU s per
45 s, `autorec run` 0.89 -> 0.66). Nothing is lost or reordered: a read
that filled the buffer (a backlog, a fast simulator) is followed at once by
the next, TCP flow control holds the server when the buffer is full, and
websockets' own flow control (its frame queue) still pauses and resumes
reading. The cost is latency: a frame is read up to `read_interval` late,
and its `received`/`monotonic` times, taken when it is handed on, are that late too. A live pipeline
allows for it in its tick lag (`autorec.runs.live`). 0 reads as soon as
data arrives; TLS connections (wss://), and transports other than asyncio's
own (whose read size is not known), are never paced. A stream that runs
faster than real time (the simulator's `--speed`) is read at
`read_interval_at(speed)`: a pause holds a frame at most `MAX_STREAM_DELAY`
(1 s) of its stream time, as the timeline judges a live stamp against the
monotonic time since the last one (times the speed) and takes one more than
5 s ahead for a clock step. `autorec calibrate`, which reports the rig
clock's offset from arrival times, reads unpaced.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
import urllib.parse
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus, InvalidURI
from websockets.protocol import State
from websockets.uri import parse_uri

from autorec import events
from autorec.core.streamitems import Connected, Disconnected, Item, Message

log = logging.getLogger(__name__)

DEFAULT_URI = "ws://localhost:7001"
DEFAULT_MAX_SIZE = 64 * 1024 * 1024
READ_INTERVAL = 0.2  # seconds between socket reads that found little to read (see "Paced reads")
MAX_STREAM_DELAY = 1.0  # stream seconds a paced read may hold a frame of a sped-up stream (see "Paced reads")


@dataclass
class ConnectionGap:
    """A period without a connection (wall-clock seconds); `end` is None while it lasts."""

    start: float
    end: float | None
    cause: str

    @property
    def duration(self) -> float | None:
        return None if self.end is None else self.end - self.start


@dataclass
class SourceStats:
    """Counters of one source. Plain attributes: safe to read from another thread."""

    messages: int = 0  # frames that parsed as PurpleDropEvent
    bytes: int = 0  # payload bytes of those
    rejected: int = 0  # binary frames that did not parse
    rejected_bytes: int = 0
    text_frames: int = 0  # skipped
    connects: int = 0  # successful opening handshakes
    reconnects: int = 0  # connects that ended a gap after data had flowed before
    failed_attempts: int = 0
    reads: int = 0  # reads of the socket (each may bring many frames, or part of one)
    gaps: list[ConnectionGap] = field(default_factory=list)
    connected: bool = False

    @property
    def open_gap(self) -> ConnectionGap | None:
        return self.gaps[-1] if self.gaps and self.gaps[-1].end is None else None


def describe_failure(exc: BaseException) -> str:
    """A short, human cause for a failed or lost connection."""
    if isinstance(exc, ConnectionClosed):
        sent, rcvd = exc.sent, exc.rcvd
        if sent is not None and int(sent.code) not in (1000, 1001) and (rcvd is None or exc.rcvd_then_sent is False):
            # We closed on a protocol problem, e.g. a frame over max_size (1009).
            reason = f": {sent.reason}" if sent.reason else ""
            return f"closed by autorec (code {int(sent.code)}{reason})"
        if rcvd is None:
            return "connection lost (no close frame)"
        reason = f": {rcvd.reason}" if rcvd.reason else ""
        return f"server closed the connection (code {int(rcvd.code)}{reason})"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, (TimeoutError, asyncio.TimeoutError)):
        return "timed out opening the connection"
    if isinstance(exc, InvalidStatus):
        return f"server answered HTTP {exc.response.status_code} instead of a websocket"
    if isinstance(exc, InvalidHandshake):
        return f"websocket handshake failed: {exc}"
    if isinstance(exc, OSError):
        return exc.strerror or str(exc) or type(exc).__name__
    return f"{type(exc).__name__}: {exc}"


def read_interval_at(rate: float) -> float:
    """The read interval for a stream of `rate` stream seconds per real second: `READ_INTERVAL`, or less
    so that a paced read holds a frame at most `MAX_STREAM_DELAY` of stream time. At --speed 100 a 0.2 s
    pause held 20 s of stream: two frames either side of a 12 s quiet stretch taken in one read were
    judged a forward clock step by the timeline (5 s threshold), or the later one an outlier re-stamped
    12 s early."""
    return min(READ_INTERVAL, MAX_STREAM_DELAY / rate) if rate > 0 else READ_INTERVAL


class PacedConnection(ClientConnection):
    """websockets' client connection with paced reads (see "Paced reads" in the module docstring).

    Everything else is websockets' own: the protocol, the frame queue and its flow control,
    keepalive, closing. `stats.reads` counts the socket reads.
    """

    def __init__(self, *args: Any, read_interval: float, stats: SourceStats, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.read_interval = read_interval
        self.stats = stats
        self._held = False  # reading paused by the pacing (not by websockets' flow control)
        self._full_read = 0  # bytes that fill one read of the transport: more is waiting
        self._batch = 0  # bytes read since the last partial read (a partial read ends a run of reads)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        if transport.get_extra_info("sslcontext") is not None:
            self.read_interval = 0.0  # TLS decrypts record by record: pausing between them gains nothing
        # asyncio's socket transports read up to `max_size` bytes at once (256 KiB): a read that size
        # says more is waiting. Another loop's transports (uvloop's, for a script's own loop) read in
        # other sizes; without knowing what fills a read, a pause could hold a backlog: no pacing.
        full_read = getattr(transport, "max_size", None)
        if not isinstance(full_read, int) or full_read <= 0:
            self.read_interval = 0.0
        else:
            self._full_read = full_read
        # websockets resumes reading when its frame queue drains (`Assembler.resume`); during a
        # paced pause that waits for the pause to end, or every batch above the queue's high-water
        # mark would be followed by reads as fast as the frames come.
        queue = self.recv_messages
        drained = queue.resume

        def resume_unless_held() -> None:
            if not self._held:
                drained()

        queue.resume = resume_unless_held

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        self.stats.reads += 1
        if self._held or self.read_interval <= 0:
            return
        self._batch += len(data)
        if len(data) >= self._full_read:
            return  # the read filled asyncio's buffer: more is waiting
        batch, self._batch = self._batch, 0  # a partial read: what was waiting is read
        if self.protocol.state is not State.OPEN:
            return  # closing (the server's close frame came): read the end of the connection as it comes
        if self._nearly_full(batch):
            return
        self._held = True
        self.transport.pause_reading()
        self.loop.call_later(self.read_interval, self._read_again)

    async def close(self, *args: Any, **kwargs: Any) -> None:
        # Closing: the server's close frame and the end of the connection are read as they come.
        self.read_interval = 0.0
        self._read_again()
        await super().close(*args, **kwargs)

    def _nearly_full(self, read: int) -> bool:
        # A run of reads that took half the socket's receive buffer (the kernel's figure, which it
        # doubles for its bookkeeping: so a quarter of it) may have left the server waiting
        # on TCP flow control: read on without a pause until reads are small again, so that a small
        # buffer (an untuned system, a backlog) never makes the pacing fall behind the stream.
        sock = self.transport.get_extra_info("socket")
        if sock is None:
            return False
        try:
            buffer = sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
        except OSError:
            return False
        return read * 4 >= buffer

    def _read_again(self) -> None:
        self._held = False
        # websockets pauses reading itself while its frame queue is above its high-water mark
        # (a slow consumer); it resumes once the queue drains, and that is not overridden here.
        if not getattr(self.recv_messages, "paused", False) and not self.transport.is_closing():
            self.transport.resume_reading()


class WebsocketSource:
    """Reconnecting reader of a PurpleDrop websocket stream. See the module docstring."""

    def __init__(
        self,
        uri: str = DEFAULT_URI,
        *,
        max_size: int = DEFAULT_MAX_SIZE,
        min_backoff: float = 0.1,
        max_backoff: float = 5.0,
        open_timeout: float = 5.0,
        close_timeout: float = 2.0,
        ping_interval: float | None = 10.0,
        ping_timeout: float | None = 20.0,
        read_interval: float = READ_INTERVAL,
    ):
        try:
            parsed = parse_uri(uri)
        except (InvalidURI, ValueError) as exc:  # ValueError: urllib's "Port out of range 0-65535"
            raise ValueError(f"not a websocket URI: {uri!r} ({exc})") from None
        if urllib.parse.urlsplit(uri).port is None:
            # ws://rig is valid but means port 80: say so once, not only "connection refused" for ever.
            log.warning("%s names no port: connecting to port %d (pdserver listens on 7001)", uri, parsed.port)
        if not 0 < min_backoff <= max_backoff:
            raise ValueError("need 0 < min_backoff <= max_backoff")
        if not 0 <= read_interval <= 1:
            raise ValueError(f"read_interval must be 0-1 s, got {read_interval!r}")
        self.uri = uri
        self.max_size = max_size
        self.min_backoff = min_backoff
        self.max_backoff = max_backoff
        self.open_timeout = open_timeout
        self.close_timeout = close_timeout
        self.ping_interval = ping_interval
        self.ping_timeout = ping_timeout
        self.read_interval = read_interval
        self.stats = SourceStats()
        self._ws: ClientConnection | None = None
        self._pending: deque[Item] = deque()
        self._stopping = False
        self._stop_event: asyncio.Event | None = None  # created on the loop, lazily
        self._closing: asyncio.Future[None] | None = None
        self._backoff = min_backoff
        self._retry_at = 0.0  # monotonic time before which no new attempt is made
        self._connected_at = 0.0  # monotonic time of the last connect
        self._had_data = False  # a connection has been made before (for `reconnects`)
        self._got_frame = False  # the current connection has delivered a frame

    # -- iteration ---------------------------------------------------------

    def __aiter__(self) -> AsyncIterator[Item]:
        return self

    async def __anext__(self) -> Item:
        while True:
            if self._pending:
                return self._pending.popleft()
            if self._ws is None:
                if self._stopping:
                    self._end_open_gap(time.time())
                    raise StopAsyncIteration
                await self._connect_or_wait()
                continue
            try:
                data = await self._ws.recv()
            except ConnectionClosed as exc:
                self._ws = None
                self.stats.connected = False
                if not self._stopping:
                    self._lost(describe_failure(exc))
                    self._schedule_retry()
                continue
            if not self._got_frame:
                self._got_frame = True
                self._backoff = self.min_backoff  # the server serves: a drop now is worth a quick retry
            if isinstance(data, str):
                # Not ours (pdserver only sends binary frames): count and skip.
                self.stats.text_frames += 1
                continue
            return self._message(data)

    def _message(self, data: bytes) -> Message:
        received, mono = time.time(), time.monotonic()
        try:
            event = events.decode(data)
        except events.DecodeError as exc:
            self.stats.rejected += 1
            self.stats.rejected_bytes += len(data)
            return Message(data, received, mono, events.peek_kind(data), str(exc), None)
        self.stats.messages += 1
        self.stats.bytes += len(data)
        return Message(data, received, mono, events.kind(event), None, event)

    # -- connection management ----------------------------------------------

    def _event(self) -> asyncio.Event:
        if self._stop_event is None:
            self._stop_event = asyncio.Event()
            if self._stopping:
                self._stop_event.set()
        return self._stop_event

    async def _connect_or_wait(self) -> None:
        """Wait out the backoff of the previous failure, then make one connection attempt.

        A failure opens (or extends) the gap and returns at once, so that the
        `Disconnected` item reaches the consumer before the backoff wait.
        """
        stop = self._event()
        delay = self._retry_at - time.monotonic()
        if delay > 0:
            await self._wait_stop(delay)
            if self._stopping:
                return
        attempt = asyncio.ensure_future(
            connect(
                self.uri,
                max_size=self.max_size,
                compression=None,
                open_timeout=self.open_timeout,
                close_timeout=self.close_timeout,
                ping_interval=self.ping_interval,
                ping_timeout=self.ping_timeout,
                create_connection=self._connection,
            )
        )
        stopper = asyncio.ensure_future(stop.wait())
        try:
            await asyncio.wait({attempt, stopper}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopper.cancel()
        if not attempt.done():
            attempt.cancel()
            await asyncio.gather(attempt, return_exceptions=True)
            return
        exc = attempt.exception()
        if exc is None:
            ws = attempt.result()
            if self._stopping:
                await ws.close()
                return
            self._opened(ws)
            return
        self.stats.failed_attempts += 1
        self._lost(describe_failure(exc))
        self._schedule_retry()

    def _connection(self, *args: Any, **kwargs: Any) -> PacedConnection:
        # websockets' `create_connection` hook: its ClientConnection, with this source's pacing and counters.
        return PacedConnection(*args, read_interval=self.read_interval, stats=self.stats, **kwargs)

    def _schedule_retry(self) -> None:
        self._retry_at = time.monotonic() + self._backoff
        self._backoff = min(self._backoff * 2, self.max_backoff)

    async def _wait_stop(self, delay: float) -> None:
        stopper = asyncio.ensure_future(self._event().wait())
        try:
            await asyncio.wait({stopper}, timeout=delay)
        finally:
            stopper.cancel()

    def _opened(self, ws: ClientConnection) -> None:
        now, mono = time.time(), time.monotonic()
        self._ws = ws
        self._connected_at = mono
        self._got_frame = False
        self.stats.connects += 1
        self.stats.connected = True
        gap = self.stats.open_gap
        if gap is not None:
            gap.end = now
            if self._had_data:
                self.stats.reconnects += 1
            log.info("connected to %s after %.1fs without a connection", self.uri, now - gap.start)
        else:
            log.info("connected to %s", self.uri)
        self._had_data = True
        self._pending.append(Connected(now, mono))

    def _lost(self, cause: str) -> None:
        now, mono = time.time(), time.monotonic()
        if self.stats.open_gap is not None:
            log.debug("still no connection to %s: %s", self.uri, cause)
            return
        if mono - self._connected_at >= self.max_backoff:
            self._backoff = self.min_backoff
        self.stats.gaps.append(ConnectionGap(now, None, cause))
        log.warning("no connection to %s: %s; retrying (backoff up to %gs)", self.uri, cause, self.max_backoff)
        self._pending.append(Disconnected(now, cause, mono))

    def _end_open_gap(self, now: float) -> None:
        gap = self.stats.open_gap
        if gap is not None:
            gap.end = now

    # -- stopping ------------------------------------------------------------

    def stop(self) -> None:
        """Request the end of the iteration (call on the source's loop). Idempotent."""
        if self._stopping:
            return
        self._stopping = True
        if self._stop_event is not None:
            self._stop_event.set()
        if self._ws is not None:
            self._closing = asyncio.ensure_future(self._ws.close())

    async def close(self) -> None:
        """Stop and wait until the connection is closed (at most about `close_timeout`)."""
        self.stop()
        if self._closing is not None:
            await asyncio.gather(self._closing, return_exceptions=True)
        elif self._ws is not None:
            await self._ws.close()
        self.stats.connected = False
        self._end_open_gap(time.time())

    async def __aenter__(self) -> WebsocketSource:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
