"""`autorec run`: record the interesting parts of a stream into segments, as the rule file says.

    autorec run --rules rules/electrodes.yaml [--uri ws://rig:7001] [--out DIR] [--duration 8h]
    autorec run --rules rules/electrodes.yaml --sim [--speed 20 --duration 10min ...]
    autorec run --rules rules/electrodes.yaml --replay last-night.bin [--dry-run]

All three run the same pipeline (`autorec.pipeline`): live against a rig,
against the built-in simulator in this process (127.0.0.1, a free port), or
offline over a log as fast as possible. SIGINT/SIGTERM close the open
segment and exit 0. Exit 2 for a bad rule file or options, 1 when the job
failed (e.g. an unreadable log).
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import logging
import sys
import time
from pathlib import Path

log = logging.getLogger("autorec.run")

REPLAY_QUEUE_BYTES = 32_000_000


def add_parser(sub: argparse._SubParsersAction) -> None:
    from autorec.sim.config import add_sim_arguments

    p = sub.add_parser(
        "run",
        help="record segments around what the rules find interesting",
        description=(
            "Record the interesting parts of a PurpleDrop stream: triggers in the rule file open "
            "segments with pre-roll and post-roll. Live (--uri), against the built-in simulator "
            "(--sim), or offline over a log (--replay, with --dry-run to only list the segments). "
            "--duration ends a live run after that much real time, a --sim run after that much simulated time."
        ),
    )
    p.add_argument("--rules", required=True, metavar="FILE", help="rule file (YAML); see `autorec check`")
    p.add_argument("--uri", default=None, help="websocket of the rig (default: the rule file's source)")
    p.add_argument("--out", default=None, metavar="DIR", help="output directory (default: the rule file's output.dir)")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--sim", action="store_true", help="record the built-in simulator, run in this process")
    mode.add_argument("--replay", metavar="LOG", default=None, help="run the rules over a log as fast as possible")
    p.add_argument("--dry-run", action="store_true", help="with --replay: print the segments, write nothing")
    p.add_argument(
        "--jobs",
        type=int,
        default=None,
        metavar="N",
        help="with --replay: decode camera frames for the motion trigger in N threads (default: the cores; 1: none)",
    )
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="RULE.OPTION=VALUE",
        help="override a rule's option or segment key for this run (repeatable), checked like the rule file",
    )
    p.add_argument("--no-telemetry", action="store_true", help="do not write the daily telemetry log")
    p.add_argument("-v", "--verbose", action="count", default=0)
    p.add_argument("--log-file", default=None, metavar="FILE", help="also write log lines to FILE")
    p.add_argument(
        "--heartbeat",
        default=None,
        metavar="DURATION",
        help="when stderr is not a terminal, log a status line this often (default: the rule file's "
        "heartbeat, 5min; 0 turns it off)",
    )
    from autorec.commands.serve import add_http_arguments

    add_http_arguments(p, None)
    # The simulator's options; its --duration (simulated time with --sim) is also how long a live run lasts.
    add_sim_arguments(p, network=False)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from autorec.rules import ConfigError, Override, load_rules
    from autorec.units import parse_duration

    try:
        args.overrides = [Override.parse(text) for text in args.overrides]
        ruleset = load_rules(args.rules, args.overrides)
    except ConfigError as exc:
        for error in exc.errors:
            print(f"autorec run: {error.line_text()}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"autorec run: cannot read {args.rules}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    for warning in ruleset.warnings:
        log.warning("%s", warning)
    if args.dry_run and not args.replay:
        print("autorec run: --dry-run needs --replay LOG", file=sys.stderr)
        return 2
    ignored = _ignored_options(args)
    if ignored:  # they used to be dropped without a word: say so rather than run with something else
        print(f"autorec run: {ignored}", file=sys.stderr)
        return 2
    try:
        duration = None if args.sim_duration is None else parse_duration(args.sim_duration)
    except ValueError as exc:
        print(f"autorec run: --duration: {exc}", file=sys.stderr)
        return 2
    try:
        if args.heartbeat is not None:
            beat = parse_duration(args.heartbeat)
            ruleset = dataclasses.replace(ruleset, heartbeat=beat if beat > 0 else None)
    except ValueError as exc:
        print(f"autorec run: --heartbeat: {exc}", file=sys.stderr)
        return 2
    out = Path(args.out) if args.out else Path(ruleset.output.dir)
    if args.replay:
        return _replay(args, ruleset, out)
    return _live(args, ruleset, out, duration)


# The simulated rig's options besides --duration, with their defaults: they mean nothing without --sim.
_SIM_ONLY = {"scenario": "demo", "seed": 0, "speed": 1.0, "fps": 10.0, "camera": True, "faults": "", "truth": None}


def _ignored_options(args: argparse.Namespace) -> str | None:
    """A message naming options that the chosen mode would ignore, or None."""
    if not args.sim:
        given = [f"--{'no-camera' if k == 'camera' else k}" for k, v in _SIM_ONLY.items() if getattr(args, k) != v]
        if given:
            return f"{', '.join(given)} only appl{'y' if len(given) > 1 else 'ies'} with --sim"
    if args.uri and (args.sim or args.replay):
        return f"--uri does not apply with {'--sim' if args.sim else '--replay'} (the stream comes from there)"
    if args.replay and args.heartbeat is not None:
        return "--heartbeat does not apply to --replay (it is for live runs)"
    if args.replay and args.sim_duration is not None:
        return "--duration does not apply to --replay (the log is read to its end)"
    if args.replay and args.http is not None:
        return "--http applies to live runs and --sim (for a finished directory: autorec serve DIR)"
    if args.token is not None and args.http is None:
        return "--token only applies with --http"
    return None


def _claim_output(out: Path):
    """Create the output directory and take its instance lock (one recorder per directory).

    Returns the held `InstanceLock`, or None after printing why not (a usage error, exit 2).
    """
    from autorec.instancelock import InstanceLock, InstanceLockError

    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        print(f"autorec run: cannot create {out}: {exc.strerror or exc}", file=sys.stderr)
        return None
    lock = InstanceLock(out)
    try:
        lock.acquire()
    except InstanceLockError as exc:
        print(f"autorec run: {exc}", file=sys.stderr)
        return None
    except OSError as exc:  # a planted link as the lock file, a read-only directory
        print(f"autorec run: cannot lock {out}: {exc.filename or lock.path}: {exc.strerror or exc}", file=sys.stderr)
        return None
    return lock


def _replay(args: argparse.Namespace, ruleset, out: Path) -> int:
    """Writing segments takes the output directory's instance lock, as a live run does: one recorder per directory."""

    path = Path(args.replay)
    if not path.is_file():
        print(f"autorec run: --replay: no such log: {path}", file=sys.stderr)
        return 1
    if args.dry_run:
        return _replay_into(args, ruleset, out, path)
    lock = _claim_output(out)
    if lock is None:
        return 2
    try:
        return _replay_into(args, ruleset, out, path)
    finally:
        lock.release()


