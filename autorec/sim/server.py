"""The simulated rig on the network: paces a `Simulation` in real time and broadcasts it.

    async with SimServer(config, port=0) as server:
        ...connect to server.uri...
        await server.wait_finished()      # the simulated duration has been sent
        server.truth                      # ground truth so far (dict, as written to --truth)
        server.stats                      # per-client sent/dropped counters, achieved speed

Pacing: each loop iteration computes the simulated time that should have been
reached (`speed` x real time elapsed), pulls everything due from the
simulation, encodes it and publishes it to all clients in one batch, then
sleeps until the next item is due (at least a few milliseconds, so that at
high speed many messages go out per iteration). If the machine cannot keep
up, the simulation falls behind rather than bursting: each iteration does at
most `MAX_BATCH_REAL` seconds' worth of simulated time, and the achieved
factor is reported in `stats["speed_achieved"]`.

With `config.truth` set, the ground truth file is rewritten whenever it
gained entries (at most every few seconds) and at the end, so a long run
killed outright still leaves a current one.

`SimServerThread(config)` runs the same server on a private event loop in a
background thread, for synchronous callers (`with SimServerThread(cfg) as s: s.uri`).
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
from collections.abc import Iterator
from typing import Any

from autorec.io.atomicfile import write_json
from autorec.io.broadcast import Broadcaster, StreamServer
from autorec.sim.config import SimConfig
from autorec.sim.core import Simulation
from autorec.sim.rpc import RpcHandler
from autorec.sim.scenario import load_scenario
from autorec.sim.stream import CLOSE, StreamEncoder

log = logging.getLogger(__name__)

MAX_BATCH_REAL = 0.05  # seconds of real time worth of simulation per loop iteration, at most
MIN_SLEEP = 0.004  # shortest pause between iterations: batches messages at high speed
MAX_LAG_REAL = 1.0  # further behind than this, stop trying to catch up (the speed factor drops)
TRUTH_INTERVAL = 5.0  # real seconds between rewrites of the --truth file during a run
# With `pace_to_clients`: hold the simulated clock above this much queued for the clients, until half of it
# has gone out (a few seconds of simulated camera at 150x; far below the per-client bound of 32 MB).
PACE_QUEUE_BYTES = 8 * 1024 * 1024
PACE_BATCH_BYTES = 1024 * 1024  # with `pace_to_clients`, batches are published (and paced) in parts this big


def make_renderer(cols: int, rows: int, seed: int):
    """The camera renderer, or None (logged) when `autorec.sim.camera` is unavailable."""
    try:
        from autorec.sim.camera import CameraRenderer
    except ImportError as exc:
        log.warning("sim: camera renderer unavailable (%s): no camera frames", exc)
        return None
    return CameraRenderer(cols, rows, seed=seed)


def write_truth(path: str | os.PathLike[str], truth: dict) -> None:
    """Write the ground truth JSON atomically (a reader never sees half a file)."""
    write_json(path, truth)


class RpcHttpServer:
    """pdserver's HTTP control port: `POST /rpc` (JSON-RPC 2.0) and `GET /rpc/map`, in a thread.

    Each call is handed to `call(body)` on the simulation's event loop (the simulation is not
    thread-safe) and answered with what it returns. stdlib `http.server`: the core dependencies
    have no HTTP server, and a handful of calls a second need no more."""

    def __init__(self, host: str, port: int, call, method_map, loop: asyncio.AbstractEventLoop) -> None:
        import json
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        async def on_loop(body: bytes) -> bytes | None:
            return call(body)

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _send(self, code: int, body: bytes) -> None:
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:
                if self.path.rstrip("/") == "/rpc/map":
                    self._send(200, json.dumps(method_map()).encode())
                else:
                    self._send(404, b'{"error": "not found: POST /rpc or GET /rpc/map"}')

            def do_POST(self) -> None:
                if self.path.rstrip("/") != "/rpc":
                    self._send(404, b'{"error": "not found: POST /rpc"}')
                    return
                try:
                    length = int(self.headers.get("Content-Length", "0"))
                except ValueError:
                    length = -1
                if not 0 <= length <= 1 << 20:
                    self._send(400, b'{"error": "a JSON-RPC body needs a Content-Length up to 1 MiB"}')
                    return
                body = self.rfile.read(length)
                try:
                    answer = asyncio.run_coroutine_threadsafe(on_loop(body), loop).result(timeout=10)
                except Exception as exc:  # the loop closed under us: say so rather than hang up
                    self._send(503, json.dumps({"error": f"simulator not running: {exc!r}"}).encode())
                    return
                if answer is None:
                    self.send_response(204)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                else:
                    self._send(200, answer)

            def log_message(self, format: str, *args: object) -> None:
                log.debug("sim rpc: " + format, *args)

        self.httpd = ThreadingHTTPServer((host, port), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://{host}:{self.httpd.server_address[1]}/rpc"
        self._thread = threading.Thread(target=self.httpd.serve_forever, name="autorec-sim-rpc", daemon=True)
        self._thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self._thread.join(5)


class SimServer(StreamServer):
    """See the module docstring. `host`/`port` override the config's."""

    def __init__(self, config: SimConfig, host: str | None = None, port: int | None = None):
        self.config = config
        self.host = config.host if host is None else host
        self._port = config.port if port is None else port
        self.scenario = load_scenario(config.scenario)  # raises ScenarioError (file:line) early
        start = time.time() if config.start_time is None else config.start_time
        self.sim = Simulation(
            self.scenario,
            seed=config.seed,
            start_time=start,
            duration=config.duration,
            fps=config.fps,
            camera=config.camera,
            faults=config.faults,
        )
        super().__init__(Broadcaster(config.max_queue_bytes, name="sim"), self.host, self._port)
        self._encoder: StreamEncoder | None = None
        self._real_start = 0.0
        self._real_elapsed = 0.0
        self._paused = 0.0  # real seconds the simulated clock was held for slow clients (pace_to_clients)
        self._closes = 0
        self._truth_written_at = float("-inf")
        self._truth_size: tuple[int, ...] = ()
        self.truth_errors = 0  # --truth writes that failed
        self.sent_until = start  # simulated time published so far
        self._lag = 0.0
        self.rpc_handler = RpcHandler(self.sim)
        self._rpc_http: RpcHttpServer | None = None

    async def __aenter__(self) -> SimServer:
        renderer = None
        if self.config.camera and self.config.fps > 0:
            renderer = make_renderer(self.scenario.board.cols, self.scenario.board.rows, self.config.seed)
        self._encoder = StreamEncoder(renderer, seed=self.config.seed)
        await super().__aenter__()
        if self.config.rpc_port is not None:
            try:
                self._rpc_http = RpcHttpServer(
                    self.host, self.config.rpc_port, self.rpc, self.rpc_handler.method_map, asyncio.get_running_loop()
                )
            except OSError:
                await super().__aexit__(None, None, None)
                raise
            log.info("sim: JSON-RPC (pdserver's methods) on %s", self.rpc_url)
        log.info(
            "sim: serving %s scenario %r (seed %d) at %gx on %s",
            self.scenario.board.name,
            self.scenario.name,
            self.config.seed,
            self.config.speed,
            self.uri,
        )
        return self

    @property
    def rpc_url(self) -> str | None:
        """`http://HOST:PORT/rpc` of the JSON-RPC server, None without `config.rpc_port`."""
        return None if self._rpc_http is None else self._rpc_http.url

    async def __aexit__(self, *exc: object) -> None:
        if self._rpc_http is not None:
            await asyncio.to_thread(self._rpc_http.close)
        await super().__aexit__(*exc)
        if self.config.truth:
            self._save_truth()

    @property
    def truth(self) -> dict:
        """Ground truth up to the simulated time sent so far (windows still running are cut there)."""
        return self.sim.truth.as_dict(until=self.sent_until)

    @property
    def stats(self) -> dict:
        s = self.broadcaster.stats()
        sim_elapsed = self.sent_until - self.sim.start_time
        s["sim_seconds"] = sim_elapsed
        s["real_seconds"] = self._real_elapsed
        s["speed_achieved"] = sim_elapsed / self._real_elapsed if self._real_elapsed > 0 else 0.0
        s["connection_closes"] = self._closes
        return s

    @property
    def finished(self) -> bool:
        return self._finished is not None and self._finished.is_set()

    def _save_truth(self) -> None:
        """Write the --truth file; a failure (disk full) is logged once and counted, the stream goes on."""
        try:
            write_truth(self.config.truth, self.truth)
        except OSError as exc:
            self.truth_errors += 1
            if self.truth_errors == 1:
                log.error("sim: cannot write the ground truth to %s: %s", self.config.truth, exc.strerror or exc)

    def _maybe_write_truth(self, now: float) -> None:
        """Keep the --truth file current during long runs (at most every TRUTH_INTERVAL s, when it changed)."""
        if not self.config.truth or now - self._truth_written_at < TRUTH_INTERVAL:
            return
        t = self.sim.truth
        size = (
            len(t.activity),
            len(t.lighting),
            len(t.disconnects),
            len(t.temperature),
            len(t.faults),
            len(t.failures),
        )
        if size != self._truth_size:
            self._save_truth()
            self._truth_size = size
            self._truth_written_at = now

    def _pump(self, until: float) -> None:
        """Publish everything the simulation has due up to `until` (simulated time), at once."""
        for _part in self._parts(until):
            pass

    def _parts(self, until: float) -> Iterator[None]:
        """Publish what is due up to `until` in parts of about PACE_BATCH_BYTES, pausing (yielding)
        after each, so a paced run can wait for its client between parts. Paced runs (`run --sim`)
        serve no JSON-RPC, whose calls advance the simulation too."""
        encoder = self._encoder
        assert encoder is not None
        batch: list[bytes | str] = []
        size = 0
        for t, item in self.sim.advance(until):
            for m in encoder.encode(t, item):
                if m is CLOSE:
                    self.broadcaster.publish(batch)
                    batch, size = [], 0
                    n = self.broadcaster.close_all()
                    self._closes += 1
                    log.info("sim: fault: closed %d connection(s)", n)
                else:
                    batch.append(m)
                    size += len(m)
            if size > PACE_BATCH_BYTES:
                self.broadcaster.publish(batch)
                batch, size = [], 0
                yield
        self.broadcaster.publish(batch)
        self.sent_until = max(self.sent_until, until)

    def sim_now(self) -> float:
        """The simulated time now, as the pacing sees it (the start until the clock runs)."""
        sim = self.sim
        if self._real_start == 0.0:
            return max(sim.now, self.sent_until)
        loop = asyncio.get_running_loop()
        t = sim.start_time + (loop.time() - self._real_start - self._lag) * self.config.speed
        if sim.end_time is not None:
            t = min(t, sim.end_time)
        return max(t, sim.now, self.sent_until)

    def rpc(self, body: bytes) -> bytes | None:
        """One JSON-RPC POST body (on the loop): everything due is published first, then the call acts
        at the current simulated time, and what it caused (an electrode_state) goes out at once."""
        t = self.sim_now()
        self._pump(t)
        answer = self.rpc_handler.handle(body, t)
        self._pump(t)
        return answer

    async def _hold_for_clients(self) -> float:
        """With `pace_to_clients`: wait while more than PACE_QUEUE_BYTES are queued, until half of it has gone
        out. Returns the real seconds waited (the simulated clock stood still meanwhile)."""
        if self.broadcaster.queued_bytes() <= PACE_QUEUE_BYTES:
            return 0.0
        loop = asyncio.get_running_loop()
        held = loop.time()
        while self.broadcaster.queued_bytes() > PACE_QUEUE_BYTES // 2:
            await asyncio.sleep(MIN_SLEEP)
        waited = loop.time() - held
        self._paused += waited
        return waited

    async def _play(self) -> None:
        loop = asyncio.get_running_loop()
        sim, speed = self.sim, self.config.speed
        if self.config.wait_for_clients > 0:
            await self.broadcaster.wait_for_clients(self.config.wait_for_clients)
        real0 = self._real_start = loop.time()
        sim0 = sim.start_time
        self._lag = 0.0  # real seconds given up on catching up
        try:
            while not sim.finished:
                now = loop.time()
                target = sim0 + (now - real0 - self._lag) * speed
                behind = target - self.sent_until
                if behind > MAX_LAG_REAL * speed:
                    self._lag += behind / speed - MAX_LAG_REAL
                    target = sim0 + (now - real0 - self._lag) * speed
                until = min(target, self.sent_until + MAX_BATCH_REAL * speed)
                if self.config.pace_to_clients:
                    # part by part, the simulated clock standing still while the recorder catches up
                    for _part in self._parts(until):
                        self._lag += await self._hold_for_clients()
                    self._lag += await self._hold_for_clients()
                else:
                    self._pump(until)
                self._real_elapsed = loop.time() - real0
                self._maybe_write_truth(loop.time())
                nxt = sim.next_time()
                if nxt is None:
                    break
                wait = (nxt - sim0) / speed - (loop.time() - real0 - self._lag)
                await asyncio.sleep(max(wait, MIN_SLEEP) if wait > 0 else 0)
            if sim.end_time is not None:
                self.sent_until = sim.end_time
        finally:
            self._real_elapsed = loop.time() - real0
            if self._finished is not None:
                self._finished.set()
            if self.config.truth:
                self._save_truth()
        log.info(
            "sim: finished %.1f simulated seconds in %.1f s (%.1fx)%s",
            self.sent_until - sim0,
            self._real_elapsed,
            self.stats["speed_achieved"],
            f"; held {self._paused:.1f} s for the recorder to catch up" if self._paused >= 0.5 else "",
        )


