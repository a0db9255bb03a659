"""The night model: what an output directory holds, read back for people (`ls`, `info DIR`, `report`).

`load_night(directory, since=None, until=None)` reads, without writing
anything and without ever raising for bad content:
- `index.jsonl`: the closed segments (one line each), in time order;
- each segment's sidecar (`NAME.json`), its log (`NAME.bin`) and its video
  exports (`NAME.mp4`, `NAME.mkv`) if present;
- `journal.jsonl` (see `autorec.services.journal`): runs, connections, alerts, stats;
- `status.json`, the telemetry and timelapse logs (`telemetry-*.bin`,
  `timelapse-*.bin`), and open segments
  (`*.bin.partial`: a run still going, or a crash not yet recovered).

Whatever is damaged or missing becomes a line in `Night.problems` (file and
line where there is one; a bounded `autorec.io.boundedread.Problems`: the
first lines of each file and a count of the rest) and the rest is still read:
a corrupt index line is skipped, a segment whose log is missing is listed with `exists=False`, a
sidecar that is missing, corrupt, or from a newer autorec leaves the index
line's summary in place. `since`/`until` (epoch seconds) keep the segments
that overlap that span, and the journal entries inside it.

Everything here is a read of small files (index, sidecars, journal); the
telemetry logs are only listed (`autorec.report.sensorseries` reads them).
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from autorec.core.scores import NearMiss
from autorec.dates import local_strftime, utc_strftime
from autorec.io.boundedread import Problems, bounded_lines, open_regular, read_capped
from autorec.outdir import (
    INDEX_NAME,
    JOURNAL_NAME,
    OPEN_LOG_SUFFIX,
    STATUS_NAME,
    TELEMETRY_PREFIX,
    TIMELAPSE_PREFIX,
    VIDEO_SUFFIXES,
    IndexLine,
    check_journal_entry,
    check_near_miss,
    check_sidecar,
    check_status,
    finite,
    is_daily_log,
)

log = logging.getLogger(__name__)

MAX_LINE = 1 << 20  # longer lines of index, journal or near-misses are skipped (a damaged file costs no memory)
MAX_SIDECAR = 64 << 20  # a sidecar larger than this is not read (it cannot be one of ours)


_number = finite


def _int(value: Any) -> int:
    return int(value) if isinstance(value, int) and not isinstance(value, bool) else 0


def utc_text(t: float | None, fmt: str = "%Y-%m-%d %H:%M:%S") -> str:
    """`t` (epoch seconds) as UTC text (`autorec.dates`: never raises); `?` for no time.
    What a person reads goes through `autorec.readable` (one style everywhere)."""
    return "?" if t is None else utc_strftime(t, fmt)


def local_text(t: float | None, fmt: str = "%Y-%m-%d %H:%M:%S") -> str:
    """`t` (epoch seconds) in the computer's time zone (`autorec.dates`: never raises); `?` for no time."""
    return "?" if t is None else local_strftime(t, fmt)


@dataclass
class Segment:
    """One closed segment, from its index line and (when readable) its sidecar."""

    name: str
    path: Path  # NAME.bin
    sidecar_path: Path  # NAME.json
    start: float
    end: float
    rules: tuple[str, ...]
    records: int
    bytes: int
    close_reason: str
    part: int = 1
    recovered: bool = False
    gaps: int = 0
    dropped: int = 0
    exists: bool = True
    sidecar: dict[str, Any] | None = None
    videos: list[Path] = field(default_factory=list)
    line: int = 0  # its line in index.jsonl

    @property
    def duration(self) -> float:
        return max(0.0, self.end - self.start)

    def row(self) -> dict[str, Any]:
        """The segment as `ls --json` and the web UI's `/api/segments` list it."""
        return {
            "name": self.name,
            "path": str(self.path),
            "start": self.start,
            "end": self.end,
            "start_iso": utc_text(self.start, "%Y-%m-%dT%H:%M:%S.%fZ"),
            "end_iso": utc_text(self.end, "%Y-%m-%dT%H:%M:%S.%fZ"),
            "duration_s": round(self.duration, 3),
            "rules": list(self.rules),
            "records": self.records,
            "bytes": self.bytes,
            "close_reason": self.close_reason,
            "exists": self.exists,
            "videos": [str(v) for v in self.videos],
        }

    @property
    def firings(self) -> list[dict[str, Any]]:
        """The firings the sidecar lists (dicts with `rule`, `time`, `evidence`), in time order."""
        raw = (self.sidecar or {}).get("firings")
        out = [f for f in raw if isinstance(f, dict) and _number(f.get("time")) is not None] if raw else []
        return sorted(out, key=lambda f: f["time"])

    @property
    def gap_list(self) -> list[dict[str, Any]]:
        raw = (self.sidecar or {}).get("gaps")
        return [g for g in raw if isinstance(g, dict)] if isinstance(raw, list) else []


