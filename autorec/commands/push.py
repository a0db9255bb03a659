"""`autorec push DIR`: upload what an output directory holds that is not in the store yet, then exit.

    autorec push recordings --upload-url s3://lab/autorec --upload-endpoint http://nas:8333 --rig rig-2
    autorec push recordings --rules rules/overnight.yaml          # the rule file's `upload:` section

For a cron job or an old directory; a running recorder uploads its own directory (push refuses a
directory a recorder holds). A progress bar on a terminal. Exit 0 when everything is uploaded,
1 when something could not be (the next push tries again), 2 for bad options or credentials
that the store refuses / a bucket that does not exist.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

log = logging.getLogger(__name__)


def add_parser(sub: argparse._SubParsersAction) -> None:
    from autorec.commands.run import add_upload_arguments

    p = sub.add_parser(
        "push",
        help="upload an output directory to S3-compatible storage and exit",
        description="Upload what DIR holds that is not uploaded yet (segments, sidecars, videos, timelapse, "
        "journal, status, the daily catalogues), then exit. Credentials come from boto3's chain "
        "(AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, AWS_PROFILE, ~/.aws/credentials). See docs/how-to/upload.md.",
    )
    p.add_argument("directory", metavar="DIR", help="an output directory of `autorec run`")
    p.add_argument("--rules", default=None, metavar="FILE", help="take `upload:` from this rule file")
    add_upload_arguments(p)
    p.add_argument("--max-rate", default=None, metavar="RATE", help="bandwidth cap, e.g. 2MB/s (default: none)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.add_argument("-v", "--verbose", action="count", default=0)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import dataclasses

    from autorec.commands.run import upload_settings
    from autorec.io.instancelock import InstanceLock, InstanceLockError
    from autorec.io.objectstore import StoreError
    from autorec.rules import ConfigError, load_rules, parse_rate
    from autorec.services.upload import Uploader

    current = None
    if args.rules:
        try:
            current = load_rules(args.rules).upload
        except ConfigError as exc:
            for error in exc.errors:
                print(f"autorec push: {error.line_text()}", file=sys.stderr)
            return 2
        except OSError as exc:
            print(f"autorec push: cannot read {args.rules}: {exc.strerror or exc}", file=sys.stderr)
            return 2
    settings = upload_settings(args, current, "push")
    if settings is False:
        return 2
    if settings is None:
        print(
            "autorec push: where to? --upload-url s3://BUCKET/PREFIX (or --rules FILE with an upload: section)",
            file=sys.stderr,
        )
        return 2
    if args.max_rate is not None:
        try:
            settings = dataclasses.replace(settings, max_rate=parse_rate(args.max_rate))
        except ValueError as exc:
            print(f"autorec push: --max-rate: {exc}", file=sys.stderr)
            return 2
    out = Path(args.directory)
    if not out.is_dir():
        print(f"autorec push: {out}: not a directory", file=sys.stderr)
        return 2
    lock = InstanceLock(out)
    try:
        lock.acquire()
    except InstanceLockError as exc:
        print(f"autorec push: {exc} (a running recorder uploads its own directory)", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"autorec push: cannot lock {out}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    try:
        uploader = Uploader(out, settings)
        progress = None
        if not args.quiet and sys.stderr.isatty():
            from tqdm import tqdm

            def progress(total: int):
                return tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024, desc="upload", file=sys.stderr)

        try:
            left = uploader.push(progress)
        except StoreError as exc:
            print(f"autorec push: {exc}", file=sys.stderr)
            return 2
        except OSError as exc:
            print(f"autorec push: {out}: {exc.strerror or exc}", file=sys.stderr)
            return 1
    finally:
        lock.release()
    from autorec.units import format_size

    where = uploader.describe()
    if left:
        print(
            f"autorec push: {len(left)} file(s) not uploaded ({', '.join(left[:3])}{', ...' if len(left) > 3 else ''});"
            " run it again",
            file=sys.stderr,
        )
        return 1
    print(f"autorec push: {uploader.uploaded} file(s), {format_size(uploader.uploaded_bytes)} uploaded to {where}")
    return 0
