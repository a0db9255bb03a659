"""The `autorec` command line: one subcommand per module in `autorec.commands`.

Each command module defines `add_parser(subparsers)` which registers its
arguments and sets `func` (taking the parsed args, returning an exit code).
Command modules import their heavy dependencies inside `func`, so that
`autorec --help` stays fast.

Exit codes: 0 success, 1 the job failed (unreadable log, failed export), 2 bad
usage or configuration.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from autorec import __version__

COMMANDS = (
    "run",
    "tune",
    "calibrate",
    "record",
    "info",
    "ls",
    "report",
    "serve",
    "video",
    "export",
    "sim",
    "replay",
    "check",
    "plugins",
    "push",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="autorec", description="Record the interesting parts of a PurpleDrop event stream."
    )
    parser.add_argument("--version", action="version", version=f"autorec {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMANDS:
        importlib.import_module(f"autorec.commands.{name}").add_parser(sub)
    return parser


def setup_logging(verbose: int = 0, log_file: str | None = None) -> None:
    level = logging.DEBUG if verbose > 1 else logging.INFO
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if log_file:
        handlers.append(logging.FileHandler(log_file))
    logging.basicConfig(
        level=level,
        format="%(asctime)s autorec %(levelname)s %(message)s",
        datefmt="%Y-%m-%dT%H:%M:%S",
        handlers=handlers,
        force=True,
    )
    # websockets logs every connection open/close at INFO; autorec reports
    # connections itself, once, in words a lab user reads. Keep theirs for -vv.
    logging.getLogger("websockets").setLevel(logging.DEBUG if verbose > 1 else logging.WARNING)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        setup_logging(getattr(args, "verbose", 0), getattr(args, "log_file", None))
    except OSError as exc:  # --log-file in a missing directory, or a directory
        print(f"autorec {args.command}: cannot open --log-file {args.log_file}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0
