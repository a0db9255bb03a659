"""`autorec export`: segments to files other tools open. `--mcap`: one MCAP per segment (Foxglove, Lichtblick).

One segment: `autorec export SEGMENT.bin --mcap [-o OUT]`. A directory: `autorec export DIR --mcap`
exports every segment of its `index.jsonl` (every `*.bin` found below it when it has none) that has
no MCAP yet, or one older than the segment (`--force`: all), beside each segment or under
`--out-dir`. A progress bar (bytes of log) on a terminal.

Exit codes: 0 all exported or up to date, 1 any segment failed (each named), 2 bad usage or the
`mcap` extra missing.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from autorec.commands.batchconsole import BatchConsole


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "export",
        help="export segments to MCAP for Foxglove or Lichtblick (--mcap)",
        description="Export segments to MCAP: camera, plots, firings and the segment's facts in one file "
        "that Foxglove and Lichtblick open (see docs/how-to/mcap.md).",
    )
    p.add_argument("paths", nargs="+", metavar="SEGMENT_OR_DIR", help="segment logs (NAME.bin) or output directories")
    p.add_argument("--mcap", action="store_true", help="write MCAP (the one format so far; required)")
    p.add_argument("-o", "--output", metavar="OUT", help="output file (one segment only)")
    p.add_argument("--out-dir", metavar="DIR", help="write outputs here instead of beside each segment")
    p.add_argument("--rules", metavar="FILE", help="rule file to attach (default: the one the run's journal names)")
    p.add_argument("--force", action="store_true", help="export even when the output is up to date")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar, no per-segment lines")
    p.set_defaults(func=run)


def _usage(message: str) -> int:
    print(f"autorec export: {message}", file=sys.stderr)
    return 2


def _segments(directory: Path) -> list[Path]:
    """The segment logs of an output directory: its index's, else every *.bin below it."""
    from autorec.report.night import INDEX_NAME, read_index

    if (directory / INDEX_NAME).is_file():
        segments, problems = read_index(directory)
        for problem in problems:
            print(f"autorec export: {problem}", file=sys.stderr)
        return [s.path for s in segments]
    return [p for p in sorted(directory.rglob("*.bin")) if p.is_file()]


def run(args: argparse.Namespace) -> int:
    if not args.mcap:
        return _usage("say which format: --mcap (the only one so far)")
    try:
        import mcap.writer  # noqa: F401
        import mcap_protobuf.schema  # noqa: F401
        from foxglove_schemas_protobuf import CompressedImage_pb2  # noqa: F401
    except ImportError as exc:
        from autorec.extras import install_hint

        return _usage(f"MCAP export needs the 'mcap' extra ({exc.name} missing): {install_hint('mcap')}")
    from autorec.report import mcapexport

    if args.output and (len(args.paths) != 1 or Path(args.paths[0]).is_dir()):
        return _usage("-o/--output takes exactly one segment; use --out-dir for several")
    if args.output and Path(args.output).suffix.lower() != mcapexport.SUFFIX:
        return _usage(f"-o: the output must end in {mcapexport.SUFFIX}")

    console = BatchConsole("export", args.quiet)
    fail = console.fail

    out_dir = Path(args.out_dir) if args.out_dir else None
    jobs: list[tuple[Path, Path, bool]] = []  # (log, output, named on the command line)
    for raw in args.paths:
        path = Path(raw)
        if path.is_dir():
            for log in _segments(path):
                target = out_dir / log.parent.relative_to(path) if out_dir and log.is_relative_to(path) else out_dir
                jobs.append((log, mcapexport.default_output(log, target), False))
        elif path.is_file():
            out = Path(args.output) if args.output else mcapexport.default_output(path, out_dir)
            jobs.append((path, out, True))
        else:
            fail(f"{raw}: no such file or directory")

    todo: list[tuple[Path, Path]] = []
    up_to_date = 0
    for log, out, named in jobs:
        if not args.force and mcapexport.is_up_to_date(log, out):
            up_to_date += 1
            if named and not args.quiet:
                print(f"{out}: up to date (--force exports again)", flush=True)
            continue
        todo.append((log, out))

    console.start_bar(sum(log.stat().st_size for log, _ in todo if log.is_file()), unit="B", unit_scale=True)
    exported = 0
    with console:
        for log, out in todo:
            console.describe(log.name)
            try:
                out.parent.mkdir(parents=True, exist_ok=True)
                result = mcapexport.export(log, out, rule_file=args.rules, progress=console.update)
            except mcapexport.McapExportError as exc:
                fail(str(exc))
                continue
            except OSError as exc:  # e.g. --out-dir names a file
                fail(f"{log}: cannot write {out}: {exc.strerror or exc}")
                continue
            exported += 1
            console.say(f"{out}: {result.summary()}")

    if not jobs and not console.failures:
        print("autorec export: no segments found", file=sys.stderr)
        return 1
    if len(jobs) > 1 or len(args.paths) > 1 or any(Path(p).is_dir() for p in args.paths):
        console.summary([f"{exported} exported", f"{up_to_date} up to date"])
    return 1 if console.failures else 0
