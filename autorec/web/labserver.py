"""The lab page's web servers (see `autorec.web.lab` for what the page shows and why each directory's
UI has its own port).

`LabUI(rigs, token)`: `/` is the lab page of output directories; `rigs` maps each rig's name to its
directory and the base URL of its own `WebUI` (its port). The page is read afresh at each visit.

`StoreLabUI(store, token)`: `/` the lab page of an object store, `/rig/NAME/night/DAY/` a night's
segments, `/rig/NAME/night/DAY/files/FILE` a file of it streamed from the store (only a key that the
day's catalogue names). Listings are cached for `STORE_TTL` seconds so a reload does not list the bucket
again. Nothing is ever written to the bucket.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import mimetypes
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

from aiohttp import web

from autorec.web.guard import SAFE_METHODS, ConnectionGuard, HostCheck, WebLimits
from autorec.web.lab import Rig, directory_rig, file_name_of, lab_page, store_night_page, store_rigs
from autorec.web.server import STATIC, TOKEN_COOKIE

log = logging.getLogger(__name__)

STORE_TTL = 10.0  # seconds a store listing is reused
CHUNK = 1 << 20


def _auth_middleware(token: str | None):
    """The token check of `WebUI` (query `token`, the cookie, or a Bearer header); sets the cookie,
    which the rigs' UIs on the other ports of the same host accept too (cookies ignore ports)."""

    @web.middleware
    async def auth(request: web.Request, handler):
        if token is None:
            return await handler(request)
        given = request.query.get("token") or request.cookies.get(TOKEN_COOKIE)
        header = request.headers.get("Authorization", "")
        if header.startswith("Bearer "):
            given = header[7:]
        if not given or not hmac.compare_digest(given.encode(), token.encode()):
            return web.Response(status=401, text="autorec: a token is required (?token=... from the log)\n")
        response = await handler(request)
        if request.query.get("token") and isinstance(response, web.Response):
            response.set_cookie(TOKEN_COOKIE, token, httponly=True, samesite="Lax")
        return response

    return auth


async def _no_favicon(request: web.Request) -> web.Response:
    return web.Response(status=204)  # browsers ask for one; nothing to show


class _Guarded:
    """What `autorec.web.server.start_server` needs of an app and what it sets (`limits`, `host_names`;
    `guard`, `host_check`), and the same Host check as `WebUI` (a page doing DNS rebinding is refused)."""

    def __init__(self, token: str | None, host_names: Iterable[str]) -> None:
        self.token = token
        self.limits = WebLimits()
        self.host_names = tuple(host_names)
        self.guard: ConnectionGuard | None = None
        self.host_check: HostCheck | None = None
        self.app = web.Application(middlewares=[self._gate, _auth_middleware(token)])
        self.app.router.add_get("/favicon.ico", _no_favicon)
        self.app.router.add_static("/ui/", STATIC, follow_symlinks=False)

    @web.middleware
    async def _gate(self, request: web.Request, handler):
        try:
            why = self.host_check.refusal(request) if self.host_check is not None else None
            if why is not None:
                response = web.Response(status=403, text=f"autorec: refused: {why}\n")
                response.force_close()
                return response
            if request.method not in SAFE_METHODS:
                return web.Response(status=405, text="autorec: the lab page only reads\n")
            return await handler(request)
        finally:
            if self.guard is not None:
                self.guard.request_done(request.transport)


@dataclass
class RigUI:
    name: str
    directory: Path
    port: int  # where its WebUI listens


class LabUI(_Guarded):
    """The lab page of several output directories; each rig's own UI listens on `RigUI.port`."""

    def __init__(self, rigs: list[RigUI], token: str | None = None, host_names: Iterable[str] = ()) -> None:
        super().__init__(token, host_names)
        self.rigs = rigs
        self.app.router.add_get("/", self.lab)
        self.app.router.add_get("/api/lab", self.api_lab)

    async def _rigs(self) -> list[Rig]:
        loop = asyncio.get_running_loop()
        found = []
        for r in self.rigs:
            rig = await loop.run_in_executor(None, directory_rig, r.directory)
            rig.name = r.name  # the name given at the start (unique), even if the directory changed since
            found.append(rig)
        return found

    def _base(self, request: web.Request, rig: RigUI) -> str:
        host = request.url.host or "127.0.0.1"
        shown = f"[{host}]" if ":" in host else host
        return f"{request.url.scheme}://{shown}:{rig.port}/"

    async def lab(self, request: web.Request) -> web.Response:
        rigs = await self._rigs()
        links = {}
        for r in self.rigs:
            base = self._base(request, r)
            links[r.name] = {"live": base, "night": base + "night", "segment": base + "segment/{name}"}
        title = ", ".join(str(r.directory) for r in self.rigs)
        text = lab_page(title, rigs, links, time.time(), [])
        return web.Response(text=text, content_type="text/html")

    async def api_lab(self, request: web.Request) -> web.Response:
        rigs = await self._rigs()
        out = [
            {
                "name": rig.name,
                "directory": rig.source,
                "url": self._base(request, r),
                "status": rig.status,
                "stopped": rig.stopped,
                "nights": [n.__dict__ for n in rig.nights],
                "problems": rig.problems,
            }
            for r, rig in zip(self.rigs, rigs)
        ]
        return web.json_response({"rigs": out})