class SimServerThread:
    """A `SimServer` on its own event loop in a daemon thread (for synchronous code and tests).

    `__enter__` returns once the server listens (or re-raises its startup
    error); `wait_finished(timeout)` blocks until the duration has been sent.
    """

    def __init__(self, config: SimConfig, host: str | None = None, port: int | None = 0):
        self.config = config
        self._host, self._port = host, port
        self.server: SimServer | None = None
        self._ready = threading.Event()
        self._done = threading.Event()
        self._stop: Any = None  # the loop's StopRequest (autorec.io.mainloop)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="autorec-sim", daemon=True)

    def _run(self) -> None:
        from autorec.io.mainloop import StopRequest, run_main

        async def main(stop: StopRequest) -> None:
            self._stop = stop
            try:
                async with SimServer(self.config, self._host, self._port) as server:
                    self.server = server
                    self._ready.set()
                    finished = asyncio.ensure_future(server.wait_finished())
                    await stop.wait()
                    finished.cancel()
            except BaseException as exc:  # reported to the caller of __enter__
                self._error = exc
            finally:
                self._ready.set()
                self._done.set()

        # The one asyncio main (autorec.io.mainloop); off the main thread it installs no signal handler.
        run_main(main)

    def __enter__(self) -> SimServer:
        self._thread.start()
        self._ready.wait()
        if self._error is not None:
            raise self._error
        assert self.server is not None
        return self.server

    def wait_finished(self, timeout: float | None = None) -> bool:
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.server is not None and not self.server.finished:
            if deadline is not None and time.monotonic() >= deadline:
                return False
            if self._done.wait(0.01):
                break
        return True

    def __exit__(self, *exc: object) -> None:
        if self._stop is not None and not self._done.is_set():
            self._stop.request_threadsafe("closed")
        self._thread.join(10)
