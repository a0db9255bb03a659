"""`autorec serve DIR`: the read-only web UI for an output directory (a run writing into it, or last night's).

`autorec serve DIR DIR ...`: the lab page (every directory a rig) and each rig's UI on its own port;
`autorec serve s3://BUCKET/PREFIX`: the lab page of an object store (see `autorec.web.lab`).
"""

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
        help="browse an output directory in a web browser (live page, night page, segments, JSON API); "
        "several directories or s3://BUCKET/PREFIX: the lab page of every rig",
        description="Serve a read-only web UI for DIR: the live state from the status file a run keeps there, "
        "the night's timeline and segments (new ones appear as they close), each segment's frames and plots, "
        "and a JSON API. For the live camera picture, attach the UI to the run itself: autorec run --http. "
        "With several directories (one per rig), / is the lab page: each rig's last status and nights, linking "
        "to each rig's own UI, served on the next ports (PORT+1, PORT+2, ...). With s3://BUCKET/PREFIX, / is the "
        "lab page of every rig uploading there, each night's segments listed and downloadable from the store.",
    )
    p.add_argument(
        "directory",
        metavar="DIR",
        nargs="+",
        help="an output directory of `autorec run`; several: the lab page; or s3://BUCKET/PREFIX (read-only)",
    )
    p.add_argument("--endpoint", default=None, metavar="URL", help="with s3://: the S3 endpoint (omit for AWS)")
    add_http_arguments(p, "127.0.0.1:8080")
    p.add_argument("-v", "--verbose", action="count", default=0)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import logging
    import os

    from autorec.io.mainloop import StopRequest, run_main

    log = logging.getLogger(__name__)
    dirs = args.directory
    if any(d.startswith("s3://") for d in dirs):
        if len(dirs) > 1:
            print("autorec serve: s3://BUCKET/PREFIX is served alone (it holds every rig)", file=sys.stderr)
            return 2
        return serve_store(args)
    if args.endpoint:
        print("autorec serve: --endpoint applies to s3://BUCKET/PREFIX", file=sys.stderr)
        return 2
    for d in dirs:
        if not os.path.isdir(d):
            print(f"autorec serve: {d}: not a directory", file=sys.stderr)
            return 2
    if len(dirs) > 1:
        return serve_lab(args)
    args.directory = dirs[0]
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


def _serve(args: argparse.Namespace, make_apps, what: str) -> int:
    """Run the servers `make_apps(host, port, token, host_names, runners)` starts (each runner appended to
    `runners`; it returns the lab page's URL) until stopped."""
    import logging

    from autorec.io.mainloop import StopRequest, run_main
    from autorec.web.server import describe_url

    log = logging.getLogger(__name__)
    http = http_settings(args, "serve")
    if http is None:
        return 2
    host, port, token, generated, names = http

    async def main(stop: StopRequest) -> None:
        runners = []
        try:
            base = await make_apps(host, port, token, names, runners)
            log.info("lab page of %s at %s", what, describe_url(base, token if generated else None))
            if token and not generated:
                log.info("every request must carry the --token given")
            await stop.wait()
        finally:
            for runner in reversed(runners):
                await runner.cleanup()

    try:
        run_main(main)
    except SystemExit as exc:
        print(exc, file=sys.stderr)
        return 1
    return 0


async def _start(app_ui, host: str, port: int, runners: list) -> tuple[str, int]:
    from autorec.web.server import start_server

    try:
        runner, base = await start_server(app_ui, host, port)
    except OSError as exc:
        raise SystemExit(f"autorec serve: cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    runners.append(runner)
    return base, int(base.rstrip("/").rsplit(":", 1)[1])


def rig_names(directories: list[str]) -> list[str]:
    """Each directory's rig name (`autorec.web.lab.uploaded_rig_name`, else the directory's name), made
    unique with `-2`, `-3`... (two Pis both called `raspberrypi`, two `out` directories)."""
    from pathlib import Path

    from autorec.web.lab import uploaded_rig_name

    names: list[str] = []
    for d in directories:
        base = uploaded_rig_name(Path(d)) or Path(d).resolve().name
        name, n = base, 1
        while name in names:
            n += 1
            name = f"{base}-{n}"
        names.append(name)
    return names


def serve_lab(args: argparse.Namespace) -> int:
    """`autorec serve DIR DIR ...`: each directory's UI on PORT+1, PORT+2... (any free port when PORT is 0),
    then the lab page on PORT."""
    import logging
    from pathlib import Path

    log = logging.getLogger(__name__)
    dirs = args.directory

    async def make_apps(host: str, port: int, token: str | None, names: list[str], runners: list) -> str:
        from autorec.web.feed import DirectoryFeed
        from autorec.web.labserver import LabUI, RigUI
        from autorec.web.server import WebUI

        rigs = []
        for i, (d, name) in enumerate(zip(dirs, rig_names(dirs)), start=1):
            ui = WebUI(d, DirectoryFeed(d), token, host_names=names)
            base, real = await _start(ui, host, port + i if port else 0, runners)
            log.info("rig %s (%s) at %s", name, d, base)
            rigs.append(RigUI(name, Path(d), real))
        base, _ = await _start(LabUI(rigs, token, names), host, port, runners)
        return base

    return _serve(args, make_apps, f"{len(dirs)} directories")


def serve_store(args: argparse.Namespace) -> int:
    """`autorec serve s3://BUCKET/PREFIX`: exit 2 for bad arguments or a missing extra."""
    from autorec.io.objectstore import ObjectStore, StoreLocation, check_endpoint

    try:
        location = StoreLocation.parse(args.directory[0])
        endpoint = check_endpoint(args.endpoint) if args.endpoint else None
    except ValueError as exc:
        print(f"autorec serve: {exc}", file=sys.stderr)
        return 2
    from autorec.extras import missing_s3

    if missing_s3("serve", "s3:// needs"):
        return 2
    store = ObjectStore(location, endpoint)

    async def make_apps(host: str, port: int, token: str | None, names: list[str], runners: list) -> str:
        from autorec.web.labserver import StoreLabUI

        base, _ = await _start(StoreLabUI(store, token, names), host, port, runners)
        return base

    try:
        return _serve(args, make_apps, str(location))
    finally:
        store.close()
