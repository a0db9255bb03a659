"""`autorec serve DIR`: the read-only web UI for an output directory (a run writing into it, or last night's)."""

from __future__ import annotations

import argparse
import sys

from autorec.extras import install_hint

WEB_EXTRA = f"the web UI needs the 'web' extra (aiohttp, Bokeh): {install_hint('web')}"


def add_http_arguments(p: argparse.ArgumentParser, default: str | None) -> None:
    p.add_argument(
        "--http",
        metavar="[HOST:]PORT",
        default=default,
        help="serve the web UI here (loopback unless a HOST is given; any other HOST requires a token)"
        + (f" (default {default})" if default else ""),
    )
    p.add_argument(
        "--token",
        default=None,
        help="token every request must carry (?token=...); generated and printed once when HOST is not loopback",
    )
    p.add_argument(
        "--http-host-name",
        dest="http_host_names",
        action="append",
        default=[],
        metavar="NAME",
        help="also answer requests that name the server NAME (its DNS name, a proxy's); other names are "
        "refused, so a web page cannot reach the UI through DNS rebinding (repeatable)",
    )


def http_settings(args: argparse.Namespace, prog: str) -> tuple[str, int, str | None, bool, list[str]] | None:
    """`(host, port, token, token_generated, host_names)` from `--http`/`--token`/`--http-host-name`, or
    None after printing why not (the web extra is missing, or `--http` is not `[HOST:]PORT`): a usage
    error for the caller."""
    try:
        from autorec.units import parse_listen
        from autorec.web.server import resolve_token
    except ImportError:
        print(f"autorec {prog}: --http: {WEB_EXTRA}", file=sys.stderr)
        return None
    try:
        host, port = parse_listen(args.http)
    except ValueError as exc:
        print(f"autorec {prog}: --http {exc}", file=sys.stderr)
        return None
    names = list(getattr(args, "http_host_names", []) or [])
    return (host, port, *resolve_token(host, args.token), names)


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "serve",
        help="browse an output directory in a web browser (live page, night page, segments, JSON API)",
        description="Serve a read-only web UI for DIR: the live state from the status file a run keeps there, "
        "the night's timeline and segments (new ones appear as they close), each segment's frames and plots, "
        "and a JSON API. For the live camera picture, attach the UI to the run itself: autorec run --http.",
    )
    p.add_argument("directory", metavar="DIR", help="an output directory of `autorec run`")
    add_http_arguments(p, "127.0.0.1:8080")
    p.add_argument("-v", "--verbose", action="count", default=0)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import logging
    import os

    from autorec.io.mainloop import StopRequest, run_main

    log = logging.getLogger(__name__)
    if not os.path.isdir(args.directory):
        print(f"autorec serve: {args.directory}: not a directory", file=sys.stderr)
        return 2
    http = http_settings(args, "serve")
    if http is None:
        return 2
    host, port, token, generated, names = http
    from autorec.web.feed import DirectoryFeed
    from autorec.web.server import WebUI, describe_url, start_server

    async def main(stop: StopRequest) -> None:
        feed = DirectoryFeed(args.directory)
        ui = WebUI(args.directory, feed, token, host_names=names)
        try:
            runner, base = await start_server(ui, host, port)
        except OSError as exc:
            raise SystemExit(f"autorec serve: cannot listen on {host}:{port}: {exc.strerror or exc}") from None
        log.info("web UI for %s at %s", args.directory, describe_url(base, token if generated else None))
        if token and not generated:
            log.info("every request must carry the --token given")
        try:
            await stop.wait()
        finally:
            await runner.cleanup()

    try:
        run_main(main)
    except SystemExit as exc:
        print(exc, file=sys.stderr)
        return 1
    return 0
