"""`autorec ls DIR`: the segments of an output directory, one line each, with totals.

`autorec ls s3://BUCKET/PREFIX`: the segments of every rig that uploads there, from the daily
catalogues (`rig=NAME/date=DAY/segments.parquet`, see docs/how-to/upload.md).
"""

from __future__ import annotations

import argparse
import json
import sys

from autorec.outdir import INDEX_NAME
from autorec.units import format_duration, format_size


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "ls",
        help="list the segments of an output directory",
        description="List the segments an `autorec run` kept in DIR: local and UTC start, duration, rules, "
        "size and why each closed, then the totals. Problems (a damaged index line, a missing file) go to stderr.",
    )
    p.add_argument(
        "directory", metavar="DIR", help="an output directory (holds index.jsonl), or s3://BUCKET/PREFIX (every rig's)"
    )
    add_filter_arguments(p)
    p.add_argument("--rig", action="append", default=[], metavar="NAME", help="with s3://: only this rig (repeat)")
    p.add_argument("--endpoint", default=None, metavar="URL", help="with s3://: the S3 endpoint (omit for AWS)")
    p.add_argument("--json", action="store_true", help="print JSON (raw numbers, epoch seconds and ISO times)")
    p.set_defaults(func=run)


def add_filter_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--rule", action="append", default=[], metavar="NAME", help="only segments of this rule (repeat)")
    p.add_argument("--from", dest="since", metavar="TIME", help="only segments ending after TIME (see below)")
    p.add_argument("--to", dest="until", metavar="TIME", help="only segments starting before TIME")
    p.epilog = (
        "TIME is ISO 8601 ('2026-11-30T22:00', local time unless it ends in Z or an offset like +01:00), "
        "a time of day ('22:00', today in local time), or epoch seconds."
    )


def listing(directory: str, rules: list[str], since: str | None, until: str | None, as_json: bool, prog: str) -> int:
    """Print the segments of `directory` (text or JSON). Exit code: 0, or 2 for bad arguments / not a directory."""
    import os

    from autorec.report.night import load_night, local_text, parse_when, utc_text

    try:
        t0 = parse_when(since) if since else None
        t1 = parse_when(until) if until else None
    except ValueError as exc:
        print(f"autorec {prog}: {exc}", file=sys.stderr)
        return 2
    if not os.path.isdir(directory):
        print(f"autorec {prog}: {directory}: not a directory", file=sys.stderr)
        return 2
    night = load_night(directory, since=t0, until=t1)
    segments = [s for s in night.segments if not rules or set(rules) & set(s.rules)]
    for problem in night.problems:
        print(f"autorec {prog}: {problem}", file=sys.stderr)
    total = sum(s.bytes for s in segments)
    length = sum(s.duration for s in segments)
    if as_json:
        out = {
            "directory": str(night.directory),
            "segments": [s.row() for s in segments],
            "totals": {"segments": len(segments), "bytes": total, "duration_s": round(length, 3)},
            "open": [str(p) for p in night.partials],
            "problems": night.problems,
        }
        print(json.dumps(out, indent=1))
        return 0
    if not segments:
        what = "no segments" + (" match" if (rules or t0 or t1) and night.segments else "")
        print(
            f"{what} in {directory}" + (" (no index.jsonl yet)" if not (night.directory / INDEX_NAME).exists() else "")
        )
    else:
        print(f"{'local start':19}  {'UTC start':19}  {'length':>8}  {'size':>8}  {'close':10}  rules")
        for s in segments:
            flags = "" if s.exists else "  [file missing]"
            print(
                f"{local_text(s.start):19}  {utc_text(s.start):19}  {format_duration(s.duration):>8}  "
                f"{format_size(s.bytes):>8}  {s.close_reason:10}  {'+'.join(s.rules)}{flags}"
            )
        print(f"{len(segments)} segment(s), {format_size(total)}, {format_duration(length)} recorded")
    for p in night.partials:
        print(
            f"open: {p.name} (being recorded, or left by a crash: the next `autorec run` on this directory finishes it)"
        )
    return 0


def run(args: argparse.Namespace) -> int:
    if args.directory.startswith("s3://"):
        return store_listing(args)
    if args.rig or args.endpoint:
        print("autorec ls: --rig and --endpoint apply to s3://BUCKET/PREFIX", file=sys.stderr)
        return 2
    return listing(args.directory, args.rule, args.since, args.until, args.json, "ls")


def store_listing(args: argparse.Namespace) -> int:
    """`autorec ls s3://...`: exit 0, 1 when the store cannot be read, 2 for bad arguments."""
    from autorec.io.objectstore import ObjectStore, StoreError, StoreLocation, check_endpoint
    from autorec.report.night import local_text, parse_when, utc_text

    try:
        location = StoreLocation.parse(args.directory)
        endpoint = check_endpoint(args.endpoint) if args.endpoint else None
        t0 = parse_when(args.since) if args.since else None
        t1 = parse_when(args.until) if args.until else None
    except ValueError as exc:
        print(f"autorec ls: {exc}", file=sys.stderr)
        return 2
    from autorec.extras import missing_s3

    if missing_s3("ls", "s3:// needs"):
        return 2
    from autorec.io.catalogue import store_rows

    store = ObjectStore(location, endpoint)
    try:
        rows, problems = store_rows(store, args.rig, t0, t1)
    except StoreError as exc:
        print(f"autorec ls: {exc}", file=sys.stderr)
        return 1
    rows = [
        r
        for r in rows
        if (not args.rule or set(args.rule) & set(r.get("rules") or []))
        and (t0 is None or (r.get("end") or 0) >= t0)
        and (t1 is None or (r.get("start") or 0) <= t1)
    ]
    for problem in problems:
        print(f"autorec ls: {problem}", file=sys.stderr)
    total = sum(r.get("bytes") or 0 for r in rows)
    length = sum(r.get("duration_s") or 0 for r in rows)
    rigs = sorted({r["rig"] for r in rows if r.get("rig")})
    if args.json:
        from autorec.dates import utc_iso

        for r in rows:
            r["start_iso"] = utc_iso(r["start"]) if r.get("start") is not None else None
            r["end_iso"] = utc_iso(r["end"]) if r.get("end") is not None else None
        out = {
            "store": str(location),
            "segments": rows,
            "totals": {"segments": len(rows), "rigs": rigs, "bytes": total, "duration_s": round(length, 3)},
            "problems": problems,
        }
        print(json.dumps(out, indent=1, default=str))
        return 0
    if not rows:
        print(f"no segments{' match' if (args.rule or t0 or t1 or args.rig) else ''} in {location}")
        return 0
    width = max(4, *(len(r.get("rig") or "") for r in rows))
    print(f"{'rig':{width}}  {'local start':19}  {'UTC start':19}  {'length':>8}  {'size':>8}  {'close':10}  rules")
    for r in rows:
        start = r.get("start") or 0
        print(
            f"{r.get('rig') or '?':{width}}  {local_text(start):19}  {utc_text(start):19}  "
            f"{format_duration(r.get('duration_s') or 0):>8}  {format_size(r.get('bytes') or 0):>8}  "
            f"{r.get('close_reason') or '?':10}  {'+'.join(r.get('rules') or [])}"
        )
    print(f"{len(rows)} segment(s) from {len(rigs)} rig(s), {format_size(total)}, {format_duration(length)} recorded")
    return 0
