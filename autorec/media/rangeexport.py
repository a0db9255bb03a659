"""A span of the night as one upstream log (`.bin`) and one MP4, cut from the segments that cover it.

`export_range(segments, start, end, out_dir)` writes `range-START-END.bin`
(every record of the covering segments whose time is inside `[start, end]`,
in the upstream format, through `LogWriter`) and then `range-START-END.mp4`
(its camera frames, through `autorec.media.video.export`).

Contracts:
- A record's time is its own timestamp (read from its first bytes, never
  decoding the whole record); a record without one (pdserver's
  `electrode_state`, `device_info`) takes the time of the record before it
  in its segment, as the recorder's own clock rule does. So the log holds
  exactly what the segments recorded in that span, in their order.
- Bounded: a span longer than `MAX_SPAN` seconds is refused (`RangeError`),
  as is a span that no segment covers.
- Both files are written under `NAME.partial` and renamed when complete; a
  failure removes the partial files and raises `RangeError` with one line.
- `progress(fraction, what)` is called as the work advances (0..1).
- Blocking and CPU-heavy: run it in a worker thread, never on an event loop.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from autorec import events
from autorec.dates import utc_strftime
from autorec.io.logfile import LogReader, LogWriter

log = logging.getLogger(__name__)

MAX_SPAN = 30 * 60.0  # seconds: one export is a moment of the night, not the night
_HEAD = 48


class RangeError(Exception):
    """The span cannot be exported; the message says why in one line."""


@dataclass
class RangeResult:
    start: float
    end: float
    log: Path
    video: Path | None
    records: int = 0
    frames: int = 0
    segments: int = 0
    video_problem: str | None = None


def range_stem(start: float, end: float) -> str:
    """`range-YYYYMMDDTHHMMSSZ-HHMMSSZ`: a file name that says which span it holds (UTC)."""
    return f"range-{utc_strftime(start, '%Y%m%dT%H%M%S')}Z-{utc_strftime(end, '%H%M%S')}Z"


def _record_times(path: Path) -> Iterable[tuple[float | None, bytes]]:
    """`(time or None, payload)` of each record of one segment log, the clock rule of the module docstring."""
    last: float | None = None
    for record in LogReader(path).records():
        payload = record.payload
        kind = events.peek_kind(payload[:1])
        t = events.head_timestamp(kind, payload[:_HEAD]) if kind is not None else events.ABSENT
        if t == events.UNKNOWN:  # a long head: decode it (rare, small records only)
            try:
                t = events.timestamp(events.decode(payload))
            except events.DecodeError:
                t = None
        if isinstance(t, float):
            last = t
            yield t, payload
        else:
            yield last, payload


def export_range(
    segments: Sequence[object],
    start: float,
    end: float,
    out_dir: Path,
    progress: Callable[[float, str], None] | None = None,
    video: bool = True,
) -> RangeResult:
    """Write the span's log and MP4 into `out_dir`. See the module docstring. `segments` are
    `autorec.report.night.Segment`s (anything with `path`, `start`, `end`), in time order."""
    from autorec.io.atomicfile import partial_path
    from autorec.media.video import ExportError, ExportOptions, export

    if not end > start:
        raise RangeError("the span must end after it starts")
    if end - start > MAX_SPAN:
        raise RangeError(f"a span of at most {MAX_SPAN / 60:g} minutes can be exported at once")
    covering = [s for s in segments if s.end >= start and s.start <= end and s.path.is_file()]
    if not covering:
        raise RangeError("no segment covers that span")
    report = progress or (lambda fraction, what: None)
    os.makedirs(out_dir, exist_ok=True)
    stem = range_stem(start, end)
    bin_path = out_dir / f"{stem}.bin"
    tmp = partial_path(bin_path)
    result = RangeResult(start, end, bin_path, None, segments=len(covering))
    total = sum(max(1, s.path.stat().st_size) for s in covering)
    done = 0
    try:
        tmp.unlink(missing_ok=True)
        with LogWriter(tmp, mode="new") as writer:  # fresh (O_EXCL), never through a planted link
            for seg in covering:
                for t, payload in _record_times(seg.path):
                    if t is not None and start <= t <= end:
                        writer.write(payload)
                        result.records += 1
                done += max(1, seg.path.stat().st_size)
                report(0.3 * done / total, "cutting the log")
        if result.records == 0:
            raise RangeError("the segments covering that span hold no record inside it")
        os.replace(tmp, bin_path)
    except RangeError:
        tmp.unlink(missing_ok=True)
        raise
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise RangeError(f"{bin_path}: cannot write: {exc.strerror or exc}") from None
    if not video:
        report(1.0, "done")
        return result
    mp4 = out_dir / f"{stem}.mp4"
    frames_total = max(1, sum(1 for t, p in _record_times(bin_path) if events.peek_kind(p[:1]) == "image"))
    counted = 0

    def frames_done(n: int) -> None:
        nonlocal counted
        counted += n
        report(0.3 + 0.7 * min(1.0, counted / frames_total), "encoding the video")

    try:
        # Few threads: this may run beside a recorder (`run --http`), which must keep its cores.
        made = export(bin_path, mp4, ExportOptions(decode_threads=0, encode_threads=1), progress=frames_done)
        result.video, result.frames = mp4, made.frames
    except ExportError as exc:  # e.g. a span without camera frames: the log is still the export
        result.video_problem = str(exc)
    report(1.0, "done")
    return result
