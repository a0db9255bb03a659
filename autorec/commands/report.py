"""`autorec report DIR`: one night in one self-contained HTML page (and optionally a PNG summary)."""

from __future__ import annotations

import argparse
import sys

from autorec.extras import install_hint

REPORT_EXTRA = f"the report needs the 'report' extra (Bokeh; matplotlib for --png): {install_hint('report')}"


def add_parser(sub: argparse._SubParsersAction) -> None:
    from autorec.commands.ls import add_filter_arguments

    p = sub.add_parser(
        "report",
        help="one night of an output directory as a self-contained HTML page",
        description="Write one HTML file (opens offline, no network) with the night's summary, a zoomable "
        "timeline of segments, connection and alerts, the telemetry plots, and a card per segment with "
        "camera thumbnails. Reads a directory while a run is still writing it (what is finished).",
    )
    p.add_argument("directory", metavar="DIR", help="an output directory of `autorec run`")
    p.add_argument("-o", "--output", metavar="FILE.html", help="where to write the page (default DIR/report.html)")
    p.add_argument(
        "--png", metavar="FILE.png", help="also write a one-image summary (timeline + figures) for chat/e-mail"
    )
    p.add_argument("--no-thumbnails", action="store_true", help="leave the camera thumbnails out (faster, smaller)")
    add_filter_arguments(p)
    p.add_argument("-v", "--verbose", action="count", default=0)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import os

    from autorec.report.night import parse_when
    from autorec.units import format_size

    try:
        since = parse_when(args.since) if args.since else None
        until = parse_when(args.until) if args.until else None
    except ValueError as exc:
        print(f"autorec report: {exc}", file=sys.stderr)
        return 2
    if args.rule:
        print("autorec report: --rule is not supported here (use `autorec ls --rule`)", file=sys.stderr)
        return 2
    if not os.path.isdir(args.directory):
        print(f"autorec report: {args.directory}: not a directory", file=sys.stderr)
        return 2
    try:
        import bokeh  # noqa: F401  (the page's charts; imported late inside the report)

        from autorec.report.page import build_report
    except ImportError:
        print(f"autorec report: {REPORT_EXTRA}", file=sys.stderr)
        return 2
    if args.png:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            print(f"autorec report: --png: {REPORT_EXTRA}", file=sys.stderr)
            return 2
    try:
        report = build_report(args.directory, args.output, since, until, thumbnails=not args.no_thumbnails)
    except OSError as exc:
        where = args.output or os.path.join(args.directory, "report.html")
        print(f"autorec report: cannot write {where}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    for problem in report.problems:
        print(f"autorec report: {problem}", file=sys.stderr)
    print(
        f"{report.path}: {report.segments} segment(s), {format_size(report.bytes)}, made in {report.seconds:.1f} s"
        + (f"; {len(report.problems)} problem(s) listed on the page" if report.problems else "")
    )
    if args.png:
        from autorec.report.png import write_png

        try:
            write_png(args.directory, args.png, since, until)
        except OSError as exc:
            print(f"autorec report: cannot write {args.png}: {exc.strerror or exc}", file=sys.stderr)
            return 1
        print(f"{args.png}: summary image")
    return 0
