"""What keeps the web server from hurting the recorder it runs beside: limits on connections, time and threads.

The web UI runs on the recorder's own event loop (`autorec run --http`), in the
recorder's process: every descriptor, thread and loop turn it takes is one the
recording may need. A network that is hostile (a scan, a flood of idle
connections, a page doing DNS rebinding) must cost the recording nothing.

Contracts:
- `ConnectionGuard` wraps aiohttp's protocol factory. A new connection is
  refused (closed at once with a reset, its descriptor freed; counted in
  `refused[reason]`; logged at most once a minute) when the server already
  holds `max_connections`, when its client address holds `per_address`, or
  when fewer than `fd_reserve` descriptors would stay free below the
  process's RLIMIT_NOFILE (the recorder's own files and sockets come first).
- A connection must complete each request's header block within
  `header_timeout` seconds of connecting or of its previous response (a
  request that never completes is closed, counted in `timeouts`); a request
  body must arrive within `body_timeout` (`read_body`, after the token check).
- `HostCheck` refuses (403) a request whose `Host` names neither the address
  served, a name given with `--http-host-name`, nor (for a loopback server)
  `localhost` (any port: a tunnel or a proxy may change it): a page on another site that rebinds its own name to
  127.0.0.1 reaches the server with its own name in `Host`. Requests that
  may change something (anything but GET, HEAD, OPTIONS) must also carry an
  `Origin` naming an allowed host (a cross-site form post carries its own).
- `WorkerPool` is the web's own bounded pool of daemon threads (never asyncio's
  default executor, which the recorder uses for its host-name lookups): every
  blocking call has a timeout (504 after it) and at most `max_pending` calls
  wait or run at once (503 beyond): a reader blocked on a hung file system
  holds one worker, never the recorder.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import ipaddress
import logging
import os
import queue
import resource
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import urlsplit

from aiohttp import web

from autorec.io.failurelog import FailureLog

log = logging.getLogger(__name__)

T = TypeVar("T")
LOG_EVERY = 60.0  # seconds between two log lines about refused connections
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


@dataclass(frozen=True)
class WebLimits:
    """The web server's limits (see the module docstring); defaults fit a lab's few browsers."""

    max_connections: int = 64
    per_address: int = 16
    header_timeout: float = 10.0
    body_timeout: float = 10.0
    max_body: int = 64 * 1024
    fd_reserve: int = 128
    backlog: int = 16  # also how many connections one loop turn accepts (asyncio): a burst's descriptors
    workers: int = 4
    max_pending: int = 32
    call_timeout: float = 60.0
    send_timeout: float = 30.0  # a client that reads nothing for this long while we write is dropped


def open_descriptors() -> int | None:
    """How many descriptors this process has open (Linux /proc), or None where that cannot be seen."""
    try:
        return len(os.listdir("/proc/self/fd")) - 1  # the listing's own descriptor
    except OSError:
        return None


class ConnectionGuard:
    """A protocol factory admitting connections within the limits. See the module docstring."""

    def __init__(self, factory: Callable[[], asyncio.Protocol], limits: WebLimits) -> None:
        self.factory = factory
        self.limits = limits
        self.open = 0
        self.peak = 0
        self.accepted = 0
        self.by_address: Counter[str] = Counter()
        self.refused: Counter[str] = Counter()
        self.timeouts = 0
        # a refusal is the guard working, not a fault of ours: a warning, with its own running count
        self._refusals = FailureLog(log, every=LOG_EVERY, level=logging.WARNING, count_unsaid=False)
        self._fd_checked_at = -1e9
        self._fd_free = 1 << 30
        self._fd_open_at_check = 0
        self._by_transport: dict[asyncio.BaseTransport, _GuardedProtocol] = {}

    def __call__(self) -> asyncio.Protocol:
        return _GuardedProtocol(self)

    def counters(self) -> dict[str, int]:
        """Flat figures for the status and journal: `web.connections`, `web.refused.<reason>`, ..."""
        out = {"web.connections": self.open, "web.connections_peak": self.peak, "web.accepted": self.accepted}
        out["web.header_timeouts"] = self.timeouts
        for reason, n in sorted(self.refused.items()):
            out[f"web.refused.{reason}"] = n
        return out

    # -- admission -----------------------------------------------------------------------------
    def _free_descriptors(self) -> int:
        """Descriptors still free under the soft limit, measured at most once a second (one
        directory listing) and estimated from our own connections in between."""
        now = time.monotonic()
        if now - self._fd_checked_at >= 1.0:
            self._fd_checked_at = now
            used = open_descriptors()
            soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
            unlimited = used is None or soft == resource.RLIM_INFINITY
            self._fd_free = 1 << 30 if unlimited else soft - used
            self._fd_open_at_check = self.open
        return self._fd_free - (self.open - self._fd_open_at_check)

    def admit(self, address: str) -> str | None:
        """None to admit a connection from `address`, else the reason to refuse it."""
        if self.open >= self.limits.max_connections:
            return "connections"
        if self.by_address[address] >= self.limits.per_address:
            return "per_address"
        if self._free_descriptors() < self.limits.fd_reserve:
            return "descriptors"
        return None

    def opened(self, proto: _GuardedProtocol, address: str) -> None:
        self.open += 1
        self.accepted += 1
        self.peak = max(self.peak, self.open)
        self.by_address[address] += 1
        if proto.transport is not None:
            self._by_transport[proto.transport] = proto

    def closed(self, proto: _GuardedProtocol, address: str) -> None:
        self.open -= 1
        self.by_address[address] -= 1
        if self.by_address[address] <= 0:
            del self.by_address[address]
        if proto.transport is not None:
            self._by_transport.pop(proto.transport, None)

    def refuse(self, reason: str, address: str) -> None:
        self.refused[reason] += 1
        self._refusals.failed(
            "web UI: refusing connections (%s, last from %s; %d refused so far, %d held): the recording "
            "goes on; repeats logged at most once a minute",
            _REASONS[reason],
            address,
            sum(self.refused.values()),
            self.open,
        )

    def request_done(self, transport: asyncio.BaseTransport | None) -> None:
        """A response was handed over: the connection has `header_timeout` for its next request's headers."""
        proto = self._by_transport.get(transport) if transport is not None else None
        if proto is not None:
            proto.await_headers()


