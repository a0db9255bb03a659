"""`autorec record [--uri ws://localhost:7001] OUT`: record the whole stream, like upstream pdrecord.

Every frame that parses as a `PurpleDropEvent` is written to OUT exactly as
received, in order (an upstream-format log: upstream's reader parses every
record, so nothing else may go in). Frames that do not parse go, framed the
same way, to `OUT.rejected`. Lost connections are retried for ever (capped
backoff) and reported as gaps. Ctrl-C, SIGTERM or `--duration` end the
recording: the log is flushed and closed, a summary is printed, exit 0.
Exit 1 if it never connected, or if records could not be written (disk full): the recording goes on
meanwhile, and the log always ends on a whole record. That is the disk-error
policy of the capture loop `record` shares with `EventRecorder`
(`autorec.io.capture`); this module only adds the arguments and the summary.
Exit 2 for usage errors (an existing OUT without --append/--force, an OUT
that cannot be opened, a bad URI or duration).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from autorec.core.streamitems import Message
    from autorec.io.capture import StreamCapture
    from autorec.io.mainloop import StopRequest

log = logging.getLogger(__name__)

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
    from autorec.io.capture import StreamCapture
    from autorec.io.mainloop import run_main
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
    capture = StreamCapture(source, args.out, mode, on_message=_print_kind if args.verbose else None)
    try:
        capture.open()  # before connecting: a wrong OUT is a usage error, and OUT exists from the start
    except FileExistsError as exc:
        print(f"{prog}: {exc.filename} exists; use --append to add to it or --force to replace it", file=sys.stderr)
        return 2
    except OSError as exc:  # nothing recorded yet: a missing directory, a directory, a corrupt log to --append to
        # The file it is about: OUT, or OUT.rejected (a stale one that --force cannot remove).
        print(f"{prog}: cannot open {exc.filename or args.out}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    return run_main(lambda stop: _record(capture, stop), duration=duration, interrupted=1)


def _print_kind(message: Message) -> None:
    try:
        print(message.kind if message.rejected is None else f"rejected ({message.rejected})", flush=True)
    except BrokenPipeError:
        # `autorec record -v OUT | head`: the reader of the kinds went away, the recording goes on.
        # stdout now goes nowhere, so neither this nor the summary nor the exit can fail on it.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
        log.warning("stdout was closed: message kinds are no longer printed; the recording goes on")


async def _record(capture: StreamCapture, stop: StopRequest) -> int:
    """The shared capture loop (its disk-error policy: `autorec.io.capture`), then the summary.
    Exit 1 if records were lost or the capture ended on an error, else 0."""
    started = time.monotonic()
    await capture.run(stop=stop)
    _summary(capture, time.monotonic() - started, stop.reason or "stopped")
    stats = capture.source.stats
    if stats.connects == 0:
        # An empty log and exit 0 would read as "a quiet rig" to the script that started us.
        cause = stats.gaps[-1].cause if stats.gaps else "no attempt finished"
        print(f"autorec record: never connected to {capture.source.uri} ({cause})", file=sys.stderr)
        return 1
    if capture.error is not None:
        log.error("the recording ended early: %s", capture.error, exc_info=capture.error)
        return 1
    return 1 if capture.lost else 0


def _summary(capture: StreamCapture, elapsed: float, reason: str) -> None:
    from autorec.units import format_duration, format_size

    stats = capture.source.stats
    files = capture.files
    assert files is not None  # opened before the loop
    gap_time = sum(g.duration or 0.0 for g in stats.gaps)
    lines = [
        f"autorec record: {reason}; {capture.path}",
        f"  messages: {files.messages}  bytes: {format_size(stats.bytes)}  duration: {format_duration(elapsed)}",
        f"  gaps: {len(stats.gaps)} ({format_duration(gap_time)} without a connection)  reconnects: {stats.reconnects}",
        f"  rejected: {files.rejected}"
        + (f" (in {files.rejected_path})" if files.rejected else "")
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
        lines.append(f"  next: autorec info {p}, autorec video {p}, autorec run --rules RULES --log {p} --dry-run")
    print("\n".join(lines), flush=True)