def _replay_into(args: argparse.Namespace, ruleset, out: Path, path: Path) -> int:
    from autorec.filesource import FileSource, with_progress
    from autorec.pipeline import DryRun, Pipeline, run_file
    from autorec.writer import SegmentWriter

    source = FileSource(path)
    bar = None
    if args.dry_run:
        # Each segment's line as soon as it is decided; a progress bar (bytes of the log) on a terminal.
        if sys.stderr.isatty():
            from tqdm import tqdm

            size = path.stat().st_size
            bar = tqdm(total=size, unit="B", unit_scale=True, dynamic_ncols=True, file=sys.stderr, leave=False)
            sink = DryRun(say=lambda line: bar.write(line, file=sys.stdout))
        else:
            sink = DryRun(out=sys.stdout)
    else:
        # Offline nothing is lost by waiting for the disk: the writer blocks instead of dropping,
        # and a small queue is enough (a big one would only hold memory while reading races ahead).
        sink = SegmentWriter(
            out,
            ruleset.output.name,
            fsync=ruleset.output.fsync,
            telemetry=False,
            queue_max_bytes=min(ruleset.output.queue_max_bytes, REPLAY_QUEUE_BYTES),
            block=True,
        ).start()
    from autorec.scorelog import ScoreLog

    # A dry run sums the score track up on stdout; a replay into a directory writes it there.
    score_log = None if args.dry_run else ScoreLog(out)
    pipeline = Pipeline(
        ruleset, sink, offline=True, telemetry=False, score_sinks=[sink if score_log is None else score_log]
    )
    from autorec.prescore import default_jobs, prescored

    source = prescored(source, pipeline, args.jobs if args.jobs is not None else default_jobs())
    try:
        if bar is not None:  # the dry run's own bar, under which segment lines are printed
            run_file(pipeline, source, lambda done: bar.update(done - bar.n))
        else:
            run_file(pipeline, with_progress(source, sys.stderr.isatty(), "replay"))
    except OSError as exc:
        print(f"autorec run: cannot read {path}: {exc.strerror or exc}", file=sys.stderr)
        sink.close()
        if score_log is not None:
            score_log.close()
        return 1
    finally:
        if bar is not None:
            bar.close()
    sink.close()
    if score_log is not None:
        score_log.close()
    if source.truncated is not None:
        log.warning("%s ends inside a record at offset %d (cut off); read up to there", path, source.truncated.offset)
    if source.corrupt is not None:
        if source.records == 0:
            # Not a log at all (a JPEG, a text file): say so and fail, as `autorec info` does.
            print(f"autorec run: {path} is not an upstream log: {source.corrupt.reason}", file=sys.stderr)
            return 1
        log.warning("%s: stopped at offset %d: %s", path, source.corrupt.offset, source.corrupt.reason)
    if pipeline.stats.rejected:
        log.warning("%s: %d record(s) that are not PurpleDropEvents skipped", path, pipeline.stats.rejected)
    tl = pipeline.timeline
    if tl.outliers or tl.steps:
        log.warning(
            "%s: %d damaged timestamp(s) kept at the time before them (outliers), %d clock step(s) followed",
            path,
            tl.outliers,
            tl.steps,
        )
    if isinstance(sink, DryRun):
        sink.report(source.bytes, sys.stdout)
        sink.report_scores(sys.stdout)
    else:
        print(
            summary_line("end of log", sink.stats.segments, sink.stats.bytes, pipeline.stats.seen_bytes, out),
            flush=True,
        )
    return 0


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