_REASONS = {
    "connections": "the cap on open connections",
    "per_address": "the cap on connections from one address",
    "descriptors": "descriptors are kept for the recorder",
}


class _GuardedProtocol(asyncio.Protocol):
    """aiohttp's request handler behind the guard's admission and header timeout."""

    def __init__(self, guard: ConnectionGuard) -> None:
        self.guard = guard
        self.inner: Any = None
        self.transport: asyncio.Transport | None = None
        self.address = "?"
        self._timer: asyncio.TimerHandle | None = None
        self._tail = b""
        self._awaiting = False
        self._late = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        peer = transport.get_extra_info("peername")
        self.address = str(peer[0]) if isinstance(peer, tuple) and peer else "?"
        reason = self.guard.admit(self.address)
        if reason is not None:
            self.guard.refuse(reason, self.address)
            transport.abort()  # a reset: the descriptor is free now, not after a close handshake
            return
        self.transport = transport  # type: ignore[assignment]
        self.guard.opened(self, self.address)
        self.inner = self.guard.factory()
        self.inner.connection_made(transport)
        self.await_headers()

    def await_headers(self) -> None:
        self._cancel_timer()
        self._awaiting = True
        self._late = 0
        self._tail = b""
        loop = asyncio.get_running_loop()
        self._timer = loop.call_later(self.guard.limits.header_timeout, self._headers_late)

    def _headers_late(self) -> None:
        self._timer = None
        if not self._awaiting or self.transport is None:
            return
        sending = self.transport.get_write_buffer_size() > 0
        self._late += 1
        if sending and self._late * self.guard.limits.header_timeout < self.guard.limits.send_timeout:
            # the client is still taking the last response: that is not an idle connection (yet)
            loop = asyncio.get_running_loop()
            self._timer = loop.call_later(self.guard.limits.header_timeout, self._headers_late)
            return
        self.guard.timeouts += 1
        self.transport.abort()

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def data_received(self, data: bytes) -> None:
        if self.inner is None:
            return
        if self._awaiting:
            seen = self._tail + data[:4096] if len(data) > 4096 else self._tail + data
            if b"\r\n\r\n" in seen or b"\r\n\r\n" in data:
                self._awaiting = False
                self._cancel_timer()
            self._tail = (self._tail + data[-3:])[-3:]
        self.inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self.inner.eof_received() if self.inner is not None else None

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_timer()
        if self.inner is None:
            return
        self.guard.closed(self, self.address)
        self.inner.connection_lost(exc)
        self.transport = None

    def pause_writing(self) -> None:
        if self.inner is not None:
            self.inner.pause_writing()

    def resume_writing(self) -> None:
        if self.inner is not None:
            self.inner.resume_writing()


