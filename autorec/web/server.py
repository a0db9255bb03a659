"""The read-only web UI: aiohttp on the recorder's event loop (`run --http`) or on its own (`serve DIR`).

Pages: `/` (live), `/night` (the report's timeline, plots and cards, with new
segments added as they close), `/segment/NAME` (one segment: its sidecar in
words, telemetry plots of its span, its camera frames played in the browser).
JSON API under `/api/` (documented in the README); downloads under `/files/`.

Contracts:
- Read-only: only GET (and HEAD) routes exist; anything else is 405. No
  request writes a file or changes the recorder.
- No path from a URL reaches the file system: a segment is looked up by name
  in `index.jsonl`, and only its own files (`.bin`, `.json`, `.mp4`, `.mkv`)
  are served, opened with O_NOFOLLOW (a symlink planted in the directory is a
  404). Static files come from the package's own folders through aiohttp's
  static route, which refuses `..` and symlinks.
- Token: when a token is set (always when listening beyond loopback), every
  request must carry it (`?token=`, then a cookie; or `Authorization: Bearer`);
  without it: 401, before any other work (a request body is read only after).
- Limits (`autorec.web.guard`): caps on connections overall and per client
  address, descriptors kept for the recorder, header and body timeouts, a
  `Host` the server answers to (DNS rebinding) and an `Origin` on changes.
- Serving never blocks the recorder: file reads, JPEG work and page rendering
  run in the web's own bounded worker pool (`guard.WorkerPool`, never the
  loop's default executor), each call with a timeout; event streams read
  per-browser bounded queues (`autorec.web.feed`); a client that stops
  reading while we write is dropped after `send_timeout`. Only regular files
  are opened for serving (a FIFO or a device planted under a segment's name
  is a 404, and never blocks a worker).
"""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
import logging
import os
import secrets
import urllib.parse
from collections import OrderedDict
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from aiohttp import web

from autorec.extras import install_hint
from autorec.io.atomicfile import dumps
from autorec.io.boundedread import open_regular
from autorec.outdir import INDEX_NAME, JOURNAL_NAME
from autorec.web.feed import Feed
from autorec.web.guard import HTTP_LOG, ConnectionGuard, HostCheck, WebLimits, WorkerPool

log = logging.getLogger(__name__)

STATIC = Path(__file__).with_name("static")
TOKEN_COOKIE = "autorec_token"
SSE_KEEPALIVE = 15.0


def is_loopback(host: str) -> bool:
    if host in ("localhost", ""):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def parse_listen(text: str, default_host: str = "127.0.0.1") -> tuple[str, int]:
    """`PORT`, `HOST:PORT` or `[V6]:PORT` -> (host, port); ValueError with a readable message."""
    text = text.strip()
    host, sep, port_text = text.rpartition(":")
    if not sep:
        host, port_text = default_host, text
    host = host.strip("[]") or default_host
    try:
        port = int(port_text)
    except ValueError:
        raise ValueError(f"{text!r}: expected PORT or HOST:PORT (e.g. 8080 or 0.0.0.0:8080)") from None
    if not 0 <= port <= 65535:
        raise ValueError(f"{text!r}: port must be 0-65535")
    return host, port


def new_token() -> str:
    return secrets.token_urlsafe(18)


