"""`autorec record [--uri ws://localhost:7001] OUT`: record the whole stream, like upstream pdrecord.

Every frame that parses as a `PurpleDropEvent` is written to OUT exactly as
received, in order (an upstream-format log: upstream's reader parses every
record, so nothing else may go in). Frames that do not parse go, framed the
same way, to `OUT.rejected`. Lost connections are retried for ever (capped
backoff) and reported as gaps. Ctrl-C, SIGTERM or `--duration` end the
recording: the log is flushed and closed, a summary is printed, exit 0.
Exit 1 if records could not be written (disk full): the recording goes on
meanwhile, and the log always ends on a whole record. Exit 2 for usage errors
(an existing OUT without --append/--force, an OUT that cannot be opened, a bad
URI or duration).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import Any

DEFAULT_URI = "ws://localhost:7001"


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "record",
        help="record the whole event stream to an upstream-format log (like pdrecord)",
        description="Record every event of a PurpleDrop stream to OUT until Ctrl-C, SIGTERM or --duration.",
    )
    p.add_argument("out", metavar="OUT", help="log file to write (upstream pdrecord format)")
    p.add_argument("--uri", default=DEFAULT_URI, help=f"pdserver websocket (default {DEFAULT_URI})")
    exists = p.add_mutually_exclusive_group()
    exists.add_argument("--append", action="store_true", help="add to an existing OUT")
    exists.add_argument("--force", action="store_true", help="replace an existing OUT")
    p.add_argument("--duration", metavar="TIME", help="stop after this long, e.g. 30s, 10min, 2h")
    p.add_argument("-v", "--verbose", action="count", default=0, help="print the kind of every message")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:

    from autorec.io.recorder import CaptureLog
    from autorec.io.source import WebsocketSource
    from autorec.units import parse_duration

    prog = "autorec record"
    duration = None
    if args.duration is not None:
        try:
            duration = parse_duration(args.duration)
        except ValueError as exc:
            print(f"{prog}: --duration: {exc}", file=sys.stderr)
            return 2
    try:
        source = WebsocketSource(args.uri)
    except ValueError as exc:
        print(f"{prog}: --uri: {exc}", file=sys.stderr)
        return 2
    mode = "append" if args.append else "overwrite" if args.force else "new"
    try:
        capture = CaptureLog(args.out, mode)
    except FileExistsError as exc:
        print(f"{prog}: {exc.filename} exists; use --append to add to it or --force to replace it", file=sys.stderr)
        return 2
    except OSError as exc:  # nothing recorded yet: a missing directory, a directory, a corrupt log to --append to
        print(f"{prog}: cannot open {args.out}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    from autorec.io.mainloop import run_main

    return run_main(lambda stop: _record(source, capture, stop, args.verbose), duration=duration, interrupted=1)


class DiskTrouble:
    """What `record` says about write errors: one line when they start, one when writes work again.

    Recovery is only declared when a flush really wrote records (a flush with nothing buffered
    proves nothing: it used to announce "works again" a second before the next ENOSPC). Both
    lines are rate-limited: a disk that fails and recovers over and over is reported at most
    once every `repeat` seconds, with the count of failures in between.
    """

    def __init__(self, log: Any, path: Any, repeat: float = 60.0, clock: Callable[[], float] | None = None) -> None:
        import time

        self.log, self.path, self.repeat = log, path, repeat
        self.clock = clock or time.monotonic
        self.failing = False
        self._reported = False  # the current failure was logged
        self._last_log: float | None = None
        self._unreported = 0  # failures since the last logged one

    def failed(self, exc: BaseException) -> None:
        if self.failing:
            return
        self.failing = True
        now = self.clock()
        if self._last_log is not None and now - self._last_log < self.repeat:
            self._unreported += 1
            self._reported = False
            return
        more = f" ({self._unreported} more failure(s) since the last report)" if self._unreported else ""
        self.log.error("%s; recording continues, lost records are counted%s", exc, more)
        self._last_log, self._unreported, self._reported = now, 0, True

    def wrote(self, lost: int) -> None:
        """A flush wrote records."""
        if not self.failing:
            return
        self.failing = False
        if self._reported:
            self.log.info("writing to %s works again (%d records lost so far)", self.path, lost)


async def _record(source, capture, stop, verbose: int) -> int:
    import asyncio
    import logging
    import time

    from autorec.core.streamitems import Message
    from autorec.io.logfile import LogWriteError

    log = logging.getLogger(__name__)
    loop = asyncio.get_running_loop()
    trouble = DiskTrouble(log, capture.path)
    stop.on_stop(source.stop)

    def guarded(action) -> bool:
        # Disk full or an I/O error: say so (rate-limited), count what is lost, keep recording.
        before = capture.written
        try:
            action()
        except LogWriteError as exc:
            trouble.failed(exc)
            return False
        if capture.written > before:
            trouble.wrote(capture.lost)
        return True

    def flush_tick() -> None:
        # Keep the file current even when the stream goes quiet (info/tail on a live log).
        guarded(capture.flush)
        timers[0] = loop.call_later(1.0, flush_tick)

    timers = [loop.call_later(1.0, flush_tick)]
    started = time.monotonic()
    log.info("recording %s to %s", source.uri, capture.path)
    try:
        async for item in source:
            if not isinstance(item, Message):
                continue  # the source logs connects and gaps itself
            guarded(lambda m=item: capture.write(m))
            if verbose:
                print(item.kind if item.rejected is None else f"rejected ({item.rejected})", flush=True)
    finally:
        for timer in timers:
            timer.cancel()
        guarded(capture.close)
        await source.close()
    elapsed = time.monotonic() - started
    _summary(capture, source.stats, elapsed, stop.reason or "stopped")
    return 1 if capture.lost else 0


def _summary(capture, stats, elapsed: float, reason: str) -> None:
    from autorec.units import format_duration, format_size

    gap_time = sum(g.duration or 0.0 for g in stats.gaps)
    lines = [
        f"autorec record: {reason}; {capture.path}",
        f"  messages: {capture.messages}  bytes: {format_size(stats.bytes)}  duration: {format_duration(elapsed)}",
        f"  gaps: {len(stats.gaps)} ({format_duration(gap_time)} without a connection)  reconnects: {stats.reconnects}",
        f"  rejected: {capture.rejected}"
        + (f" (in {capture.rejected_path})" if capture.rejected else "")
        + f"  text frames skipped: {stats.text_frames}",
    ]
    shown = stats.gaps[-10:]
    if len(stats.gaps) > len(shown):
        lines.append(f"    ({len(stats.gaps) - len(shown)} earlier gaps not shown)")
    for gap in shown:
        lines.append(f"    gap of {format_duration(gap.duration or 0.0)}: {gap.cause}")
    if capture.lost:
        lines.append(f"  NOT WRITTEN (disk/I-O errors): {capture.lost} records")
    if capture.messages:
        p = capture.path
        lines.append(f"  next: autorec info {p}, autorec video {p}, autorec run --rules RULES --replay {p} --dry-run")
    print("\n".join(lines), flush=True)