class _QuietClientErrors(logging.Filter):
    """aiohttp logs every malformed request with a traceback: from a hostile client that is a flood. A bad
    request becomes one line without traceback, and any one kind of message at most once a minute."""

    def __init__(self) -> None:
        super().__init__()
        self._last: dict[str, float] = {}
        self.suppressed = 0

    def filter(self, record: logging.LogRecord) -> bool:
        from aiohttp.http_exceptions import HttpProcessingError

        exc = record.exc_info[1] if record.exc_info else None
        key = type(exc).__name__ if exc is not None else str(record.msg)
        now = time.monotonic()
        if now - self._last.get(key, -LOG_EVERY) < LOG_EVERY:
            self.suppressed += 1
            return False
        self._last[key] = now
        if isinstance(exc, HttpProcessingError):  # the client's fault: no traceback of ours to show
            record.msg = f"web UI: a bad request refused ({exc.code}: {exc.message}); repeats logged once a minute"
            record.args = ()
            record.exc_info = None
            record.exc_text = None
            record.levelno, record.levelname = logging.INFO, "INFO"
        return True


HTTP_LOG = logging.getLogger("autorec.web.http")
HTTP_LOG.addFilter(_QuietClientErrors())


class _QuietAcceptErrors(logging.Filter):
    """asyncio logs a traceback each time `accept()` finds no descriptor (and retries a second later): the
    recorder's log must not fill with them. One line a minute, without the traceback."""

    def __init__(self) -> None:
        super().__init__()
        self._last = -LOG_EVERY
        self.suppressed = 0

    def filter(self, record: logging.LogRecord) -> bool:
        if "accept" not in str(record.msg):
            return True
        now = time.monotonic()
        if now - self._last < LOG_EVERY:
            self.suppressed += 1
            return False
        self._last = now
        record.msg = "web UI: no descriptor free to accept a connection (the process is at its limit); retrying"
        record.args = ()
        record.exc_info = None
        record.exc_text = None
        return True


ACCEPT_ERRORS = _QuietAcceptErrors()
logging.getLogger("asyncio").addFilter(ACCEPT_ERRORS)


# -- Host and Origin ------------------------------------------------------------------------------


def _split_host(value: str) -> tuple[str, int | None] | None:
    """`name`, `name:port`, `[v6]:port` -> (lower-case host, port or None); None if malformed."""
    try:
        parts = urlsplit("//" + value.strip())
        host, port = parts.hostname, parts.port
    except ValueError:
        return None
    if not host or parts.username is not None or parts.path or parts.query:
        return None
    return host.lower().rstrip("."), port


class HostCheck:
    """Which `Host` (and `Origin`) a request may name. See the module docstring.

    `bound`: the address listened on; `port`: the port really served; `names`: extra host names
    users reach the server by (`--http-host-name`, e.g. the lab PC's name behind a proxy); `fqdn`:
    this computer's full DNS name (its short name is always allowed).
    """

    def __init__(self, bound: str, port: int, names: Iterable[str] = (), fqdn: str | None = None) -> None:
        self.port = port
        self.wildcard = bound in ("", "0.0.0.0", "::")
        allowed = {bound.lower().strip("[]")} | {n.lower().rstrip(".") for n in names if n}
        try:
            loopback = ipaddress.ip_address(bound.strip("[]")).is_loopback
        except ValueError:
            loopback = bound in ("localhost",)
        if loopback or self.wildcard:
            allowed |= {"localhost", "127.0.0.1", "::1"}
        # This computer's own names (a rebinding page cannot put them in Host); `fqdn` is looked up by the
        # caller off the event loop, with a timeout (DNS may hang).
        allowed |= {n.lower().rstrip(".") for n in (socket.gethostname(), fqdn) if n}
        self.allowed = frozenset(allowed)
        self.refused = 0

    def host_ok(self, value: str | None) -> bool:
        if not value:
            return False
        split = _split_host(value)
        if split is None:
            return False
        host, _port = split
        # The name is what a rebinding page cannot fake (its own name is in Host); the port is not checked:
        # an SSH tunnel or a proxy (`ssh -L 9000:localhost:8080`) reaches the server under another one.
        if host in self.allowed:
            return True
        if self.wildcard:
            try:
                ipaddress.ip_address(host)
                return True
            except ValueError:
                return False
        return False

    def origin_ok(self, origin: str | None, host: str | None) -> bool:
        """Whether `origin` is the page's own: the origin of the `Host` the request was sent to (same name,
        same port), that Host being one this server answers to. A page on another port is another origin."""
        if not origin or origin == "null" or not self.host_ok(host):
            return False
        try:
            parts = urlsplit(origin)
            origin_port = parts.port
        except ValueError:
            return False
        if parts.scheme not in ("http", "https") or not parts.hostname:
            return False
        split = _split_host(host or "")
        if split is None:
            return False
        default = 443 if parts.scheme == "https" else 80
        return (parts.hostname.lower().rstrip("."), origin_port or default) == (split[0], split[1] or default)

    def refusal(self, request: web.Request) -> str | None:
        """None for a request that may go on, else why not (one line): a `Host` this server does not answer
        to, or a change (not GET, HEAD, OPTIONS) without this server's `Origin`."""
        host = request.headers.get("Host")
        if not self.host_ok(host):
            return f"Host {host!r} is not this server (start it with --http-host-name NAME to allow a name)"
        if request.method not in SAFE_METHODS and not self.origin_ok(request.headers.get("Origin"), host):
            return f"Origin {request.headers.get('Origin')!r} is not this server's"
        return None