class _SegmentIndex:
    """The directory's segments by name, re-read when index.jsonl changes (size or mtime)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._key: tuple | None = None
        self.night: Any = None
        self._sidecars: dict = {}  # sidecars read, by path, with the stat they were read at

    def _stat_key(self) -> tuple:
        try:
            st = (self.directory / INDEX_NAME).stat()
            return (st.st_ino, st.st_size, st.st_mtime_ns)
        except OSError:
            return (0, 0, 0)

    def load(self):
        from autorec.report.night import load_night

        key = self._stat_key()
        if key != self._key or self.night is None:
            self.night = load_night(self.directory, sidecar_cache=self._sidecars)
            if len(self._sidecars) > 4 * len(self.night.segments) + 64:  # segments removed by retention
                self._sidecars.clear()
            self._key = key
        return self.night

    def find(self, name: str):
        night = self.load()
        for i, seg in enumerate(night.segments):
            if seg.name == name:
                return i, seg
        return None, None


class WebUI:
    """The aiohttp application around one output directory and one feed."""

    def __init__(
        self,
        directory: str | os.PathLike[str],
        feed: Feed,
        token: str | None = None,
        warm_night: bool = True,
        limits: WebLimits | None = None,
        host_names: Iterable[str] = (),
    ) -> None:
        self.directory = Path(directory)
        self.feed = feed
        self.token = token
        self.limits = limits or WebLimits()
        self.host_names = tuple(host_names)
        self.pool = WorkerPool(self.limits)
        # set by `start_server` (they need the real address): without them (aiohttp's test client) no caps
        self.guard: ConnectionGuard | None = None
        self.host_check: HostCheck | None = None
        self.unauthorized = 0
        self.body_timeouts = 0
        self.index = _SegmentIndex(self.directory)
        self._frames: OrderedDict[str, list[tuple[float, int, int]]] = OrderedDict()
        self._strips: OrderedDict[str, str] = OrderedDict()
        self._night_page: tuple[tuple, str] | None = None
        self._night_lock = asyncio.Lock()
        self.requests = 0
        # Render the night page ahead of the first visit (`serve`). Not beside a recorder (`run --http`):
        # importing Bokeh and reading the telemetry would cost the recording CPU for a page nobody asked for.
        self.warm_night = warm_night
        self._feed_task: asyncio.Future | None = None
        self._warm_task: asyncio.Future | None = None
        self.app = self._make_app()

    # -- app -------------------------------------------------------------------------------------
    def _make_app(self) -> web.Application:
        app = web.Application(middlewares=[self._gate, self._auth, self._body], client_max_size=self.limits.max_body)
        get = app.router.add_get
        get("/", self.live_page)
        get("/night", self.night_page)
        get("/segment/{name}", self.segment_page)
        get("/api/status", self.api_status)
        get("/api/segments", self.api_segments)
        get("/api/segments/{name}", self.api_segment)
        get("/api/segments/{name}/frames", self.api_frames)
        get("/api/segments/{name}/frames/{i}", self.api_frame)
        get("/api/segments/{name}/strip", self.api_strip)
        get("/api/segments/{name}/card", self.api_card)
        get("/api/scores", self.api_scores)
        get("/api/events", self.api_events)
        get("/api/frame/latest", self.api_latest_frame)
        get("/files/{name}", self.files)
        get("/favicon.ico", self.favicon)
        app.router.add_static("/ui/", STATIC, follow_symlinks=False)
        try:
            from bokeh.util.paths import bokehjs_path

            app.router.add_static("/static/", bokehjs_path(), follow_symlinks=False)
        except ImportError:
            pass  # no Bokeh: the night and segment pages say what to install
        app.on_startup.append(self._start_feed)
        app.on_cleanup.append(self._stop_feed)
        return app

    async def _start_feed(self, app: web.Application) -> None:
        # a feed that polls (DirectoryFeed) runs as long as the server does
        run = getattr(self.feed, "run", None)
        self._feed_task = asyncio.ensure_future(run()) if run is not None else None
        if self.warm_night:
            self._warm_task = asyncio.ensure_future(self._render_night())  # the night page ready before it is asked

    async def _stop_feed(self, app: web.Application) -> None:
        if self._feed_task is not None:
            self._feed_task.cancel()
        if self._warm_task is not None:
            self._warm_task.cancel()
        self.pool.shutdown()

    def counters(self) -> dict[str, int]:
        """The web server's figures (connections held, refused by reason, timeouts), for the recorder's counters."""
        out = self.guard.counters() if self.guard is not None else {}
        out["web.requests"] = self.requests
        out["web.refused.host"] = self.host_check.refused if self.host_check is not None else 0
        out["web.refused.token"] = self.unauthorized
        out["web.body_timeouts"] = self.body_timeouts
        out["web.call_timeouts"] = self.pool.timeouts
        out["web.busy"] = self.pool.busy_refusals
        return out

    async def favicon(self, request: web.Request) -> web.Response:
        return web.Response(status=204)  # browsers ask for one; nothing to show

    @web.middleware
    async def _gate(self, request: web.Request, handler):
        """Host and Origin first; when the response is handed over, the connection's next header timeout."""
        try:
            if self.host_check is not None:
                refused = self.host_check.check(request)
                if refused is not None:
                    refused.force_close()
                    return refused
            return await handler(request)
        finally:
            if self.guard is not None:
                self.guard.request_done(request.transport)

    @web.middleware
    async def _body(self, request: web.Request, handler):
        """A request body (after the token check) arrives whole within the body timeout, or 408."""
        if request.body_exists:
            if (request.content_length or 0) > self.limits.max_body:  # said up front: not waited for
                response = web.Response(status=413, text="autorec: request body too large\n")
                response.force_close()
                return response
            try:
                await asyncio.wait_for(request.read(), self.limits.body_timeout)
            except asyncio.TimeoutError:
                self.body_timeouts += 1
                response = web.Response(status=408, text="autorec: the request body did not arrive in time\n")
                response.force_close()
                return response
        return await handler(request)

    @web.middleware
    async def _auth(self, request: web.Request, handler):
        self.requests += 1
        if self.token is not None:
            given = request.query.get("token") or request.cookies.get(TOKEN_COOKIE)
            auth = request.headers.get("Authorization", "")
            if auth.startswith("Bearer "):
                given = auth[7:]
            if not given or not hmac.compare_digest(given.encode(), self.token.encode()):
                self.unauthorized += 1
                return web.Response(
                    status=401, text="autorec: a token is required (?token=... from the recorder's log)\n"
                )
            response = await handler(request)
            if request.query.get("token") and isinstance(response, web.Response):
                response.set_cookie(TOKEN_COOKIE, self.token, httponly=True, samesite="Strict")
            return response
        return await handler(request)

    # -- helpers ---------------------------------------------------------------------------------
    async def _in_thread(self, fn, *args):
        return await self.pool.call(fn, *args)

    async def _send(self, response: web.StreamResponse, data: bytes) -> None:
        """Write to a client that must keep reading: one that stalls for `send_timeout` is dropped."""
        try:
            await asyncio.wait_for(response.write(data), self.limits.send_timeout)
        except asyncio.TimeoutError:
            raise ConnectionResetError("the client stopped reading") from None

    async def _segment(self, request: web.Request):
        index, seg = await self._in_thread(self.index.find, request.match_info["name"])
        if seg is None:
            raise web.HTTPNotFound(text="no such segment in index.jsonl\n")
        return index, seg

    @staticmethod
    def _json(data: Any, status: int = 200) -> web.Response:
        return web.Response(
            text=dumps(data, separators=(",", ":"), default=str),  # a NaN from a damaged file is null
            content_type="application/json",
            status=status,
            headers={"Cache-Control": "no-store"},
        )

    # -- pages -----------------------------------------------------------------------------------
    async def live_page(self, request: web.Request) -> web.Response:
        from autorec.web.pages import live_page

        return web.Response(text=live_page(self.directory), content_type="text/html")

    def _night_key(self) -> tuple:
        key = []
        for name in (INDEX_NAME, JOURNAL_NAME):
            try:
                st = (self.directory / name).stat()
                key.append((st.st_size, st.st_mtime_ns))
            except OSError:
                key.append(None)
        return tuple(key)

    async def _render_night(self) -> str | None:
        """Render the night page into the cache (one render at a time); None without Bokeh."""
        from autorec.web.pages import night_page

        async with self._night_lock:
            key = self._night_key()
            if self._night_page is not None and self._night_page[0] == key:
                return self._night_page[1]
            try:
                html = await self._in_thread(night_page, self.directory)
            except ImportError:
                return None
            self._night_page = (key, html)
            return html

    async def night_page(self, request: web.Request) -> web.Response:
        # A big night takes seconds to render (its telemetry is read whole), so a page rendered before is
        # served at once and refreshed behind it: the page's script adds any segment it lacks.
        if self._night_page is not None:
            if self._night_page[0] != self._night_key() and not self._night_lock.locked():
                self._warm_task = asyncio.ensure_future(self._render_night())
            return web.Response(text=self._night_page[1], content_type="text/html")
        html = await self._render_night()
        if html is None:
            return web.Response(status=501, text=f"the night page needs the 'web' extra: {install_hint('web')}\n")
        return web.Response(text=html, content_type="text/html")

    async def segment_page(self, request: web.Request) -> web.Response:
        from autorec.web.pages import segment_page

        index, seg = await self._segment(request)
        night = self.index.night
        prev_seg = night.segments[index - 1] if index > 0 else None
        next_seg = night.segments[index + 1] if index + 1 < len(night.segments) else None
        try:
            html = await self._in_thread(segment_page, self.directory, night, seg, prev_seg, next_seg)
        except ImportError:
            return web.Response(status=501, text=f"the segment page needs the 'web' extra: {install_hint('web')}\n")
        return web.Response(text=html, content_type="text/html")

    # -- API -------------------------------------------------------------------------------------
    async def api_status(self, request: web.Request) -> web.Response:
        return self._json({**self.feed.status(), "web": self.counters()})

    async def api_segments(self, request: web.Request) -> web.Response:
        night = await self._in_thread(self.index.load)
        rows = [s.row() for s in night.segments]
        for row in rows:
            row["path"] = os.path.basename(row["path"])
            row["videos"] = [os.path.basename(v) for v in row["videos"]]
        return self._json({"segments": rows, "problems": night.problems})

    async def api_segment(self, request: web.Request) -> web.Response:
        _, seg = await self._segment(request)
        row = seg.row()
        row["path"] = seg.path.name
        row["videos"] = [v.name for v in seg.videos]
        return self._json({"segment": row, "sidecar": seg.sidecar})

    async def _frame_index(self, seg) -> list[tuple[float, int, int]]:
        from autorec.media.thumbnails import Strip, frame_index

        frames = self._frames.get(seg.name)
        if frames is None:
            try:
                frames = await self._in_thread(frame_index, seg.path, Strip())
            except OSError:
                frames = []
            frames.sort(key=lambda f: f[0])
            self._frames[seg.name] = frames
            while len(self._frames) > 16:
                self._frames.popitem(last=False)
        return frames

    async def api_frames(self, request: web.Request) -> web.Response:
        _, seg = await self._segment(request)
        frames = await self._frame_index(seg)
        return self._json({"name": seg.name, "frames": [{"i": i, "t": t} for i, (t, _, _) in enumerate(frames)]})

    async def api_frame(self, request: web.Request) -> web.Response:
        _, seg = await self._segment(request)
        frames = await self._frame_index(seg)
        try:
            i = int(request.match_info["i"])
        except ValueError:
            raise web.HTTPNotFound() from None
        if not 0 <= i < len(frames):
            raise web.HTTPNotFound(text="no such frame\n")
        _, offset, length = frames[i]

        def read() -> bytes | None:
            from autorec.media.thumbnails import _usable, read_frame

            jpeg = read_frame(seg.path, offset, length)
            return jpeg if jpeg is not None and _usable(jpeg) is not None else None

        try:
            jpeg = await self._in_thread(read)
        except OSError:
            raise web.HTTPNotFound() from None
        if jpeg is None:
            raise web.HTTPUnprocessableEntity(text="this frame is damaged or too large to show\n")
        return web.Response(body=jpeg, content_type="image/jpeg", headers={"Cache-Control": "max-age=3600"})

    async def api_strip(self, request: web.Request) -> web.Response:
        from autorec.media.thumbnails import Thumbnailer, contact_strip
        from autorec.report.page import THUMB_QUALITY, THUMB_WIDTH, _bbox, strip_html

        _, seg = await self._segment(request)
        html = self._strips.get(seg.name)
        if html is None:
            firings = seg.firings
            first = next((f for f in firings if _bbox(f) is not None), firings[0] if firings else None)

            def make() -> str:
                strip = contact_strip(
                    seg.path,
                    seg.start,
                    seg.end,
                    5,
                    first["time"] if first else None,
                    _bbox(first) if first else None,
                    THUMB_WIDTH,
                    Thumbnailer(THUMB_WIDTH, THUMB_QUALITY),
                )
                return strip_html(strip, seg)

            html = await self._in_thread(make)
            self._strips[seg.name] = html
            while len(self._strips) > 256:
                self._strips.popitem(last=False)
        return web.Response(text=html, content_type="text/html")

    async def api_card(self, request: web.Request) -> web.Response:
        from autorec.web.pages import card_json

        index, seg = await self._segment(request)
        return self._json(card_json(index, seg, self.index.night))

    async def api_scores(self, request: web.Request) -> web.Response:
        status = self.feed.status()
        return self._json({"scores": status.get("scores") or {}})

    async def api_latest_frame(self, request: web.Request) -> web.Response:
        latest = self.feed.latest_frame()
        if latest is None:
            raise web.HTTPNotFound(text="no camera frame yet\n")
        seq, t, jpeg = latest
        return web.Response(
            body=jpeg,
            content_type="image/jpeg",
            headers={"Cache-Control": "no-store", "X-Frame-Seq": str(seq), "X-Frame-Time": repr(t)},
        )

    async def api_events(self, request: web.Request) -> web.StreamResponse:
        sub = self.feed.subscribe()
        if sub is None:
            return web.Response(status=503, text="too many browsers connected\n")
        response = web.StreamResponse(
            headers={"Content-Type": "text/event-stream", "Cache-Control": "no-store", "X-Accel-Buffering": "no"}
        )
        try:
            await response.prepare(request)
            await self._send(response, self._sse("status", self.feed.status()))
            while True:
                try:
                    name, data = await asyncio.wait_for(sub.queue.get(), SSE_KEEPALIVE)
                except asyncio.TimeoutError:
                    await self._send(response, b": keepalive\n\n")
                    continue
                await self._send(response, self._sse(name, data))
        except (ConnectionResetError, asyncio.CancelledError):
            pass
        finally:
            self.feed.unsubscribe(sub)
        return response

    @staticmethod
    def _sse(name: str, data: Any) -> bytes:
        return f"event: {name}\ndata: {dumps(data, separators=(',', ':'), default=str)}\n\n".encode()

    async def files(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        night = await self._in_thread(self.index.load)
        allowed: dict[str, Path] = {}
        for seg in night.segments:
            for p in (seg.path, seg.sidecar_path, *seg.videos):
                allowed[p.name] = p
        path = allowed.get(name)
        if path is None:
            raise web.HTTPNotFound(text="not a file of a segment in index.jsonl\n")
        try:
            f = await self._in_thread(open_regular, path)  # a FIFO, a device, a link: 404, never a blocked worker
        except OSError:
            raise web.HTTPNotFound(text="not available\n") from None
        with f:
            fd = f.fileno()
            size = os.fstat(fd).st_size
            types = {".bin": "application/octet-stream", ".json": "application/json", ".mp4": "video/mp4"}
            response = web.StreamResponse(
                headers={
                    "Content-Type": types.get(path.suffix, "video/x-matroska"),
                    "Content-Length": str(size),
                    # any name the index holds, quoted (a quote or a line break in it cannot reach the header)
                    "Content-Disposition": f"attachment; filename*=UTF-8''{urllib.parse.quote(path.name)}"
                    if path.suffix == ".bin"
                    else "inline",
                }
            )
            try:
                await response.prepare(request)
                offset = 0
                while offset < size:
                    chunk = await self._in_thread(os.pread, fd, min(1 << 20, size - offset), offset)
                    if not chunk:
                        break  # the file shrank meanwhile: the client sees a short download
                    await self._send(response, chunk)
                    offset += len(chunk)
                await response.write_eof()
            except ConnectionResetError:  # the client left (or stopped reading): nothing to say about it
                pass
            return response


class _GuardedSite(web.TCPSite):
    """aiohttp's TCP site with every connection admitted by a `ConnectionGuard` first."""

    def __init__(self, runner: web.AppRunner, host: str, port: int, guard: ConnectionGuard) -> None:
        super().__init__(runner, host, port, backlog=guard.limits.backlog)
        self._guard = guard

    async def start(self) -> None:
        await web.BaseSite.start(self)
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            self._guard, self._host, self._port, backlog=self._backlog, reuse_address=self._reuse_address
        )