class _Services:
    """The overnight services around a live pipeline, wired through its plug points.

    Writer observers: segment hooks, video export on close, retention. Stream
    listeners: disk floor guard (pauses the segmenter), alerts (with the
    on_alert hook), status file. Built before the writer starts; `close()`
    lets hooks and exports finish within the rule file's `shutdown_grace`.
    """

    def __init__(self, ruleset, out: Path) -> None:
        from autorec.alerts import AlertMonitor
        from autorec.diskfloor import DiskFloor, DiskWatch, MinFree
        from autorec.exportqueue import ExportQueue
        from autorec.hooks import SegmentHooks
        from autorec.hooks import from_config as hooks_from_config
        from autorec.retention import RetentionPolicy, RetentionWorker

        self.ruleset = ruleset
        self.out = out
        self.hooks = hooks_from_config(ruleset.hooks)
        self.export = ExportQueue(ruleset.output.video)
        self.retention = RetentionPolicy.from_config(ruleset.output.keep, ruleset.output.max_total)
        self.retention_worker: RetentionWorker | None = None
        self.monitor = AlertMonitor(ruleset.alerts.alert_after, ruleset.alerts.camera_stall)
        self.disk = DiskWatch(
            out, DiskFloor(MinFree.from_settings(ruleset.output.min_free, ruleset.output.min_free_percent))
        )
        self.segment_hooks = SegmentHooks(self.hooks)
        self.score_log = None  # set by _live
        self.overrides: list = []  # --set, applied again on reload

    def observers(self) -> list:
        from autorec.writer import SegmentObserver

        export = self.export

        class _ExportOnClose(SegmentObserver):
            def segment_closed(self, segment) -> None:
                export.submit(segment.path)

        out = [self.segment_hooks]
        if self.ruleset.output.video != "off":
            out.append(_ExportOnClose())
        return out

    def attach(self, pipeline, writer) -> None:
        from autorec.alerts import AlertReporter
        from autorec.diskfloor import DiskFloorGuard
        from autorec.journal import JOURNAL_NAME, JournalListener
        from autorec.retention import RetentionWorker
        from autorec.statusfile import StatusReporter

        self._pipeline, self._writer = pipeline, writer
        self.journal = JournalListener(
            self.out / JOURNAL_NAME,
            stats=lambda: {
                "messages": pipeline.stats.messages,
                "bytes_seen": pipeline.stats.bytes,
                "bytes_kept": writer.stats.bytes,
                "segments": writer.stats.segments,
                "disk_free": self.disk.floor.last_free,
            },
            counters=self.counters,
        )
        alerts = self.alerts = AlertReporter(self.monitor, self.hooks, pipeline.engine)
        alerts.observers.append(self.journal.alert)

        def floor_changed(t: float, change) -> None:
            if change.state == "below":
                alerts.disk_floor_reached(t, change.free_bytes, change.floor_bytes)
            else:
                alerts.disk_floor_cleared(t, change.free_bytes)

        guard = DiskFloorGuard(pipeline, self.disk, on_change=floor_changed, write_errors=lambda: writer.stats.errors)
        pipeline.listeners += [guard, alerts, self.journal]
        if self.retention.active:
            self.retention_worker = RetentionWorker(self.out, self.retention, index_lock=writer.index_lock).start()
            writer.add_observer(self.retention_worker)
            self.retention_worker.request()
        counters = self.counters
        if self.ruleset.output.status_file:
            self.status = StatusReporter(
                self.out / self.ruleset.output.status_file,
                counters=counters,
                alerts=self.monitor.status,
                writer_stats=lambda: writer.stats,
                disk=self.disk,
                scores=self.scores,
            )
            pipeline.listeners.append(self.status)
        else:
            self.status = None

    def counters(self) -> dict[str, int]:
        """The recorder's counters (status file, journal): a flat dict of ints."""
        pipeline, writer = self._pipeline, self._writer
        ps, ws = pipeline.stats, writer.stats
        out = {
            "messages": ps.messages,
            "rejected": ps.rejected,
            "firings": ps.firings,
            "segments_opened": ps.segments,
            "segments_closed": ws.segments,
            "bytes_written": ws.bytes,
            "dropped": ws.dropped,
            "telemetry_dropped": ws.telemetry_dropped + ws.telemetry_errors,
            "telemetry_paused": ps.telemetry_paused,
            "write_errors": ws.errors,
            "pre_roll_dropped": pipeline.segmenter.pre_roll_dropped[0],
            "suppressed_firings": pipeline.segmenter.suppressed,
            "clock_jumps": len(pipeline.timeline.jumps),
            "clock_steps": pipeline.timeline.steps,
            "clock_outliers": pipeline.timeline.outliers,
            "hooks_failed": self.hooks.counters.get("failed", 0) + self.hooks.counters.get("timed_out", 0),
            "exports_failed": self.export.failed,
            "trigger_errors": sum(pipeline.engine.errors.values()),
        }
        # A trigger's own counters (the motion trigger's corrupt frames, ...) as "RULE.NAME".
        for rule, trigger in pipeline.engine.triggers.items():
            for key, value in (getattr(trigger, "counters", None) or {}).items():
                if isinstance(value, int):
                    out[f"{rule}.{key}"] = value
        return out

    def scores(self) -> dict:
        """Each rule's latest score against its threshold (status file, web UI)."""
        return {
            rule: {
                "time": s.time,
                "score": s.value,
                "threshold": s.threshold,
                "ratio": round(s.value / s.threshold, 4) if s.threshold > 0 else None,
            }
            for rule, s in self._pipeline.scores.latest.items()
        }

    def web_feed(self):
        """A `LiveFeed` for the web UI, attached to this run's pipeline and writer."""
        from autorec.statusfile import RateMeter, segment_info
        from autorec.web.feed import LiveFeed

        pipeline, writer = self._pipeline, self._writer
        meter = RateMeter()
        recent: collections.deque = collections.deque(maxlen=20)

        def snapshot() -> dict:
            ws, floor = writer.stats, self.disk.floor
            return {
                "updated": time.time(),
                "msg_per_s": round(meter.rate(time.monotonic()), 2),
                "open_segment": segment_info(ws.open_segment),
                "last_segment": segment_info(ws.last_segment),
                "disk_free": floor.last_free,
                "disk_total": floor.last_total,
                "disk_below_floor": bool(floor.below),
                "counters": self.counters(),
                "alerts": self.monitor.status(),
                "scores": self.scores(),
            }

        class _Feed(LiveFeed):
            def message(self, t: float, kind: str | None) -> None:
                meter.add(time.monotonic())
                super().message(t, kind)

            def _segment_closed(self, summary: dict) -> None:
                recent.append(summary)
                super()._segment_closed(summary)

        feed = _Feed(snapshot, holds=pipeline.segmenter.open_holds, recent=lambda: list(recent))
        pipeline.listeners.append(feed)
        pipeline.frame_listeners.append(feed.frame)
        writer.add_observer(feed)
        return feed

    def start(self, mode: str, source: str | None) -> None:
        """Say in the journal that recording starts (after recovery, before the first message)."""
        from autorec.diskfloor import disk_usage

        try:
            disk: tuple[int, int] | None = disk_usage(self.out)
        except OSError:
            disk = None
        self.journal.start(mode=mode, source=source, rules=self.ruleset.path, out=self.out, disk=disk)

    def close(self) -> None:
        grace = self.ruleset.shutdown_grace
        self.journal.is_connected = False
        self.journal.stop()
        if self.score_log is not None and not self.score_log.close(10):
            log.warning("score track still being written after 10 s")
        if self.status is not None:
            self.status.is_connected = False  # the source is stopped: the last word says so
            self.status.update(force=True)
        if not self.hooks.close(grace):
            log.warning("hooks still running after %g s were stopped", grace)
        self.export.close(grace)
        if self.retention_worker is not None:
            self.retention_worker.close(5)


