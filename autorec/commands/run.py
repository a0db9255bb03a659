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
import logging
import sys
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
            "(--sim), or offline over a log (--replay, with --dry-run to only list the segments)."
        ),
    )
    p.add_argument("--rules", required=True, metavar="FILE", help="rule file (YAML); see `autorec check`")
    p.add_argument("--uri", default=None, help="websocket of the rig (default: the rule file's source)")
    p.add_argument("--out", default=None, metavar="DIR", help="output directory (default: the rule file's output.dir)")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--sim", action="store_true", help="record the built-in simulator, run in this process")
    mode.add_argument("--replay", metavar="LOG", default=None, help="run the rules over a log as fast as possible")
    p.add_argument("--dry-run", action="store_true", help="with --replay: print the segments, write nothing")
    p.add_argument("--no-telemetry", action="store_true", help="do not write the daily telemetry log")
    p.add_argument("-v", "--verbose", action="count", default=0)
    p.add_argument("--log-file", default=None, metavar="FILE", help="also write log lines to FILE")
    # The simulator's options; its --duration (simulated time with --sim) is also how long a live run lasts.
    add_sim_arguments(p, network=False)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from autorec.rules import ConfigError, load_rules
    from autorec.units import parse_duration

    try:
        ruleset = load_rules(args.rules)
    except ConfigError as exc:
        print(f"autorec run: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"autorec run: cannot read {args.rules}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    if args.dry_run and not args.replay:
        print("autorec run: --dry-run needs --replay LOG", file=sys.stderr)
        return 2
    try:
        duration = None if args.sim_duration is None else parse_duration(args.sim_duration)
    except ValueError as exc:
        print(f"autorec run: --duration: {exc}", file=sys.stderr)
        return 2
    out = Path(args.out) if args.out else Path(ruleset.output.dir)
    if args.replay:
        return _replay(args, ruleset, out)
    return _live(args, ruleset, out, duration)


def _replay(args: argparse.Namespace, ruleset, out: Path) -> int:
    from autorec.filesource import FileSource
    from autorec.pipeline import DryRun, Pipeline, run_file
    from autorec.writer import SegmentWriter

    path = Path(args.replay)
    if not path.is_file():
        print(f"autorec run: --replay: no such log: {path}", file=sys.stderr)
        return 1
    source = FileSource(path)
    if args.dry_run:
        sink = DryRun()
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
    pipeline = Pipeline(ruleset, sink, offline=True, telemetry=False)
    try:
        run_file(pipeline, source)
    except OSError as exc:
        print(f"autorec run: cannot read {path}: {exc.strerror or exc}", file=sys.stderr)
        sink.close()
        return 1
    sink.close()
    if source.truncated is not None:
        log.warning("%s ends inside a record at offset %d (cut off); read up to there", path, source.truncated.offset)
    if source.corrupt is not None:
        log.warning("%s: stopped at offset %d: %s", path, source.corrupt.offset, source.corrupt.reason)
    if pipeline.stats.rejected:
        log.warning("%s: %d record(s) that are not PurpleDropEvents skipped", path, pipeline.stats.rejected)
    if isinstance(sink, DryRun):
        sink.report(source.bytes, sys.stdout)
    else:
        print(
            f"{sink.stats.segments} segment(s), {sink.stats.bytes} bytes written to {out} "
            f"from {pipeline.stats.messages} messages",
            file=sys.stdout,
        )
    return 0


def _live(args: argparse.Namespace, ruleset, out: Path, duration: float | None) -> int:
    import asyncio

    from autorec.pipeline import Pipeline, StatusLine, run_live
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
    uri = args.uri or ruleset.source or DEFAULT_URI
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        print(f"autorec run: cannot create {out}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    writer = SegmentWriter(
        out,
        ruleset.output.name,
        fsync=ruleset.output.fsync,
        telemetry=ruleset.output.telemetry and not args.no_telemetry,
        queue_max_bytes=ruleset.output.queue_max_bytes,
    ).start()
    pipeline = Pipeline(
        ruleset,
        writer,
        rate=sim_config.speed if sim_config is not None else 1.0,
        telemetry=ruleset.output.telemetry and not args.no_telemetry,
    )
    status = StatusLine(pipeline, out, writer_stats=lambda: writer.stats)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        for sig in _signals():
            try:
                loop.add_signal_handler(sig, stop.set)
            except (NotImplementedError, RuntimeError, ValueError):
                pass  # not the main thread (tests, embedding): the caller stops us another way
        if sim_config is None:
            if duration is not None:
                loop.call_later(duration, stop.set)
            log.info("recording %s into %s", uri, out)
            async with WebsocketSource(uri) as source:
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
                    await _drain(server, pipeline)
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
    if not ok:
        log.error("writer did not finish within 30 s")
        return 1
    s = writer.stats
    log.info(
        "done: %d message(s), %d segment(s), %d bytes written%s",
        pipeline.stats.messages,
        s.segments,
        s.bytes,
        f", {s.dropped} dropped" if s.dropped else "",
    )
    return 0


async def _drain(server, pipeline, timeout: float = 5.0) -> None:
    """Wait until the pipeline has received as many messages as the simulator published (or `timeout`)."""
    import asyncio
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        published = server.broadcaster.published
        if pipeline.stats.messages + pipeline.stats.rejected >= published:
            return
        await asyncio.sleep(0.02)


def _signals() -> list[int]:
    import signal

    return [signal.SIGINT, signal.SIGTERM]