async def start_server(ui: WebUI, host: str, port: int) -> tuple[web.AppRunner, str]:
    """Start serving `ui` on host:port; returns the runner (to `cleanup()`) and the base URL."""
    runner = web.AppRunner(ui.app, access_log=None, shutdown_timeout=1.0, logger=HTTP_LOG)
    await runner.setup()
    assert runner.server is not None
    ui.guard = ConnectionGuard(runner.server, ui.limits)
    site = _GuardedSite(runner, host, port, ui.guard)
    await site.start()
    sockets = site._server.sockets if site._server is not None else []  # the real port when 0 was asked
    real_port = sockets[0].getsockname()[1] if sockets else port
    ui.host_check = HostCheck(host, real_port, ui.host_names)
    shown = f"[{host}]" if ":" in host else host
    return runner, f"http://{shown}:{real_port}/"


def describe_url(base: str, token: str | None) -> str:
    return base + (f"?token={token}" if token else "")


def resolve_token(host: str, token: str | None) -> tuple[str | None, bool]:
    """The token to require, and whether it was generated here (to be printed once).

    Loopback: none unless one is given. Any other address: the given one, or a new random one.
    """
    if token:
        return token, False
    if is_loopback(host):
        return None, False
    return new_token(), True


def live_companion(out: Path, host: str, port: int, token: str | None, generated: bool, names: Iterable[str] = ()):
    """The web UI of `run --http` as a companion of the live run (`autorec.runs.live.Companion`):
    served on the run's own event loop from its start to its end. A port that cannot be bound is
    logged and the recording goes on without the UI."""
    import contextlib

    from autorec.web.feed import LiveFeed

    @contextlib.asynccontextmanager
    async def companion(services):
        feed = services.web_feed(LiveFeed)
        feed.loop = asyncio.get_running_loop()
        runner = None
        ui = WebUI(out, feed, token, warm_night=False, host_names=names)
        try:
            runner, base = await start_server(ui, host, port)
        except OSError as exc:
            log.error("web UI: cannot listen on %s:%d: %s (recording goes on without it)", host, port, exc.strerror)
        else:
            log.info("web UI at %s", describe_url(base, token if generated else None))
            services.web_counters = ui.counters  # connections refused, timeouts: in the status file and journal
        try:
            yield
        finally:
            if runner is not None:
                await runner.cleanup()

    return companion