def _live(args: argparse.Namespace, ruleset, out: Path, duration: float | None) -> int:

    from autorec.pipeline import Pipeline
    from autorec.recovery import recover_directory
    from autorec.source import DEFAULT_URI, WebsocketSource
    from autorec.writer import SegmentWriter

    sim_config = None
    if args.sim:
        from autorec.sim.config import SimConfig

        try:
            sim_config = SimConfig.from_args(args)
        except ValueError as exc:
            print(f"autorec run: {exc}", file=sys.stderr)
            return 2
        sim_config.wait_for_clients = 1  # the recorder sees the stream from its first message
    http = None
    if args.http is not None:
        try:
            from autorec.web.server import parse_listen, resolve_token
        except ImportError:
            from autorec.commands.serve import WEB_EXTRA

            print(f"autorec run: --http: {WEB_EXTRA}", file=sys.stderr)
            return 2
        try:
            host, port = parse_listen(args.http)
        except ValueError as exc:
            print(f"autorec run: --http {exc}", file=sys.stderr)
            return 2
        http = (host, port, *resolve_token(host, args.token))
    uri = args.uri or ruleset.source or DEFAULT_URI
    live_source = None
    if sim_config is None:
        try:
            live_source = WebsocketSource(uri)  # check the URI now, not inside the event loop (a traceback)
        except ValueError as exc:
            print(f"autorec run: --uri: {exc}", file=sys.stderr)
            return 2
    lock = _claim_output(out)
    if lock is None:
        return 2
    try:
        if lock.previous is not None:
            log.info("took over the lock of a recorder that is gone (%s)", lock.previous.describe())
        for recovered in recover_directory(out, fsync=ruleset.output.fsync):
            log.warning("%s", recovered.message())
        services = _Services(ruleset, out)
        services.overrides = list(args.overrides)
        telemetry = ruleset.output.telemetry and not args.no_telemetry
        writer = SegmentWriter(
            out,
            ruleset.output.name,
            fsync=ruleset.output.fsync,
            telemetry=telemetry,
            queue_max_bytes=ruleset.output.queue_max_bytes,
            observers=services.observers(),
        )
        from autorec.scorelog import ScoreLog

        score_log = ScoreLog(out)  # scores-YYYYMMDD.csv.gz and near-misses.jsonl beside the telemetry
        services.score_log = score_log
        pipeline = Pipeline(
            ruleset,
            writer,
            rate=sim_config.speed if sim_config is not None else 1.0,
            telemetry=telemetry,
            score_sinks=[score_log],
        )
        services.attach(pipeline, writer)
        services.start("sim" if sim_config is not None else "live", None if sim_config is not None else uri)
        writer.start()
        return _record(pipeline, writer, services, uri, out, sim_config, duration, live_source, http)
    finally:
        lock.release()