class StoreLabUI(_Guarded):
    """The lab page of an object store (`autorec.io.objectstore.ObjectStore`), read-only."""

    def __init__(self, store: Any, token: str | None = None, host_names: Iterable[str] = ()) -> None:
        super().__init__(token, host_names)
        self.store = store
        self._cache: tuple[float, list[Rig], list[str]] | None = None
        self._lock = asyncio.Lock()
        get = self.app.router.add_get
        get("/", self.lab)
        get("/api/lab", self.api_lab)
        get("/rig/{rig}/night/{day}/", self.night)
        get("/rig/{rig}/night/{day}/files/{name}", self.file)

    async def _rigs(self) -> tuple[list[Rig], list[str]]:
        from autorec.io.objectstore import StoreError

        async with self._lock:
            if self._cache is not None and time.monotonic() - self._cache[0] < STORE_TTL:
                return self._cache[1], self._cache[2]
            try:
                rigs, problems = await asyncio.get_running_loop().run_in_executor(None, store_rigs, self.store)
            except StoreError as exc:
                raise web.HTTPBadGateway(text=f"autorec: {exc}\n") from None
            self._cache = (time.monotonic(), rigs, problems)
            return rigs, problems

    async def lab(self, request: web.Request) -> web.Response:
        rigs, problems = await self._rigs()
        links = {
            r.name: {
                "day": f"/rig/{quote(r.name)}/night/{{day}}/",
                "segment": f"/rig/{quote(r.name)}/night/{{day}}/#{{name}}",
            }
            for r in rigs
        }
        text = lab_page(str(self.store.location), rigs, links, time.time(), problems)
        return web.Response(text=text, content_type="text/html")

    async def api_lab(self, request: web.Request) -> web.Response:
        rigs, problems = await self._rigs()
        out = [
            {
                "name": r.name,
                "store": r.source,
                "status": r.status,
                "stopped": r.stopped,
                "nights": [n.__dict__ for n in r.nights],
                "segments": r.rows,
                "problems": r.problems,
            }
            for r in rigs
        ]
        return web.json_response({"store": str(self.store.location), "rigs": out, "problems": problems})

    async def _night_rows(self, request: web.Request) -> list[dict[str, Any]]:
        rigs, _ = await self._rigs()
        name, day = request.match_info["rig"], request.match_info["day"]
        rows = [row for r in rigs if r.name == name for row in r.rows if row.get("date") == day]
        if not rows:
            raise web.HTTPNotFound(text=f"autorec: no segments of rig {name!r} on {day} in the store\n")
        return rows

    async def night(self, request: web.Request) -> web.Response:
        rows = await self._night_rows(request)
        text = store_night_page(request.match_info["rig"], request.match_info["day"], rows)
        return web.Response(text=text, content_type="text/html")

    async def file(self, request: web.Request) -> web.StreamResponse:
        from autorec.io.objectstore import StoreError

        rows = await self._night_rows(request)
        name = request.match_info["name"]
        keys = [k for r in rows for k in (r.get("key"), r.get("sidecar_key"), *(r.get("video_keys") or [])) if k]
        key = next((k for k in keys if file_name_of(k) == name), None)
        if key is None:
            raise web.HTTPNotFound(text=f"autorec: {name} is not a file of that night's catalogue\n")
        loop = asyncio.get_running_loop()
        try:
            body, size = await loop.run_in_executor(None, self.store.open_object, key)
        except StoreError as exc:
            raise web.HTTPNotFound(text=f"autorec: {exc}\n") from None
        response = web.StreamResponse(
            headers={
                "Content-Type": mimetypes.guess_type(name)[0] or "application/octet-stream",
                "Content-Disposition": f'attachment; filename="{name}"',
            }
        )
        if size:
            response.content_length = size
        try:
            await response.prepare(request)
            while chunk := await loop.run_in_executor(None, body.read, CHUNK):
                await response.write(chunk)  # one chunk in memory at a time: a 2 GB segment streams
            await response.write_eof()
        finally:
            body.close()
        return response