# -- threads --------------------------------------------------------------------------------------


class WorkerPool:
    """The web's own threads for blocking calls. See the module docstring.

    A fixed set of `limits.workers` daemon threads (not a ThreadPoolExecutor: Python joins those at exit,
    so one read stuck on a hung network file system would keep SIGTERM from ending the recorder).
    """

    def __init__(self, limits: WebLimits) -> None:
        self.limits = limits
        self._jobs: queue.SimpleQueue = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []
        self._stopped = False
        self.pending = 0
        self.timeouts = 0
        self.busy_refusals = 0

    def _work(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            future, fn, args = job
            if not future.set_running_or_notify_cancel():
                continue
            try:
                future.set_result(fn(*args))
            except BaseException as exc:
                future.set_exception(exc)

    def _submit(self, fn: Callable[..., T], args: tuple) -> concurrent.futures.Future:
        if self._stopped:
            raise RuntimeError("stopped")
        if len(self._threads) < self.limits.workers:  # started as needed, up to the bound
            thread = threading.Thread(target=self._work, name=f"autorec-web-{len(self._threads)}", daemon=True)
            thread.start()
            self._threads.append(thread)
        future: concurrent.futures.Future = concurrent.futures.Future()
        self._jobs.put((future, fn, args))
        return future

    async def call(self, fn: Callable[..., T], *args: Any, timeout: float | None = None) -> T:
        """`fn(*args)` in a worker; HTTP 503 when too many calls wait, 504 after the timeout."""
        if self.pending >= self.limits.max_pending:
            self.busy_refusals += 1
            raise web.HTTPServiceUnavailable(text="autorec: the web UI is busy; try again\n")
        loop = asyncio.get_running_loop()
        try:
            future = self._submit(fn, args)
        except RuntimeError:  # shut down
            raise web.HTTPServiceUnavailable(text="autorec: the web UI is stopping\n") from None
        self.pending += 1

        def done(_: concurrent.futures.Future) -> None:
            # counted until the thread really finishes: a call stuck on a hung file system still holds its worker
            try:
                loop.call_soon_threadsafe(self._finished)
            except RuntimeError:  # the loop is closed: nobody counts any more
                pass

        future.add_done_callback(done)
        limit = timeout or self.limits.call_timeout
        try:
            return await asyncio.wait_for(asyncio.wrap_future(future), limit)
        except asyncio.TimeoutError:
            self.timeouts += 1
            log.warning("web UI: %s took longer than %.0f s; answered 504", getattr(fn, "__name__", fn), limit)
            raise web.HTTPGatewayTimeout(text="autorec: reading the directory took too long\n") from None

    def _finished(self) -> None:
        self.pending -= 1

    def shutdown(self) -> None:
        """Stop taking calls; idle workers end, a worker stuck in a call is left to the process's exit."""
        self._stopped = True
        for _ in self._threads:
            self._jobs.put(None)
