"""`autorec replay`: serve a recorded log as a live stream, with its original timing."""

from __future__ import annotations

import argparse
import sys


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "replay",
        help="serve a log as a live pdserver stream",
        description="Serve LOG on a websocket like pdserver, every record unchanged, at its original "
        "inter-message timing (records without a timestamp keep their place).",
    )
    p.add_argument("log", metavar="LOG", help="log file (upstream format)")
    p.add_argument("--speed", type=float, default=1.0, help="playback speed factor (default 1.0)")
    p.add_argument("--loop", action="store_true", help="start again from the top at the end, until stopped")
    p.add_argument("--host", default="127.0.0.1", help="address to serve on (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=7001, help="port to serve on (default 7001)")
    p.add_argument(
        "--max-gap",
        default=None,
        metavar="DURATION",
        help="shorten quiet stretches of the log to at most this long (e.g. 10s)",
    )
    p.add_argument("--wait", action="store_true", help="hold playback until the first client connects")
    p.add_argument("-v", "--verbose", action="count", default=0, help="more log output")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import asyncio
    import os

    from autorec.io.mainloop import StopRequest, run_main
    from autorec.io.replayserver import ReplayServer
    from autorec.units import parse_duration

    try:
        max_gap = None if args.max_gap is None else parse_duration(args.max_gap)
    except ValueError as exc:
        print(f"autorec replay: --max-gap: {exc}", file=sys.stderr, flush=True)
        return 2
    try:
        server = ReplayServer(
            args.log,
            speed=args.speed,
            loop=args.loop,
            host=args.host,
            port=args.port,
            max_gap=max_gap,
            wait_for_clients=1 if args.wait else 0,
        )
    except ValueError as exc:
        print(f"autorec replay: {exc}", file=sys.stderr, flush=True)
        return 2
    if not os.path.isfile(args.log):
        print(f"autorec replay: {args.log}: no such log file", file=sys.stderr, flush=True)
        return 1

    async def serve(stop: StopRequest) -> int:
        # SIGINT and SIGTERM end playback cleanly, with the summary and exit 0 (autorec.io.mainloop).
        try:
            async with server:
                print(f"autorec replay: serving {args.log} on {server.uri}", flush=True)
                finished = asyncio.ensure_future(server.wait_finished())
                stopping = asyncio.ensure_future(stop.wait())
                await asyncio.wait({finished, stopping}, return_when=asyncio.FIRST_COMPLETED)
                finished.cancel()
                stopping.cancel()
        except OSError as exc:
            print(f"autorec replay: {exc.strerror or exc}", file=sys.stderr, flush=True)
            return 1
        if server.error:
            print(f"autorec replay: {server.error}", file=sys.stderr, flush=True)
            return 1
        how = f"stopped by {stop.signal}" if stop.signal else "end of log"
        passes = f" in {server.passes} pass(es)" if args.loop else ""
        print(f"autorec replay: {how}; sent {server.records} record(s){passes} of {args.log}", flush=True)
        return 0

    return run_main(serve, interrupted=0)
