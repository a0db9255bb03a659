"""The read-only web UI: aiohttp on the recorder's event loop (`run --http`) or on its own (`serve DIR`).

Pages: `/` (live), `/night` (the report's timeline, plots and cards, with new
segments added as they close), `/segment/NAME` (one segment: its sidecar in
words, telemetry plots of its span, its camera frames played in the browser).
JSON API under `/api/` (documented in the README); downloads under `/files/`; Prometheus
metrics at `/metrics` (docs/how-to/metrics.md: the recorder's own with `run --http`, the directory's
status file with `serve`).

Contracts:
- Read-only but for the review and MCAP exports: besides GET (and HEAD), only two POSTs exist,
  `/api/reviewed` (append a "reviewed" mark to `reviewed.jsonl`,
  `autorec.web.reviewed`) and `/api/export` (cut a span into `exports/`,
  `autorec.web.exportjob`). Both pass `_write_refusal`: the request's `Host`
  must name this server (its address, or localhost on loopback, or this
  computer's name, with its port) and its `Origin` must be that same origin;
  off loopback the token is required (the auth middleware). Anything else is
  a 403, counted in `writes_refused`. No request changes the recorder or a
  recording. The one file a GET may write is a segment's MCAP export
  (`/files/NAME.mcap`, beside the segment as `autorec export --mcap` and
  `output.mcap` put it): made on the first request when missing or older than
  the segment, by `autorec export` in a child process at low priority (never on
  the recorder's event loop or under its GIL), one at a time, within
  `MCAP_TIMEOUT`; a failure is a 503 saying why.
- No path from a URL reaches the file system: a segment is looked up by name
  in `index.jsonl`, and only its own files (`.bin`, `.json`, `.mp4`, `.mkv`, `.mcap`)
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
import json
import logging
import os
import secrets
import socket
import time as _time
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
from autorec.report.electrodeindex import ElectrodeIndexCache, parse_pins
from autorec.web.exportjob import JobBusy, RangeJobs
from autorec.web.feed import Feed
from autorec.web.guard import HTTP_LOG, SAFE_METHODS, ConnectionGuard, HostCheck, WebLimits, WorkerPool
from autorec.web.reviewed import MarkRefused, ReviewedMarks

log = logging.getLogger(__name__)

STATIC = Path(__file__).with_name("static")
TOKEN_COOKIE = "autorec_token"
SSE_KEEPALIVE = 15.0
MCAP_TIMEOUT = 600.0  # seconds an on-demand MCAP export may take (a long segment on a Pi)
MCAP_NICE = 10


def is_loopback(host: str) -> bool:
    if host in ("localhost", ""):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def new_token() -> str:
    return secrets.token_urlsafe(18)


def _directory_key(directory: Path) -> tuple | None:
    """The directory's own mtime: it changes when a file appears, is renamed in or removed (an exported
    video, `NAME.mp4`, appears without any change to index.jsonl)."""
    try:
        return (directory.stat().st_mtime_ns,)
    except OSError:
        return None


class _SegmentIndex:
    """The directory's segments by name, re-read when index.jsonl changes (size or mtime) or a file
    appears in the directory (a video exported after `serve` started)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._key: tuple | None = None
        self.night: Any = None
        self._sidecars: dict = {}  # sidecars read, by path, with the stat they were read at

    def _stat_key(self) -> tuple:
        try:
            st = (self.directory / INDEX_NAME).stat()
            return (st.st_ino, st.st_size, st.st_mtime_ns, _directory_key(self.directory))
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
        metrics: Any = None,
    ) -> None:
        self.directory = Path(directory)
        # a prometheus-client registry read on this loop (`run --http`); None: the directory's status file
        self.metrics = metrics
        self._metrics_of_directory = metrics is None
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
        self._mcap_lock: asyncio.Lock | None = None  # one MCAP export at a time (made on the loop that runs)
        self.requests = 0
        self.reviewed = ReviewedMarks(self.directory)
        self.exports = RangeJobs(self.directory)
        self.electrodes = ElectrodeIndexCache()
        self._electrodes_lock = asyncio.Lock()
        self._timelapse: tuple[tuple, list[tuple[Path, float, int, int]]] | None = None
        self.writes_refused = 0
        self._refusal_logged = -1e9
        self._hostname = socket.gethostname().lower()  # no DNS lookup (getfqdn could block the loop for seconds)
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
        get("/api/reviewed", self.api_reviewed)
        app.router.add_post("/api/reviewed", self.api_mark_reviewed)
        get("/api/export", self.api_export_state)
        app.router.add_post("/api/export", self.api_export)
        get("/exports/{name}", self.export_file)
        get("/api/electrodes", self.api_electrodes)
        get("/api/timelapse", self.api_timelapse_frame)
        get("/favicon.ico", self.favicon)
        get("/metrics", self.metrics_page)
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
            self._warm_task = asyncio.ensure_future(self._warm())  # the night page ready before it is asked

    async def _warm(self) -> None:
        """The night page, then the electrode index (seconds for a 12-hour night: built before anyone searches)."""
        await self._render_night()
        try:
            night = await self._in_thread(self.index.load)
            async with self._electrodes_lock:
                await self._in_thread(self.electrodes.get, list(night.telemetry))
        except Exception:  # a warm-up must never take the server down; a search builds it again
            log.exception("web: cannot index the electrodes")

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
        out["web.refused.write"] = self.writes_refused
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
            why = self.host_check.refusal(request) if self.host_check is not None else None
            if why is not None:
                if request.method not in SAFE_METHODS:
                    response = self._refuse(request, why)  # a refused write: counted and logged with the others
                else:
                    self.host_check.refused += 1  # type: ignore[union-attr]
                    response = web.Response(status=403, text=f"autorec: refused: {why}\n")
                response.force_close()
                return response
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
    async def metrics_page(self, request: web.Request) -> web.Response:
        try:
            from autorec.services.metrics import StatusCollector, directory_status, exposition, make_registry

            if self.metrics is None:
                self.metrics = make_registry(StatusCollector(directory_status(self.directory)))
        except ImportError:
            raise web.HTTPNotFound(
                text=f"autorec: /metrics needs the 'metrics' extra (prometheus-client): {install_hint('metrics')}\n"
            ) from None
        if self._metrics_of_directory:  # a file read: off the loop
            body, content_type = await self._in_thread(exposition, self.metrics)
        else:  # the recorder's counters, read on its own loop (no locks needed)
            body, content_type = exposition(self.metrics)
        return web.Response(body=body, headers={"Content-Type": content_type, "Cache-Control": "no-store"})

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
        key.append(_directory_key(self.directory))  # a video exported since: the cards link it
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
        status = self.feed.status()
        status["writes_refused"] = self.writes_refused
        status["web"] = self.counters()
        return self._json(status)

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
        from autorec.report.page import THUMB_QUALITY, THUMB_WIDTH, evidence_bbox, strip_html
        from autorec.web.pages import player_at

        _, seg = await self._segment(request)
        html = self._strips.get(seg.name)
        if html is None:
            firings = seg.firings
            first = next((f for f in firings if evidence_bbox(f) is not None), firings[0] if firings else None)

            def make() -> str:
                strip = contact_strip(
                    seg.path,
                    seg.start,
                    seg.end,
                    5,
                    first["time"] if first else None,
                    evidence_bbox(first) if first else None,
                    THUMB_WIDTH,
                    Thumbnailer(THUMB_WIDTH, THUMB_QUALITY),
                )
                return strip_html(strip, seg, player_at)

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
        except (ConnectionError, asyncio.CancelledError):  # the browser left, or stopped reading
            pass
        finally:
            self.feed.unsubscribe(sub)
        return response

    @staticmethod
    def _sse(name: str, data: Any) -> bytes:
        return f"event: {name}\ndata: {dumps(data, separators=(',', ':'), default=str)}\n\n".encode()

    async def _make_mcap(self, log_path: Path, out: Path) -> str | None:
        """Export `log_path` to `out` unless it is up to date; None when done, else why not (one line)."""
        import sys

        from autorec.report.mcapexport import is_up_to_date
        from autorec.services.exportqueue import CHILD_MAIN

        if self._mcap_lock is None:
            self._mcap_lock = asyncio.Lock()
        async with self._mcap_lock:
            if await self._in_thread(is_up_to_date, log_path, out):
                return None  # made while this request waited, or already there
            proc = await asyncio.create_subprocess_exec(
                *(sys.executable, "-c", CHILD_MAIN, "export", "--mcap", "-q", "--force", "-o", str(out)),
                *("--", str(log_path)),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.PIPE,
                start_new_session=True,
            )
            try:
                os.setpriority(os.PRIO_PROCESS, proc.pid, MCAP_NICE)
            except OSError:
                pass  # already finished, or refused: normal priority
            try:
                _, err = await asyncio.wait_for(proc.communicate(), MCAP_TIMEOUT)
            except (asyncio.TimeoutError, asyncio.CancelledError):
                proc.kill()  # the child's partial file is removed by the next export of it
                await proc.wait()
                raise web.HTTPServiceUnavailable(text=f"MCAP export took longer than {MCAP_TIMEOUT:g} s\n") from None
            if proc.returncode != 0:
                lines = err.decode(errors="replace").strip().splitlines()
                problem = lines[-1] if lines else f"exit code {proc.returncode}"
                from autorec.io.atomicfile import BUSY

                if problem.endswith(BUSY):  # the export queue (output.mcap) is writing it now: wait for that one
                    return await self._wait_for_mcap(log_path, out, problem)
                return problem
            return None

    async def _wait_for_mcap(self, log_path: Path, out: Path, problem: str) -> str | None:
        from autorec.io.atomicfile import partial_path
        from autorec.report.mcapexport import is_up_to_date

        deadline = asyncio.get_running_loop().time() + MCAP_TIMEOUT
        while asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.5)
            if not await self._in_thread(partial_path(out).exists):
                return None if await self._in_thread(is_up_to_date, log_path, out) else problem
        return problem

    # -- the review: marks, range exports, electrode search (see docs/how-to/review-ui.md) ---------------
    def _write_refusal(self, request: web.Request) -> str | None:
        """Why this write must be refused (one line), or None when it comes from this server's own pages."""
        sockname = request.transport.get_extra_info("sockname") if request.transport is not None else None
        if not sockname:
            return "no socket address"
        local_ip, local_port = str(sockname[0]), int(sockname[1])
        loopback = is_loopback(local_ip)
        if not loopback and self.token is None:
            return "writes off loopback need a token"
        host = request.headers.get("Host", "")
        name, port = _split_host(host)
        if name is None:
            return "no usable Host header"
        names = {local_ip.lower(), self._hostname}
        if loopback:
            names |= {"localhost", "127.0.0.1", "::1"}
        if name not in names or port != local_port:
            return f"Host {host!r} is not this server"
        origin = request.headers.get("Origin")
        if origin is None or origin.lower() not in (f"http://{host.lower()}", f"https://{host.lower()}"):
            return f"Origin {origin!r} is not this server's"
        if request.headers.get("Sec-Fetch-Site", "same-origin") != "same-origin":
            return "not sent by this server's own page"
        return None

    def _refuse(self, request: web.Request, why: str) -> web.Response:
        self.writes_refused += 1
        now = _time.monotonic()
        if now - self._refusal_logged >= 60.0:  # a flood of refused writes is one log line a minute, not one each
            self._refusal_logged = now
            log.warning(
                "web: refused %s %s from %s: %s (%d refused so far)",
                request.method,
                request.path,
                request.remote,
                why,
                self.writes_refused,
            )
        return web.Response(status=403, text=f"autorec: refused: {why}\n")

    async def _json_body(self, request: web.Request, limit: int = 4096) -> Any:
        if request.content_type != "application/json":
            raise web.HTTPUnsupportedMediaType(text="send application/json\n")
        size = request.content_length
        if size is None or size > limit:
            raise web.HTTPRequestEntityTooLarge(max_size=limit, actual_size=size or 0)
        raw = await request.read()
        try:
            return json.loads(raw)
        except ValueError:
            raise web.HTTPBadRequest(text="not JSON\n") from None

    async def api_reviewed(self, request: web.Request) -> web.Response:
        marks = await self._in_thread(self.reviewed.read)
        return self._json({"reviewed": marks})

    async def api_mark_reviewed(self, request: web.Request) -> web.Response:
        why = self._write_refusal(request)
        if why is not None:
            return self._refuse(request, why)
        body = await self._json_body(request)
        name = body.get("name") if isinstance(body, dict) else None
        reviewed = body.get("reviewed", True) if isinstance(body, dict) else None
        if not isinstance(name, str) or not isinstance(reviewed, bool):
            raise web.HTTPBadRequest(text='send {"name": SEGMENT, "reviewed": true|false}\n')
        _, seg = await self._in_thread(self.index.find, name)
        if seg is None:
            raise web.HTTPNotFound(text="no such segment in index.jsonl\n")
        try:
            entry = await self._in_thread(self.reviewed.mark, name, reviewed)
        except MarkRefused as exc:
            return web.Response(status=409, text=f"autorec: {exc}\n")
        return self._json({"mark": entry})

    async def api_export_state(self, request: web.Request) -> web.Response:
        files = await self._in_thread(self.exports.files)
        return self._json({"job": self.exports.state(), "files": files})

    async def api_export(self, request: web.Request) -> web.Response:
        from autorec.report.night import parse_when

        why = self._write_refusal(request)
        if why is not None:
            return self._refuse(request, why)
        try:
            start = parse_when(request.query.get("from", ""))
            end = parse_when(request.query.get("to", ""))
        except ValueError as exc:
            raise web.HTTPBadRequest(text=f"{exc}\n") from None
        from autorec.media.rangeexport import MAX_SPAN

        if not end > start or end - start > MAX_SPAN:
            raise web.HTTPBadRequest(text=f"the span must end after it starts and last at most {MAX_SPAN:g} s\n")
        night = await self._in_thread(self.index.load)
        try:
            state = self.exports.start(night.segments, start, end)
        except JobBusy as exc:
            return web.Response(status=409, text=f"autorec: {exc}\n")
        return self._json({"job": state}, status=202)

    async def export_file(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        fd = await self._in_thread(self.exports.open_file, name)
        if fd is None:
            raise web.HTTPNotFound(text="no such export\n")
        content_type = "video/mp4" if name.endswith(".mp4") else "application/octet-stream"
        disposition = f"attachment; filename*=UTF-8''{urllib.parse.quote(name)}"  # any name, quoted
        return await self._send_fd(request, fd, content_type, disposition)

    async def api_electrodes(self, request: web.Request) -> web.Response:
        """Every moment the given pins were driven, released, covered or uncovered, each with where to see it."""
        from autorec.dates import utc_iso

        text = request.query.get("pins", "").strip()
        try:
            pins = parse_pins(text) if text else []
        except ValueError as exc:
            raise web.HTTPBadRequest(text=f"{exc}\n") from None
        night = await self._in_thread(self.index.load)
        # One update at a time, and no query while one runs (an update changes the index in its thread).
        async with self._electrodes_lock:
            index = await self._in_thread(self.electrodes.get, list(night.telemetry))
            if not pins:  # the board picture: which pins the night knows, and the layout if the stream sent one
                return self._json(
                    {"layout": index.layout, "pins_seen": index.pins(), "telemetry": len(night.telemetry)}
                )
            began = _time.perf_counter()
            moments, more = index.moments(pins)
        starts = [s.start for s in night.segments]
        import bisect

        rows = []
        for m in moments:
            row = m.as_dict()
            row["iso"] = utc_iso(m.time)
            i = bisect.bisect_right(starts, m.time) - 1
            seg = night.segments[i] if i >= 0 and night.segments[i].end >= m.time else None
            row["segment"] = seg.name if seg is not None else None
            rows.append(row)
        return self._json(
            {
                "pins": pins,
                "moments": rows,
                "more": more,
                "index_seconds": round(index.build_seconds, 3),
                "query_ms": round(1000 * (_time.perf_counter() - began), 2),
                "problems": index.problems,
                "timelapse": bool(night.timelapse),
            }
        )

    def _timelapse_index(self, paths: list[Path]) -> list[tuple[Path, float, int, int]]:
        from autorec.media.thumbnails import Strip, frame_index

        key = tuple((p.name, *(lambda st: (st.st_size, st.st_mtime_ns))(p.stat())) for p in paths if p.exists())
        if self._timelapse is None or self._timelapse[0] != key:
            frames = []
            for p in paths:
                try:
                    frames += [(p, t, off, n) for t, off, n in frame_index(p, Strip())]
                except OSError:
                    continue
            frames.sort(key=lambda f: f[1])
            self._timelapse = (key, frames)
        return self._timelapse[1]

    async def api_timelapse_frame(self, request: web.Request) -> web.Response:
        """The timelapse frame nearest `t` (ISO or epoch), for moments no segment covers."""
        import bisect

        from autorec.media.thumbnails import read_frame
        from autorec.report.night import parse_when

        try:
            t = parse_when(request.query.get("t", ""))
        except ValueError as exc:
            raise web.HTTPBadRequest(text=f"{exc}\n") from None
        night = await self._in_thread(self.index.load)
        frames = await self._in_thread(self._timelapse_index, list(night.timelapse))
        if not frames:
            raise web.HTTPNotFound(text="no timelapse frame in this directory\n")
        i = bisect.bisect_left([f[1] for f in frames], t)
        near = min((j for j in (i - 1, i) if 0 <= j < len(frames)), key=lambda j: abs(frames[j][1] - t))
        path, ft, offset, length = frames[near]
        try:
            jpeg = await self._in_thread(read_frame, path, offset, length)
        except OSError:
            jpeg = None
        if jpeg is None:
            raise web.HTTPNotFound(text="that timelapse frame cannot be read\n")
        return web.Response(
            body=jpeg, content_type="image/jpeg", headers={"X-Frame-Time": repr(ft), "Cache-Control": "max-age=3600"}
        )

    async def _send_fd(self, request: web.Request, fd: int, content_type: str, disposition: str) -> web.StreamResponse:
        """Stream an open file (closed here) in 1 MB reads done in worker threads."""
        try:
            size = os.fstat(fd).st_size
            response = web.StreamResponse(
                headers={"Content-Type": content_type, "Content-Length": str(size), "Content-Disposition": disposition}
            )
            try:
                await response.prepare(request)
                offset = 0
                while offset < size:
                    chunk = await self._in_thread(os.pread, fd, min(1 << 20, size - offset), offset)
                    if not chunk:
                        break
                    await self._send(response, chunk)  # a client that stops reading is dropped
                    offset += len(chunk)
                await response.write_eof()
            except ConnectionError:  # the client left: nothing to say about it
                pass
            return response
        finally:
            os.close(fd)

    async def files(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        night = await self._in_thread(self.index.load)
        allowed: dict[str, Path] = {}
        mcaps: dict[str, Path] = {}
        for seg in night.segments:
            for p in (seg.path, seg.sidecar_path, *seg.videos):
                allowed[p.name] = p
            if seg.exists:
                mcaps[seg.path.with_suffix(".mcap").name] = seg.path
        path = allowed.get(name)
        if path is None and name in mcaps:
            path = mcaps[name].with_suffix(".mcap")
            problem = await self._make_mcap(mcaps[name], path)
            if problem is not None:
                log.warning("web: MCAP export of %s failed: %s", mcaps[name].name, problem)
                raise web.HTTPServiceUnavailable(text=f"MCAP export failed: {problem}\n")
        if path is None:
            raise web.HTTPNotFound(text="not a file of a segment in index.jsonl\n")
        try:
            f = await self._in_thread(open_regular, path)  # a FIFO, a device, a link: 404, never a blocked worker
        except OSError:
            raise web.HTTPNotFound(text="not available\n") from None
        types = {
            ".bin": "application/octet-stream",
            ".json": "application/json",
            ".mp4": "video/mp4",
            ".mcap": "application/octet-stream",
        }
        # any name the index holds, quoted (a quote or a line break in it cannot reach the header)
        download = path.suffix in (".bin", ".mcap")
        disposition = f"attachment; filename*=UTF-8''{urllib.parse.quote(path.name)}" if download else "inline"
        with f:  # _send_fd streams (and closes) its own descriptor of the opened file
            fd = os.dup(f.fileno())
        return await self._send_fd(request, fd, types.get(path.suffix, "video/x-matroska"), disposition)


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
    try:  # the computer's full name, as a browser on the lab network may use it; DNS may hang: bounded
        fqdn = await asyncio.wait_for(asyncio.get_running_loop().run_in_executor(None, socket.getfqdn), 2.0)
    except (asyncio.TimeoutError, OSError):
        fqdn = None
    ui.host_check = HostCheck(host, real_port, ui.host_names, fqdn)
    shown = f"[{host}]" if ":" in host else host
    return runner, f"http://{shown}:{real_port}/"


def _split_host(host: str) -> tuple[str | None, int]:
    """`name:port` / `[v6]:port` / `name` of a Host header -> (lower-case name, port); (None, 0) if unusable."""
    host = host.strip().lower()
    if not host or any(c in host for c in "/@ \t"):
        return None, 0
    if host.startswith("["):
        name, _, rest = host[1:].partition("]")
        port_text = rest[1:] if rest.startswith(":") else ("" if not rest else "x")
    else:
        name, sep, port_text = host.rpartition(":")
        if not sep:
            name, port_text = host, ""
    try:
        port = int(port_text) if port_text else 80
    except ValueError:
        return None, 0
    return (name or None), port


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
        from autorec.services.metrics import status_registry

        feed = services.web_feed(LiveFeed)
        feed.loop = asyncio.get_running_loop()
        runner = None
        ui = WebUI(out, feed, token, warm_night=False, host_names=names, metrics=status_registry(services))
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
