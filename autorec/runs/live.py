"""The live driver: runs a pipeline from an async source (a rig, the simulator) with its services.

- `feed_live(dispatcher, source, stop, ...)` feeds items from an async source and ticks the
  pipeline every 0.5 s so post-roll ends on time when the stream is quiet.
- `live_main(...)` is `autorec run`'s live mode around it: one asyncio main with the
  signal policy (SIGINT/SIGTERM end cleanly, SIGHUP reloads the rules), its companions (async
  context managers the command adds around the run, such as the web UI of `run --http`), the
  built-in simulator when asked, and the status line / heartbeat.
- `run_live(ruleset, out, ...)` is the whole live run: it finishes what a crash left, wires the
  services, writer, score log and dispatcher, and runs `live_main` until stopped.
- `StatusLine` is that live status: a line rewritten in place on a terminal, a heartbeat log
  line otherwise.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
import time as _time
from collections.abc import Callable, Sequence
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from autorec.io.mainloop import StopRequest, run_main
from autorec.runs.dispatch import Dispatcher, PipelineView
from autorec.runs.services import Services
from autorec.services.diskfloor import disk_usage
from autorec.units import format_size

if TYPE_CHECKING:
    from autorec.io.writer import SegmentWriter

log = logging.getLogger(__name__)

# Something that runs beside a live run, for as long as it runs: given the run's services, an
# async context manager entered when the run's event loop starts and left when it ends.
Companion = Callable[[Services], AbstractAsyncContextManager[None]]


class StatusLine:
    """The live status: a line rewritten in place on a terminal, a heartbeat log line every `log_every` s otherwise.

    Not on a terminal (systemd, nohup, a log file) a rewritten line would be noise, and silence
    all night looks like a hang: a heartbeat line says the recorder is alive and what it has done
    (connected or not, msg/s over the interval, segments, kept against seen bytes, disk free,
    the alerts raised). `log_every=None` turns the heartbeat off.
    """

    def __init__(
        self,
        view: PipelineView,
        out_dir: Path | None,
        stream: TextIO | None = None,
        interval: float = 2.0,
        log_every: float | None = 300.0,
        writer_stats: Callable[[], Any] | None = None,
        alerts: Callable[[], list[dict[str, Any]]] | None = None,
    ) -> None:
        self.view = view  # the run's read-only view (the dispatcher's `view`)
        self.out_dir = out_dir
        self.stream = stream if stream is not None else sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.interval = interval if self.tty else (log_every if log_every else float("inf"))
        self.writer_stats = writer_stats
        self.alerts = alerts
        self._next = _time.monotonic() + self.interval
        self._last_count = 0
        self._last_mono = _time.monotonic()

    def maybe_show(self, now: float) -> None:
        if now < self._next:
            return
        self._next = now + self.interval
        text = self.text(now)
        if self.tty:
            self.stream.write("\r\x1b[2K" + text)
            self.stream.flush()
        else:
            log.info("heartbeat: %s", text)

    def text(self, now: float) -> str:
        p = self.view
        scores = "  ".join(f"{rule} {s.value:.3g}/{s.threshold:.3g}" for rule, s in p.latest_scores().items())
        rate = (p.stats.messages - self._last_count) / max(now - self._last_mono, 1e-9)
        self._last_count, self._last_mono = p.stats.messages, now
        parts = ["connected" if p.stats.connected else "DISCONNECTED", f"{rate:.0f} msg/s"]
        if p.paused:
            parts.append(f"paused ({p.paused})")
        elif p.open_rules:
            parts.append(f"recording ({'+'.join(p.open_rules)})")
        else:
            parts.append("idle")
        ws = self.writer_stats() if self.writer_stats else None
        if ws is not None:
            parts.append(
                f"{ws.segments} segment(s) {format_size(ws.bytes)} kept of {format_size(p.stats.seen_bytes)} seen"
            )
            if ws.dropped:
                parts.append(f"{ws.dropped} dropped")
        if self.out_dir is not None:
            with contextlib.suppress(OSError):
                parts.append(f"{format_size(disk_usage(self.out_dir)[0])} free")
        if scores:
            parts.append(f"scores {scores}")
        if self.alerts is not None:
            raised = [str(a.get("key")) for a in self.alerts()]
            if raised:
                parts.append(f"ALERTS: {', '.join(raised)}")
        return "  ".join(parts)

    def end(self) -> None:
        if self.tty:
            self.stream.write("\n")
            self.stream.flush()


async def feed_live(
    dispatcher: Dispatcher,
    source: Any,
    *,
    stop: StopRequest,
    tick_interval: float = 0.5,
    status: StatusLine | None = None,
) -> None:
    """Drive `dispatcher` from an async `source` until `stop` is set; then stop the source and drain it.

    A tick runs every `tick_interval` real seconds so post-roll ends on time when the stream is quiet
    (within `tick_interval`: a quiet stream adds no records, so a later close keeps the same ones).
    Each tick wakes the process and walks the pipeline and its listeners: at 10 ticks a second that
    cost an idle `run` 0.26 CPU s a minute, 40 % of what upstream pdrecord spends recording a 10 fps
    stream (benchmarks/live_cpu.py); at 2 a second, 0.09 s.
    """

    failures = 0

    async def ticker() -> None:
        nonlocal failures
        while True:
            await asyncio.sleep(tick_interval)
            now = _time.monotonic()
            try:
                dispatcher.tick(now, wall=_time.time())
                if status is not None:
                    status.maybe_show(now)
            except Exception:
                # A bug in a listener must not stop the ticks: without them post-roll never ends
                # on a quiet stream. Logged in full once, then counted in the final line.
                failures += 1
                if failures == 1:
                    log.exception("a tick failed (ticks go on; later failures are counted)")

    async def stopper() -> None:
        await stop.wait()
        source.stop()

    tasks = [asyncio.ensure_future(ticker()), asyncio.ensure_future(stopper())]
    try:
        async for item in source:
            dispatcher.receive(item)
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if failures > 1:
            log.error("%d ticks failed in all (the first is logged above)", failures)
        dispatcher.tick(_time.monotonic())
        dispatcher.finish()
        if status is not None:
            status.end()


def reload_rules(dispatcher: Dispatcher, services: Services) -> None:
    """SIGHUP: load the rule file again; a valid one replaces the rules, an invalid one is reported and ignored."""
    from autorec.rules import ConfigError, load_rules

    path = dispatcher.ruleset.path
    try:
        ruleset = load_rules(path, services.overrides)  # --set still applies after a reload
    except ConfigError as exc:
        for error in exc.errors:
            log.error("reload rejected: %s (the rules in use are kept)", error.line_text())
        return
    except OSError as exc:
        log.error("reload rejected: %s: cannot read: %s (the rules in use are kept)", path, exc.strerror or exc)
        return
    dispatcher.reload(ruleset)
    log.info("reloaded %s: %d rule(s): %s", path, len(ruleset.rules), ", ".join(r.name for r in ruleset.rules))


def live_main(
    dispatcher: Dispatcher,
    writer: SegmentWriter,
    services: Services,
    uri: str,
    out: Path,
    sim_config,
    duration: float | None,
    live_source=None,
    companions: Sequence[Companion] = (),
) -> int:
    from autorec.io.source import WebsocketSource, read_interval_at
    from autorec.units import format_size

    status = StatusLine(
        dispatcher.view,
        out,
        log_every=dispatcher.ruleset.heartbeat,
        writer_stats=lambda: writer.stats,
        alerts=services.monitor.status,
    )

    async def main(stop: StopRequest) -> None:
        # Companions (the web UI of `run --http`) are given by the command that wires the run: this
        # package sits below the web UI and never imports it.
        async with contextlib.AsyncExitStack() as stack:
            for companion in companions:
                await stack.enter_async_context(companion(services))
            await _main(stop)

    async def _main(stop: StopRequest) -> None:
        if sim_config is None:
            log.info("recording %s into %s", uri, out)
            async with live_source as source:
                await feed_live(dispatcher, source, stop=stop, status=status)
            return
        from autorec.sim.server import SimServer

        async with SimServer(sim_config, host="127.0.0.1", port=0) as server:
            log.info("recording the simulator (%s) into %s", server.uri, out)
            async with WebsocketSource(server.uri, read_interval=read_interval_at(sim_config.speed)) as source:
                live = asyncio.ensure_future(feed_live(dispatcher, source, stop=stop, status=status))
                finished = asyncio.ensure_future(server.wait_finished())
                stopped = asyncio.ensure_future(stop.wait())
                await asyncio.wait([finished, stopped, live], return_when=asyncio.FIRST_COMPLETED)
                if finished.done() and not stop.is_set():
                    # Let the last messages reach us: wait until the recorder has seen
                    # all the simulator published, bounded in time.
                    await _drain(server, source)
                    stop.request("simulator finished")
                stop.request("stopped")  # only a reason if nothing asked before
                await live
                for task in (finished, stopped):
                    task.cancel()

    stopped: list[StopRequest] = []
    try:
        run_main(
            main,
            duration=duration if sim_config is None else None,
            on_reload=lambda: reload_rules(dispatcher, services),
            on_start=stopped.append,
        )
    finally:
        ok = writer.close(30)
        services.close()
    if not ok:
        log.error("writer did not finish within 30 s")
        return 1
    s = writer.stats
    log.info(
        "done: %d message(s), %d segment(s), %s written%s",
        dispatcher.stats.messages,
        s.segments,
        format_size(s.bytes),
        f", {s.dropped} dropped" if s.dropped else "",
    )
    why = stopped[0].reason if stopped else None
    print(summary_line(why or "stopped", s.segments, s.bytes, dispatcher.stats.seen_bytes, out, s.dropped))
    return 0


async def _drain(server, source, timeout: float = 5.0) -> None:
    """Wait until the source has received every frame the simulator sent it (or `timeout`).

    Frames sent to a connection that a `close` fault then dropped may never arrive: that is
    what the timeout is for. Two agreeing samples in a row guard against a batch still queued.
    """
    import asyncio
    import time

    def settled() -> bool:
        s = source.stats
        received = s.messages + s.rejected + s.text_frames
        sent = sum(c["sent"] for c in server.broadcaster.stats()["clients"])
        return received >= sent

    deadline = time.monotonic() + timeout
    agreeing = 0
    while time.monotonic() < deadline and agreeing < 2:
        agreeing = agreeing + 1 if settled() else 0
        await asyncio.sleep(0.05)


def summary_line(why: str, segments: int, kept: int, seen: int, out: Path, dropped: int = 0) -> str:
    """The last line of a run: why it ended, what was kept of what was seen, where, and what to do next."""
    from autorec.units import format_size

    where = f"{out}/" if not str(out).endswith("/") else str(out)
    pct = f" ({100.0 * kept / seen:.1f} %)" if seen else ""
    line = f"autorec run: {why}; {segments} segment(s) ({format_size(kept)}) kept of {format_size(seen)} seen{pct}"
    line += f" in {where}"
    if dropped:
        line += f"; {dropped} message(s) DROPPED (disk too slow or failing: see the log)"
    if segments:
        line += f" - autorec ls {where}, autorec video {where}"
    return line


def run_live(
    ruleset,
    out: Path,
    *,
    uri: str,
    live_source=None,
    sim_config=None,
    duration: float | None = None,
    companions: Sequence[Companion] = (),
    rig: str | None = None,
    telemetry: bool = True,
    timelapse: bool = True,
    overrides: list | None = None,
) -> int:
    """Record live into `out` (the caller holds its instance lock): finish what a crash left, build the
    services, writer, score log and pipeline, and drive them with `live_main` until stopped.
    `live_source` is a checked `WebsocketSource` for `uri`, or None with `sim_config` (the built-in
    simulator in this process). `companions` run beside it (see `Companion`). Returns the exit code."""
    from autorec.core.pipeline import TICK_LAG, Pipeline
    from autorec.io.recovery import recover_directory
    from autorec.io.scorelog import ScoreLog
    from autorec.io.source import read_interval_at
    from autorec.io.writer import SegmentWriter

    for recovered in recover_directory(out, fsync=ruleset.output.fsync):
        log.warning("%s", recovered.message())
    services = Services(ruleset, out)
    services.overrides = list(overrides or ())
    if rig is not None:
        services.rig = rig
    writer = SegmentWriter(
        out,
        ruleset.output.name,
        fsync=ruleset.output.fsync,
        telemetry=telemetry,
        queue_max_bytes=ruleset.output.queue_max_bytes,
        observers=services.observers(),
        timelapse=timelapse,
    )
    score_log = ScoreLog(out)  # scores-YYYYMMDD.csv.gz and near-misses.jsonl beside the telemetry
    services.score_log = score_log
    rate = sim_config.speed if sim_config is not None else 1.0
    read_interval = live_source.read_interval if live_source is not None else read_interval_at(rate)
    core = Pipeline(
        ruleset,
        rate=rate,
        telemetry=telemetry,
        timelapse=timelapse,
        tick_lag=TICK_LAG + read_interval,  # a frame may wait in the socket for one paced read
    )
    dispatcher = Dispatcher(core, writer, score_sinks=[score_log])
    services.attach(dispatcher, writer)
    if core.budget is not None:
        try:  # max_share is a share of the output filesystem
            core.budget.volume_bytes = disk_usage(out)[1]
        except OSError as exc:
            log.warning("max_share cannot be checked: size of %s unknown: %s", out, exc.strerror or exc)
    services.start("sim" if sim_config is not None else "live", None if sim_config is not None else uri)
    writer.start()
    return live_main(dispatcher, writer, services, uri, out, sim_config, duration, live_source, companions)
