"""`autorec video`: export the camera frames of logs to video files, each frame at its own time.

One log: `autorec video LOG [-o OUT]`. Batch: `autorec video DIR_OR_LOGS... [--out-dir DIR]`
writes one file per log (beside it, or under DIR mirroring a scanned directory's layout) and
skips logs whose video is already newer than the log. Directories are searched recursively for
`*.bin`; logs found that way without any camera frame (telemetry logs) are passed over, while a
log named on the command line without frames is an error.

Exit codes: 0 all exported or up to date, 1 any log failed (a summary lists them), 2 bad usage.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from dataclasses import dataclass
from pathlib import Path

from autorec.commands.batchconsole import BatchConsole
from autorec.outdir import TIMELAPSE_PREFIX

# What `autorec.media.video.ExportOptions` defaults to, for the help text without importing PyAV at
# startup (tests/test_video.py checks they agree).
DEFAULT_CRF = 28
DEFAULT_PRESET = "ultrafast"


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "video",
        help="export camera frames of logs to H.264 MP4 (or lossless MKV with --copy)",
        description="Export the camera frames of logs to video with true per-frame timing.",
    )
    p.add_argument("paths", nargs="+", metavar="DIR_OR_LOG", help="log files, or directories searched for *.bin")
    p.add_argument("-o", "--output", metavar="OUT", help="output file (one log only)")
    p.add_argument("--out-dir", metavar="DIR", help="write outputs here instead of beside each log")
    p.add_argument("--copy", action="store_true", help="no re-encode: original JPEGs into an MKV (lossless, fast)")
    p.add_argument(
        "--crf", type=int, default=None, help=f"H.264 quality, 0-51, lower is better (default {DEFAULT_CRF})"
    )
    p.add_argument("--preset", default=None, help=f"x264 speed preset (default {DEFAULT_PRESET})")
    p.add_argument(
        "--x264-params", default=None, metavar="K=V:...", help="extra x264 settings ('' for none; see README)"
    )
    p.add_argument("--start", metavar="T", help="first frame: seconds from the log's start (10, 5min) or ISO time")
    p.add_argument("--end", metavar="T", help="last frame: seconds from the log's start or ISO time")
    p.add_argument("--timestamp", action="store_true", help="burn each frame's local time into the picture")
    p.add_argument(
        "--fps",
        type=float,
        default=None,
        metavar="N",
        help="play frames at a fixed N per second instead of their own times (timelapse tracks: 10 unless given)",
    )
    p.add_argument("--force", action="store_true", help="export even when the output is up to date")
    p.add_argument(
        "--threads",
        type=int,
        default=None,
        help="JPEG decode threads beside the encoder (default: one per 2 CPUs, max 4; 0: none)",
    )
    p.add_argument(
        "--max-pixels",
        default="4096x4096",
        metavar="WxH",
        help="skip (never decode) frames larger than this many pixels, e.g. 4096x4096 (the default) or 16M",
    )
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar, no per-log lines")
    p.set_defaults(func=run)


@dataclass
class _Job:
    log: Path
    out: Path
    scanned: bool  # found by scanning a directory, not named

    @property
    def timelapse(self) -> bool:
        """A daily timelapse track: one frame every `output.timelapse` seconds of the night."""
        return self.log.name.startswith(TIMELAPSE_PREFIX)


# A timelapse at its true timing lasts as long as the night (one still frame every 30 s): without
# --fps it plays at this rate, a night at one frame per 30 s in ~2 minutes.
TIMELAPSE_FPS = 10.0


_PRESETS = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow")


def _usage(message: str) -> int:
    print(f"autorec video: {message}", file=sys.stderr)
    return 2


def _parse_pixels(text: str) -> int:
    """`4096x4096`, `16M` or `16000000` -> a pixel count (1 to 16384x16384)."""
    t = text.strip().lower()
    try:
        if "x" in t:
            w, h = t.split("x", 1)
            value = int(w) * int(h)
        elif t.endswith("m"):
            value = round(float(t[:-1]) * 1_000_000)
        else:
            value = int(t)
    except (ValueError, OverflowError):
        raise ValueError(f"{text!r} is not a size (WIDTHxHEIGHT like 4096x4096, or megapixels like 16M)") from None
    if not 1 <= value <= 16384 * 16384:
        raise ValueError(f"{text!r} is out of range (1 pixel to 16384x16384)")
    return value


def _jobs(args: argparse.Namespace, mode: str) -> tuple[list[_Job], list[str]]:
    from autorec.media import video

    jobs: list[_Job] = []
    missing: list[str] = []
    out_dir = Path(args.out_dir) if args.out_dir else None
    for raw in args.paths:
        path = Path(raw)
        if path.is_dir():
            for log in sorted(path.rglob("*.bin")):
                if not log.is_file():
                    continue
                target_dir = out_dir / log.parent.relative_to(path) if out_dir else None
                jobs.append(_Job(log, video.default_output(log, mode, target_dir), scanned=True))
        elif path.is_file():
            out = Path(args.output) if args.output else video.default_output(path, mode, out_dir)
            jobs.append(_Job(path, out, scanned=False))
        else:
            missing.append(raw)
    return jobs, missing


def run(args: argparse.Namespace) -> int:
    from autorec.media import video

    mode = "copy" if args.copy else "h264"
    if args.copy and args.timestamp:
        return _usage("--timestamp needs re-encoding: it cannot be used with --copy")
    if args.crf is None:
        args.crf = video.ExportOptions.crf
    if not 0 <= args.crf <= 51:
        return _usage(f"--crf must be 0-51, got {args.crf}")
    if args.preset is not None and args.preset not in _PRESETS:
        return _usage(f"unknown --preset {args.preset!r} (presets: {', '.join(_PRESETS)})")
    if args.fps is not None and not 0 < args.fps <= video.MAX_FPS:
        return _usage(f"--fps must be above 0 and at most {video.MAX_FPS:g}, got {args.fps:g}")
    if args.threads is not None and args.threads < 0:
        return _usage("--threads must be 0 (decode in the encoding thread) or more")
    try:
        max_pixels = _parse_pixels(args.max_pixels)
    except ValueError as exc:
        return _usage(f"--max-pixels: {exc}")
    try:
        start = video.TimeRef.parse(args.start) if args.start else None
        end = video.TimeRef.parse(args.end) if args.end else None
    except ValueError as exc:
        return _usage(f"--start/--end: {exc}")
    if start is not None and end is not None and start.absolute == end.absolute and end.seconds <= start.seconds:
        # otherwise every log would fail with 'no camera frames between --start and --end'
        return _usage(f"--end ({args.end}) must be after --start ({args.start})")
    if args.output and (len(args.paths) != 1 or Path(args.paths[0]).is_dir()):
        return _usage("-o/--output takes exactly one log file; use --out-dir for several")
    if args.output and Path(args.output).suffix.lower() != video.SUFFIX[mode]:
        return _usage(f"-o: {mode} output must end in {video.SUFFIX[mode]}")

    options = video.ExportOptions(
        mode=mode,
        crf=args.crf,
        preset=args.preset or video.ExportOptions.preset,
        x264_params=args.x264_params,
        start=start,
        end=end,
        timestamp=args.timestamp,
        decode_threads=args.threads,
        max_pixels=max_pixels,
        fps=args.fps,
    )
    jobs, missing = _jobs(args, mode)
    console = BatchConsole("video", args.quiet)
    fail = console.fail
    for m in missing:
        fail(f"{m}: no such file or directory")
    up_to_date = 0
    frameless = 0
    todo: list[tuple[_Job, int]] = []
    for job in jobs:
        if not args.force and video.is_up_to_date(job.log, job.out):
            up_to_date += 1
            if not job.scanned and not args.quiet:
                print(f"{job.out}: up to date (--force exports again)", flush=True)
            continue
        try:
            images = video.count_images(job.log)
        except OSError as exc:
            fail(f"{job.log}: cannot read: {exc.strerror or exc}")
            continue
        if images == 0 and job.scanned:
            frameless += 1  # telemetry and camera-less logs in a scanned directory are not errors
            continue
        todo.append((job, images))

    console.start_bar(sum(n for _, n in todo), unit="frame")
    exported = 0
    with console:
        for job, images in todo:
            console.describe(job.log.name)
            done = 0

            def progress(n: int) -> None:
                nonlocal done
                done += n
                console.update(n)

            job_options = options
            if job.timelapse and options.fps is None:
                job_options = dataclasses.replace(options, fps=TIMELAPSE_FPS)
                console.say(f"{job.log}: a timelapse track: {TIMELAPSE_FPS:g} frames a second (--fps to choose)")
            try:
                job.out.parent.mkdir(parents=True, exist_ok=True)
                result = video.export(job.log, job.out, job_options, progress)
            except video.ExportError as exc:
                fail(str(exc))
                continue
            except OSError as exc:
                # e.g. --out-dir names a file (mkdir): the path and reason, without Python's "[Errno 17]"
                fail(f"{job.log}: cannot write {job.out}: {exc.filename or ''}: {exc.strerror or exc}")
                continue
            finally:
                if done < images:
                    console.update(images - done)  # frames cut by --end, or the log's tail
            exported += 1
            console.say(f"{job.out}: {result.summary()}")

    if not jobs and not missing:
        print("autorec video: no logs found", file=sys.stderr)
        return 1
    if len(jobs) + len(missing) > 1 or any(job.scanned for job in jobs):  # a directory: say what was found
        parts = [f"{exported} exported", f"{up_to_date} up to date"]
        if frameless:
            parts.append(f"{frameless} without camera frames passed over")
        console.summary(parts)
    return 1 if console.failures else 0