@dataclass
class AlertSpan:
    """An alert from the journal: raised at `raised` (its cause began at `since`), cleared at `cleared` (or not)."""

    key: str
    name: str
    message: str
    since: float
    raised: float
    cleared: float | None = None
    cleared_message: str = ""


@dataclass
class Run:
    """One `autorec run` from the journal: its start line and the last figures it wrote."""

    start: dict[str, Any]
    last: dict[str, Any] = field(default_factory=dict)  # last stats/stop line
    stopped: bool = False


@dataclass
class Night:
    """An output directory, read for people. See the module docstring."""

    directory: Path
    segments: list[Segment] = field(default_factory=list)
    journal: list[dict[str, Any]] = field(default_factory=list)
    status: dict[str, Any] | None = None
    telemetry: list[Path] = field(default_factory=list)
    timelapse: list[Path] = field(default_factory=list)  # timelapse-YYYYMMDD.bin, one frame every 30 s
    partials: list[Path] = field(default_factory=list)
    problems: list[str] = field(default_factory=Problems)
    since: float | None = None
    until: float | None = None

    # -- derived figures ---------------------------------------------------------------------
    @property
    def runs(self) -> list[Run]:
        runs: list[Run] = []
        for e in self.journal:
            if e["event"] == "start":
                runs.append(Run(start=e))
            elif e["event"] in ("stats", "stop") and runs:
                runs[-1].last = e
                runs[-1].stopped = e["event"] == "stop"
        return runs

    def span(self) -> tuple[float, float] | None:
        """First and last time the directory knows of (segments and journal), clipped to since/until."""
        times = [t for s in self.segments for t in (s.start, s.end)]
        times += [e["time"] for e in self.journal]
        if not times:
            return None
        lo, hi = min(times), max(times)
        if self.since is not None:
            lo = max(lo, self.since)
        if self.until is not None:
            hi = min(hi, self.until)
        return (lo, hi) if hi >= lo else None

    def segments_per_rule(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for s in self.segments:
            for r in s.rules:
                out[r] = out.get(r, 0) + 1
        return out

    @property
    def kept_bytes(self) -> int:
        return sum(s.bytes for s in self.segments)

    def seen(self) -> tuple[int, int] | None:
        """(messages, payload bytes) the recorder received, summed over the journal's runs; None if unknown."""
        runs = [r for r in self.runs if r.last]
        if not runs:
            return None
        return (sum(_int(r.last.get("messages")) for r in runs), sum(_int(r.last.get("bytes_seen")) for r in runs))

    def pdrecord_bytes(self) -> int | None:
        """What upstream pdrecord would have written for the same stream: every message plus its 4-byte header."""
        seen = self.seen()
        return None if seen is None else seen[1] + 4 * seen[0]

    def connections(self) -> list[tuple[float, float]]:
        """Spans the recorder was connected to the rig, from the journal (an open one ends at the span's end)."""
        spans: list[tuple[float, float]] = []
        up: float | None = None
        last = None
        for e in self.journal:
            last = e["time"]
            if e["event"] == "connected" and up is None:
                up = e["time"]
            elif e["event"] in ("disconnected", "stop", "start") and up is not None:
                spans.append((up, e["time"]))
                up = None
        if up is not None and last is not None:
            # still connected (a run going on, or one that died): up to the last thing the directory knows
            span = self.span()
            spans.append((up, max(last, span[1] if span else last)))
        return spans

    def disconnections(self) -> list[tuple[float, float]]:
        """Gaps between connected spans within one run (the rig or the network went away)."""
        out: list[tuple[float, float]] = []
        down: float | None = None
        for e in self.journal:
            if e["event"] == "disconnected":
                down = e["time"]
            elif e["event"] == "connected" and down is not None:
                out.append((down, e["time"]))
                down = None
            elif e["event"] in ("start", "stop"):
                if down is not None:
                    out.append((down, e["time"]))
                down = None
        return out

    def alerts(self) -> list[AlertSpan]:
        """Alerts raised and cleared, from the journal, in the order they were raised."""
        open_: dict[str, AlertSpan] = {}
        out: list[AlertSpan] = []
        for e in self.journal:
            if e["event"] != "alert":
                continue
            key = str(e.get("key", "?"))
            if e.get("state") == "raised":
                since = _number(e.get("since"))
                span = AlertSpan(
                    key,
                    str(e.get("name", key)),
                    str(e.get("message", "")),
                    since if since is not None else e["time"],
                    e["time"],
                )
                open_[key] = span
                out.append(span)
            elif e.get("state") == "cleared" and key in open_:
                span = open_.pop(key)
                span.cleared = e["time"]
                span.cleared_message = str(e.get("message", ""))
        return out

    def counter_rises(self, suffix: str) -> list[tuple[float, str, int]]:
        """(time, counter, increase) each time a counter ending in `suffix` rose between stats lines."""
        last: dict[str, int] = {}
        out: list[tuple[float, str, int]] = []
        for e in self.journal:
            if e["event"] == "start":
                last = {}
            counters = e.get("counters")
            if not isinstance(counters, dict):
                continue
            for k, v in counters.items():
                if not isinstance(v, int) or not k.endswith(suffix):
                    continue
                if k in last and v > last[k]:
                    out.append((e["time"], k, v - last[k]))
                last[k] = v
        return out

    def disk(self) -> tuple[int | None, int | None]:
        """Free disk bytes at the first start and at the last figures written."""
        first = next((_int(e.get("disk_free")) for e in self.journal if e["event"] == "start"), None)
        last = next(
            (_int(e.get("disk_free")) for e in reversed(self.journal) if isinstance(e.get("disk_free"), int)), None
        )
        return first, last


# -- reading ------------------------------------------------------------------------------------


def _read_json_file(path: Path, limit: int) -> tuple[Any, str | None]:
    data, error = read_capped(path, limit)
    if data is None:
        return None, error
    try:
        return json.loads(data), None
    except ValueError as exc:
        return None, f"not valid JSON ({exc})"


def _segment_from_line(directory: Path, entry: dict[str, Any], line: int) -> Segment | str:
    parsed = IndexLine.from_json(entry)
    if isinstance(parsed, str):
        return parsed
    assert parsed.start is not None and parsed.end is not None  # from_json requires both
    return Segment(
        name=parsed.name,
        path=directory / parsed.path,
        sidecar_path=directory / parsed.sidecar,
        start=parsed.start,
        end=parsed.end,
        rules=parsed.rules,
        records=parsed.records,
        bytes=parsed.bytes,
        close_reason=parsed.close_reason,
        part=parsed.part,
        recovered=parsed.recovered,
        gaps=parsed.gaps,
        dropped=parsed.dropped,
        line=line,
    )


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number autorec writes")


def json_lines(path: Path, what: str, problems: list[str]) -> Iterator[tuple[int, dict[str, Any]]]:
    """`(line number, object)` for each line of a JSON-lines file that holds a JSON object.

    Every other non-empty line (longer than MAX_LINE, not JSON, not an object: `what` names the
    expected kind, e.g. "an index entry") is a `FILE:LINE: ...; skipped` line in `problems`. A
    missing file yields nothing; one that cannot be read is one problem."""
    try:
        f = open_regular(path)
    except FileNotFoundError:
        return
    except OSError as exc:
        problems.append(f"{path}: cannot read: {exc.strerror or exc}")
        return
    with f:
        for number, raw in bounded_lines(f, MAX_LINE):
            if raw is None:
                problems.append(f"{path}:{number}: line longer than {MAX_LINE} bytes skipped")
                continue
            if not raw.strip(b" \t\r\n\0"):
                continue
            try:
                entry = json.loads(raw, parse_constant=_no_constant)
            except (ValueError, RecursionError):
                problems.append(f"{path}:{number}: not a JSON line (a damaged or cut-off write); skipped")
                continue
            if not isinstance(entry, dict):
                problems.append(f"{path}:{number}: not {what}; skipped")
                continue
            yield number, entry


def read_index(directory: Path) -> tuple[list[Segment], list[str]]:
    """The segments listed in `directory/index.jsonl`, and the problems of its lines."""
    index = directory / INDEX_NAME
    segments: list[Segment] = []
    problems: list[str] = Problems()
    for number, entry in json_lines(index, "an index entry", problems):
        seg = _segment_from_line(directory, entry, number)
        if isinstance(seg, str):
            problems.append(f"{index}:{number}: {seg}; skipped")
            continue
        segments.append(seg)
    return segments, problems


def read_journal(path: Path) -> tuple[list[dict[str, Any]], list[str]]:
    """The journal's entries (dicts with at least `event` and a numeric `time`) and its problems."""
    entries: list[dict[str, Any]] = []
    problems: list[str] = Problems()
    for number, raw in json_lines(path, "a journal entry", problems):
        entry = check_journal_entry(raw)  # typed: a finite time, a text event, finite wall and counters
        if isinstance(entry, str):
            problems.append(f"{path}:{number}: {entry}; skipped")
        else:
            entries.append(entry)
    return entries, problems


def read_near_misses(path: Path, problems: list[str]) -> list[NearMiss]:
    """The near-misses of `near-misses.jsonl` (see `autorec.io.scorelog`); bad lines go to `problems`."""
    out: list[NearMiss] = []
    for number, raw in json_lines(path, "a near-miss", problems):
        e = check_near_miss(raw)
        if isinstance(e, str):
            problems.append(f"{path}:{number}: {e}; skipped")
            continue
        out.append(NearMiss(e["rule"], e["start"], e["end"], e["peak"], e["threshold"], e["peak_time"], e["baseline"]))
    return out


def read_sidecar(path: Path) -> tuple[dict[str, Any] | None, str | None]:
    """A segment's sidecar (`NAME.json`) as a dict, or None and why not (missing, too large, not
    JSON, not an object, from a newer autorec). A usable sidecar with ill-typed fields comes with
    them removed and named in the second value. Never raises."""
    data, error = _read_json_file(path, MAX_SIDECAR)
    if error is not None:
        return None, f"sidecar {error}"
    sidecar, problems = check_sidecar(data)
    if sidecar is None:
        return None, problems[0]
    # Ill-typed fields were removed (see autorec.outdir.check_sidecar): say which, once.
    return sidecar, "; ".join(problems) if problems else None


def _load_sidecar(seg: Segment, problems: list[str], cache: dict | None = None) -> None:
    key = None
    if cache is not None:  # `serve`: a sidecar is read again only when it changed (inode, size, mtime)
        try:
            st = os.stat(seg.sidecar_path)
            key = (st.st_ino, st.st_size, st.st_mtime_ns)
        except OSError:
            key = None
        hit = cache.get(seg.sidecar_path)
        if key is not None and hit is not None and hit[0] == key:
            data, error = hit[1]
        else:
            data, error = read_sidecar(seg.sidecar_path)
            if key is not None:
                cache[seg.sidecar_path] = (key, (data, error))
    else:
        data, error = read_sidecar(seg.sidecar_path)
    if data is None:
        problems.append(f"{seg.sidecar_path}: {error}; the index line's summary is used")
        return
    if error is not None:
        problems.append(f"{seg.sidecar_path}: {error}")
    seg.sidecar = data


def load_night(
    directory: str | os.PathLike[str],
    since: float | None = None,
    until: float | None = None,
    sidecar_cache: dict | None = None,
) -> Night:
    """Read an output directory. Never raises for bad content; a directory that cannot be listed is a problem.

    `sidecar_cache` (a dict the caller keeps between calls: `serve`) spares reading sidecars that did not
    change since the last call.
    """
    directory = Path(directory)
    night = Night(directory=directory, since=since, until=until)
    try:
        names = sorted(os.listdir(directory))
    except OSError as exc:
        night.problems.append(f"{directory}: cannot list: {exc.strerror or exc}")
        return night
    segments, problems = read_index(directory)
    night.problems += problems
    seen: set[str] = set()
    for seg in segments:
        if seg.name in seen:
            night.problems.append(f"{directory / INDEX_NAME}:{seg.line}: segment {seg.name} listed twice; kept once")
            continue
        seen.add(seg.name)
        if since is not None and seg.end < since:
            continue
        if until is not None and seg.start > until:
            continue
        seg.exists = seg.path.is_file()
        if not seg.exists:
            night.problems.append(f"{seg.path}: segment file missing (deleted or moved?)")
        _load_sidecar(seg, night.problems, sidecar_cache)
        seg.videos = [p for p in (seg.path.with_suffix(sfx) for sfx in VIDEO_SUFFIXES) if p.is_file()]
        night.segments.append(seg)
    night.segments.sort(key=lambda s: (s.start, s.name))
    entries, problems = read_journal(directory / JOURNAL_NAME)
    night.problems += problems
    night.journal = [
        e for e in entries if (since is None or e["time"] >= since) and (until is None or e["time"] <= until)
    ]
    night.journal.sort(key=lambda e: (e.get("wall", e["time"]), e["time"]))
    data, error = _read_json_file(directory / STATUS_NAME, 1 << 20)
    if error is None:
        night.status, found = check_status(data)
        night.problems += [f"{directory / STATUS_NAME}: {p}" for p in found]
    elif error != "missing":
        night.problems.append(f"{directory / STATUS_NAME}: {error}")
    night.telemetry = [directory / n for n in names if is_daily_log(n) and n.startswith(TELEMETRY_PREFIX)]
    night.timelapse = [directory / n for n in names if is_daily_log(n) and n.startswith(TIMELAPSE_PREFIX)]
    night.partials = [directory / n for n in names if n.endswith(OPEN_LOG_SUFFIX)]
    return night


def rule_lanes(segments: Iterable[Segment]) -> list[str]:
    """Rule names in order of first appearance (one timeline lane each)."""
    seen: dict[str, None] = {}
    for s in segments:
        for r in s.rules:
            seen.setdefault(r, None)
    return list(seen)


def parse_when(text: str, now: _dt.datetime | None = None) -> float:
    """A time as a person types it, as epoch seconds; ValueError (saying what is accepted) otherwise.

    Accepted: ISO 8601 date-times (`2026-11-30T22:00`, `2026-11-30 22:00:05Z`, with an offset);
    without a zone they are local time. A time of day alone (`22:00`) is today, local time. A
    bare number is epoch seconds.
    """
    text = text.strip()
    try:
        number = float(text)
    except ValueError:
        pass
    else:
        if number != number or abs(number) > 253_402_300_800:
            raise ValueError(f"time {text!r} is not a usable epoch time")
        return number
    iso = text[:-1] + "+00:00" if text.endswith(("Z", "z")) else text
    try:
        when = _dt.datetime.fromisoformat(iso)
    except ValueError:
        try:
            clock = _dt.time.fromisoformat(iso)
        except ValueError:
            raise ValueError(
                f"time {text!r} not understood: use ISO 8601 (2026-11-30T22:00, Z or +01:00 for a zone), "
                "a time of day (22:00) or epoch seconds"
            ) from None
        today = (now or _dt.datetime.now()).date()
        when = _dt.datetime.combine(today, clock)
    if when.tzinfo is None:
        when = when.astimezone()  # local time
    return when.timestamp()