def _reload(pipeline, services: _Services) -> None:
    """SIGHUP: load the rule file again; a valid one replaces the rules, an invalid one is reported and ignored."""
    from autorec.rules import ConfigError, load_rules

    path = pipeline.ruleset.path
    try:
        ruleset = load_rules(path, services.overrides)  # --set still applies after a reload
    except ConfigError as exc:
        for error in exc.errors:
            log.error("reload rejected: %s (the rules in use are kept)", error.line_text())
        return
    except OSError as exc:
        log.error("reload rejected: %s: cannot read: %s (the rules in use are kept)", path, exc.strerror or exc)
        return
    pipeline.reload(ruleset)
    services.alerts.engine = pipeline.engine
    log.info("reloaded %s: %d rule(s): %s", path, len(ruleset.rules), ", ".join(r.name for r in ruleset.rules))


def _record(
    pipeline,
    writer,
    services: _Services,
    uri: str,
    out: Path,
    sim_config,
    duration: float | None,
    live_source=None,
    http: tuple | None = None,
) -> int:
    import asyncio
    import contextlib
    import signal

    from autorec.pipeline import StatusLine, run_live
    from autorec.source import WebsocketSource
    from autorec.units import format_size

    status = StatusLine(
        pipeline,
        out,
        log_every=pipeline.ruleset.heartbeat,
        writer_stats=lambda: writer.stats,
        alerts=services.monitor.status,
    )

    why: list[str] = []  # why the run ended: the first reason is the one reported
    stop = asyncio.Event()  # binds to the loop on first use (Python >= 3.10)

    def stop_for(reason: str) -> None:
        why.append(reason)
        stop.set()

    async def main() -> None:
        loop = asyncio.get_running_loop()
        web_runner = None
        if http is not None:
            from autorec.web.server import WebUI, describe_url, start_server

            feed = services.web_feed()
            feed.loop = loop
            host, port, token, generated = http
            try:
                web_runner, base = await start_server(WebUI(out, feed, token), host, port)
            except OSError as exc:
                log.error("web UI: cannot listen on %s:%d: %s (recording goes on without it)", host, port, exc.strerror)
            else:
                log.info("web UI at %s", describe_url(base, token if generated else None))
        try:
            await _main(loop)
        finally:
            if web_runner is not None:
                await web_runner.cleanup()

    async def _main(loop) -> None:
        for sig in _signals():
            try:
                loop.add_signal_handler(sig, stop_for, f"{signal.Signals(sig).name} received")
            except (NotImplementedError, RuntimeError, ValueError):
                pass  # not the main thread (tests, embedding): the caller stops us another way
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError, AttributeError):
            loop.add_signal_handler(signal.SIGHUP, _reload, pipeline, services)
        if sim_config is None:
            if duration is not None:
                loop.call_later(duration, stop_for, "duration reached")
            log.info("recording %s into %s", uri, out)
            async with live_source as source:
                await run_live(pipeline, source, stop=stop, status=status)
            return
        from autorec.sim.server import SimServer

        async with SimServer(sim_config, host="127.0.0.1", port=0) as server:
            log.info("recording the simulator (%s) into %s", server.uri, out)
            async with WebsocketSource(server.uri) as source:
                live = asyncio.ensure_future(run_live(pipeline, source, stop=stop, status=status))
                finished = asyncio.ensure_future(server.wait_finished())
                stopped = asyncio.ensure_future(stop.wait())
                await asyncio.wait([finished, stopped, live], return_when=asyncio.FIRST_COMPLETED)
                if finished.done() and not stop.is_set():
                    # Let the last messages reach us: wait until the recorder has seen
                    # all the simulator published, bounded in time.
                    await _drain(server, source)
                    why.append("simulator finished")
                stop.set()
                await live
                for task in (finished, stopped):
                    task.cancel()

    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        pass
    finally:
        ok = writer.close(30)
        services.close()
    if not ok:
        log.error("writer did not finish within 30 s")
        return 1
    s = writer.stats
    log.info(
        "done: %d message(s), %d segment(s), %s written%s",
        pipeline.stats.messages,
        s.segments,
        format_size(s.bytes),
        f", {s.dropped} dropped" if s.dropped else "",
    )
    print(summary_line(why[0] if why else "stopped", s.segments, s.bytes, pipeline.stats.seen_bytes, out, s.dropped))
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


def _signals() -> list[int]:
    import signal

    return [signal.SIGINT, signal.SIGTERM]
