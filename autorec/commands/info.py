"""`autorec info LOG...`: what is in a log, fast, without decoding images.

Per log: records; per kind count, payload bytes and rate; the time span
(earliest and latest event timestamp, epoch seconds); image frames, their mean
record size and the first frame's resolution (read from the JPEG's SOF
header, not decoded); truncation (a cut final record: still readable, exit 0)
and corruption (an absurd length prefix: exit 1, as for an unreadable file).

`--json` prints one object per log (a list for several) with `path`,
`size`, `records`, `kinds: {kind: {"count", "bytes"}}`, `start`/`end`
(epoch seconds or null), `duration`, `images: {"count", "mean_bytes",
"width", "height"}`, `truncated` (null or `{"offset", "missing_bytes"}`),
`corrupt` (null or `{"offset", "reason"}`), `trailing_bytes` (bytes after the
last whole record) and, for an unreadable file, `error`. Records whose first
byte names no known kind are counted under the kind "unknown".

Speed: the scan looks only at each record's length prefix and first bytes
(`LogReader.heads`, which seeks past payloads) and takes the kind from the
first tag byte. Timestamps
are parsed straight from those first bytes (every event type that has one
serializes it ahead of its bulk data); only a small record whose timestamp
lies beyond the head is decoded whole. Timestamps of 0 or less count as unset.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from dataclasses import dataclass, field
from typing import Any

from autorec.events import ABSENT, UNKNOWN, head_timestamp
from autorec.frames.jpeg import jpeg_size

HEAD = 64  # bytes of each payload looked at; holds the timestamp of every kind in practice
DECODE_LIMIT = 64 * 1024  # small records whose timestamp is not in the head are decoded whole


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "info",
        help="summarize logs: kinds, counts, rates, time span, images, truncation",
        description="Summarize upstream-format logs quickly (images are never decoded).",
    )
    p.add_argument("logs", nargs="+", metavar="LOG", help="log file(s), or one output directory to list its segments")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=run)


# -- reading timestamps and JPEG sizes from raw bytes -------------------------

# -- the summary -------------------------------------------------------------------


@dataclass
class LogInfo:
    path: str
    size: int = 0
    records: int = 0
    kinds: dict[str, list[int]] = field(default_factory=dict)  # kind -> [count, bytes]
    start: float | None = None
    end: float | None = None
    image_size: tuple[int, int] | None = None
    truncated: dict[str, int] | None = None
    corrupt: dict[str, Any] | None = None
    trailing_bytes: int = 0
    error: str | None = None

    @property
    def failed(self) -> bool:
        return self.error is not None or self.corrupt is not None

    @property
    def duration(self) -> float | None:
        return None if self.start is None or self.end is None else self.end - self.start

    def as_dict(self) -> dict[str, Any]:
        if self.error is not None:
            return {"path": self.path, "error": self.error}
        count, nbytes = self.kinds.get("image", [0, 0])
        return {
            "path": self.path,
            "size": self.size,
            "records": self.records,
            "kinds": {k: {"count": c, "bytes": b} for k, (c, b) in sorted(self.kinds.items())},
            "start": self.start,
            "end": self.end,
            "duration": self.duration,
            "images": {
                "count": count,
                "mean_bytes": round(nbytes / count) if count else None,
                "width": self.image_size[0] if self.image_size else None,
                "height": self.image_size[1] if self.image_size else None,
            },
            "truncated": self.truncated,
            "corrupt": self.corrupt,
            "trailing_bytes": self.trailing_bytes,
        }


def read_log_info(path: str) -> LogInfo:
    """Scan one log; never raises for bad content or an unreadable file (see `error`)."""
    from autorec import events
    from autorec.core.timeline import LogSpan
    from autorec.io.logfile import LogReader

    summary = LogInfo(path)
    stack = contextlib.ExitStack()
    try:
        summary.size = os.stat(path).st_size
        reader = LogReader(path)  # its 1 MiB buffer: seeks past frames mostly stay inside it
        fd = os.open(path, os.O_RDONLY)  # pread of the few records decoded whole
        stack.callback(os.close, fd)
        kinds = summary.kinds
        peek = events.peek_kind
        # The span by the recorder's own clock rule (autorec.core.timeline.stream_times): one damaged
        # timestamp (year 9999, 1970) does not stretch it, a step of the rig's clock back is absorbed.
        span = LogSpan()
        first_image = None
        records = 0
        for offset, length, head in reader.heads(HEAD):
            records += 1
            kind = peek(head) or "unknown"
            entry = kinds.get(kind)
            if entry is None:
                entry = kinds[kind] = [0, 0]
            entry[0] += 1
            entry[1] += length
            if kind == "unknown":
                continue
            if kind == "image" and first_image is None:
                first_image = (offset, length)
            t = head_timestamp(kind, head)
            if t is UNKNOWN:
                t = ABSENT
                if kind != "image" and length <= DECODE_LIMIT:
                    try:
                        t = events.timestamp(events.decode(os.pread(fd, length, offset + 4))) or ABSENT
                    except events.DecodeError:
                        pass
            if t is ABSENT or t <= 0 or t >= events.MAX_TIMESTAMP:  # unset, or damaged beyond year 9999
                t = None
            span.add(t)
        summary.records = records
        summary.start, summary.end = span.finish()
        summary.truncated = reader.truncated.as_dict() if reader.truncated else None
        summary.corrupt = reader.corrupt.as_dict() if reader.corrupt else None
        summary.trailing_bytes = summary.size - reader.end_offset
        if first_image is not None:
            offset, length = first_image
            try:
                image = events.decode(os.pread(fd, length, offset + 4)).image
                summary.image_size = jpeg_size(image.image_data)
            except events.DecodeError:
                pass
    except OSError as exc:
        summary.error = exc.strerror or str(exc)
    finally:
        stack.close()
    return summary


def _utc(t: float) -> str:
    from autorec.readable import local_and_utc

    return local_and_utc(t, 1)


def format_text(s: LogInfo) -> str:
    from autorec.units import format_duration, format_size

    if s.error is not None:
        return f"{s.path}: cannot read: {s.error}"
    lines = [f"{s.path}: {s.records} records, {format_size(s.size)}"]
    duration = s.duration
    if s.start is not None and s.end is not None:
        lines[0] += f", {format_duration(duration)} from {_utc(s.start)} to {_utc(s.end)}"
    else:
        lines[0] += ", no timestamps"
    if s.kinds:
        lines.append(f"  {'kind':<22}{'count':>9}{'bytes':>11}{'rate':>11}")
        for kind, (count, nbytes) in sorted(s.kinds.items(), key=lambda kv: -kv[1][0]):
            rate = f"{count / duration:.2f}/s" if duration else "-"
            lines.append(f"  {kind:<22}{count:>9}{format_size(nbytes):>11}{rate:>11}")
    count, nbytes = s.kinds.get("image", [0, 0])
    if count:
        res = f"{s.image_size[0]}x{s.image_size[1]}" if s.image_size else "unknown resolution"
        lines.append(f"  images: {count} frames, mean {format_size(nbytes / count)}, first frame {res}")
    else:
        lines.append("  images: none")
    if s.truncated:
        t = s.truncated
        lines.append(
            f"  TRUNCATED: the record at offset {t['offset']} is missing {t['missing_bytes']} bytes "
            "(everything before it is readable)"
        )
    elif s.corrupt:
        c = s.corrupt
        lines.append(f"  CORRUPT at offset {c['offset']}: {c['reason']}; {s.trailing_bytes} bytes after it not read")
    else:
        lines.append("  ends on a whole record")
    return "\n".join(lines)


def _sidecar_of(path: str) -> str | None:
    """If `path` is an autorec sidecar (NAME.json), the name of its log; else None."""
    if not path.endswith(".json"):
        return None
    try:
        with open(path, "rb") as f:
            data = json.loads(f.read(64 << 20))
    except (OSError, ValueError):
        return None
    if isinstance(data, dict) and isinstance(data.get("path"), str) and "close_reason" in data:
        return data["path"]
    return None


def run(args: argparse.Namespace) -> int:
    import os

    if len(args.logs) == 1 and os.path.isdir(args.logs[0]):
        # An output directory: list its segments (what `autorec ls DIR` prints).
        from autorec.commands.ls import listing

        return listing(args.logs[0], [], None, None, args.json, "info")
    summaries = []
    for path in args.logs:
        log_name = _sidecar_of(path)
        if log_name is not None:  # not "corrupt": say what it is and where its log is
            log_path = os.path.join(os.path.dirname(path), log_name)
            summaries.append(LogInfo(path, error=f"a segment's sidecar (JSON), not a log; its log is {log_path}"))
        else:
            summaries.append(read_log_info(path))
    if args.json:
        out = [s.as_dict() for s in summaries]
        print(json.dumps(out[0] if len(out) == 1 else out, indent=1))
    else:
        print("\n".join(format_text(s) for s in summaries))
    for s in summaries:
        if s.error is not None:
            print(f"autorec info: {s.path}: cannot read: {s.error}", file=sys.stderr)
        elif s.corrupt is not None:
            print(f"autorec info: {s.path}: corrupt at offset {s.corrupt['offset']}", file=sys.stderr)
    return 1 if any(s.failed for s in summaries) else 0
