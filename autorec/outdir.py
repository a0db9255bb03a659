"""The output directory's layout: every file name, and the typed, versioned records of its JSON files.

One owner per file format, in the style of mcap's `records.py`: whatever writes a file of the
output directory (the segment writer, crash recovery, retention, the daily tracks, the score log,
the journal, the status file) and whatever reads one back (the night model, `ls`, `info DIR`, the
web UI, uploads) takes the name and the record shape from here, so writer and readers cannot
drift apart. This module does no I/O: it names files and turns records into JSON values and back.

The directory holds, per segment `NAME`:
- `NAME.bin.partial` while it is written (`OPEN_SUFFIX` on the log), `NAME.bin` once closed;
- `NAME.json`, the sidecar (`SIDECAR_KEYS`, version `SIDECAR_VERSION`); crash recovery may find
  a `NAME.json.partial` beside a partial log;
- `NAME.mp4` / `NAME.mkv`, video exports (`VIDEO_SUFFIXES`);
and once: `index.jsonl` (one `IndexLine` per closed segment), `journal.jsonl`, `status.json`,
`uploads.jsonl` (with `upload:`),
`near-misses.jsonl`, the daily tracks `telemetry-YYYYMMDD.bin`, `timelapse-YYYYMMDD.bin` and
`scores-YYYYMMDD.csv.gz`, and the instance lock `.autorec.lock`.

Reading is validating: `IndexLine.from_json` and `check_sidecar` turn an ill-typed field into a
problem (a string naming the field), never an exception, and never let a NaN or an infinity
through as a time.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Any

from autorec.units import with_iso_times

# -- file names --------------------------------------------------------------

LOG_SUFFIX = ".bin"  # a segment in upstream's log format
SIDECAR_SUFFIX = ".json"  # a segment's sidecar
OPEN_SUFFIX = ".partial"  # appended to a segment's log (and a recovered sidecar) while it is being written
OPEN_LOG_SUFFIX = LOG_SUFFIX + OPEN_SUFFIX  # NAME.bin.partial: the open segment
VIDEO_SUFFIXES = (".mp4", ".mkv")  # video exports beside NAME.bin
MCAP_SUFFIX = ".mcap"  # the MCAP export beside NAME.bin (Foxglove, Lichtblick)
EXPORT_SUFFIXES = (*VIDEO_SUFFIXES, MCAP_SUFFIX)  # everything exported from a segment, deleted with it

INDEX_NAME = "index.jsonl"
JOURNAL_NAME = "journal.jsonl"
STATUS_NAME = "status.json"  # the default of `output.status_file`
REVIEWED_NAME = "reviewed.jsonl"  # the web UI's reviewed marks (autorec.web.reviewed)
EXPORTS_DIR = "exports"  # range exports of the web UI (autorec.web.exportjob)
UPLOAD_STATE_NAME = "uploads.jsonl"  # what the uploader has put in the object store (autorec.io.uploadstate)
NEAR_MISSES_NAME = "near-misses.jsonl"
LOCK_NAME = ".autorec.lock"

TELEMETRY_PREFIX = "telemetry-"  # telemetry-YYYYMMDD.bin: every non-image record, one file per UTC day
TIMELAPSE_PREFIX = "timelapse-"  # timelapse-YYYYMMDD.bin: one camera frame every `output.timelapse`
SCORES_PREFIX = "scores-"  # scores-YYYYMMDD.csv.gz: the score track
SCORES_SUFFIX = ".csv.gz"
DAILY_LOG_PREFIXES = (TELEMETRY_PREFIX, TIMELAPSE_PREFIX)


def daily_name(prefix: str, day: str, suffix: str = LOG_SUFFIX) -> str:
    """A daily track's file name: `prefix` + `day` (YYYYMMDD, UTC) + `suffix`."""
    return f"{prefix}{day}{suffix}"


def is_daily_log(name: str) -> bool:
    """Whether `name` is a telemetry or timelapse day file (never a segment)."""
    return name.startswith(DAILY_LOG_PREFIXES) and name.endswith(LOG_SUFFIX)


def is_score_track(name: str) -> bool:
    return name.startswith(SCORES_PREFIX) and name.endswith(SCORES_SUFFIX)


def segment_stem(name: str) -> str:
    """`NAME` for `NAME.bin`, `NAME.bin.partial`, `NAME.json` or `NAME.json.partial`."""
    if name.endswith(OPEN_SUFFIX):
        name = name[: -len(OPEN_SUFFIX)]
    for suffix in (LOG_SUFFIX, SIDECAR_SUFFIX):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def export_path(log_path: str | os.PathLike[str], suffix: str, out_dir: str | os.PathLike[str] | None = None) -> str:
    """Where an export of the segment `log_path` goes: `NAME` + `suffix` beside it, or in `out_dir`."""
    name = segment_stem(os.path.basename(log_path)) + suffix
    return os.path.join(out_dir if out_dir is not None else os.path.dirname(log_path), name)


def is_plain_name(name: str) -> bool:
    """Whether `name` is a file name inside the directory (an index line never points elsewhere)."""
    return bool(name) and name not in (".", "..") and os.path.basename(name) == name and "\0" not in name


# -- records -----------------------------------------------------------------

SIDECAR_VERSION = 1  # the sidecar layout written here; a reader ignores a newer one but for the index line

# The sidecar's keys, in the writer's order (a recovered sidecar adds `recovery` at the end; a
# sidecar of a later autorec may add keys, which readers keep).
SIDECAR_KEYS: tuple[str, ...] = (
    "version",
    "autorec",
    "name",
    "path",
    "seq",
    "part",
    "start",
    "end",
    "segment_start",
    "segment_end",
    "open_reason",
    "close_reason",
    "rules",
    "firings",
    "firing_counts",
    "snapshot",
    "pre_roll",
    "records",
    "bytes",
    "counts",
    "bytes_per_kind",
    "origins",
    "gaps",
    "dropped",
    "recovered",
    "near_miss",
)

# What each sidecar key must hold when present (a reader's check; None is allowed where a
# recovered sidecar leaves a value unknown).
_SIDECAR_TYPES: dict[str, tuple[type, ...]] = {
    "version": (int,),
    "name": (str,),
    "path": (str,),
    "start": (int, float),
    "end": (int, float),
    "segment_start": (int, float),
    "segment_end": (int, float),
    "close_reason": (str,),
    "rules": (list,),
    "firings": (list,),
    "firing_counts": (dict,),
    "records": (int,),
    "bytes": (int,),
    "counts": (dict,),
    "bytes_per_kind": (dict,),
    "gaps": (list,),
    "dropped": (dict,),
    "recovered": (bool,),
    "near_miss": (bool,),
}


def finite(value: Any) -> float | None:
    """`value` as a float if it is a finite JSON number (not a bool), else None."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def count(value: Any) -> int | None:
    """`value` if it is a non-negative JSON integer (not a bool), else None."""
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


def is_near_miss_clip(firings: Any) -> bool:
    """Whether a segment's firings (sidecar dicts) are all near-miss clips: its sidecar's `near_miss`."""
    if not isinstance(firings, list) or not firings:
        return False
    return all(
        isinstance(f, dict) and isinstance(f.get("evidence"), dict) and f["evidence"].get("near_miss") is True
        for f in firings
    )


def check_sidecar(data: Any) -> tuple[dict[str, Any] | None, list[str]]:
    """A sidecar read back: `(sidecar, problems)`.

    `sidecar` is None when `data` is not a JSON object or comes from a newer layout (the index
    line's summary then stands in for it). Otherwise every known key whose value has the wrong
    type is removed and named in `problems` (a `firings` entry that is not an object with a
    numeric `time` and a string `rule` is dropped and counted), so code reading the sidecar can
    rely on the types in `_SIDECAR_TYPES`.
    """
    if not isinstance(data, dict):
        return None, ["not a sidecar (not a JSON object)"]
    version = data.get("version")
    if count(version) is not None and version > SIDECAR_VERSION:
        return None, [f"sidecar version {version} is newer than this autorec reads ({SIDECAR_VERSION})"]
    problems: list[str] = []
    out = dict(data)
    for key, types in _SIDECAR_TYPES.items():
        if key not in out or out[key] is None:
            continue
        value = out[key]
        ok = isinstance(value, types) and not (isinstance(value, bool) and bool not in types)
        if ok and types == (int, float):
            ok = finite(value) is not None
        if not ok:
            problems.append(f"field {key!r} is not {_type_words(types)}; ignored")
            del out[key]
    firings = out.get("firings")
    if isinstance(firings, list):
        good = [
            f
            for f in firings
            if isinstance(f, dict) and finite(f.get("time")) is not None and isinstance(f.get("rule"), str)
        ]
        if len(good) != len(firings):
            problems.append(f"{len(firings) - len(good)} firing(s) without a rule name or a time; ignored")
            out["firings"] = good
    if isinstance(out.get("rules"), list) and not all(isinstance(r, str) for r in out["rules"]):
        problems.append("field 'rules' holds a non-text rule name; ignored")
        out["rules"] = [r for r in out["rules"] if isinstance(r, str)]
    return out, problems


def _type_words(types: tuple[type, ...]) -> str:
    words = {int: "an integer", float: "a number", str: "text", list: "a list", dict: "an object", bool: "true/false"}
    if types == (int, float):
        return "a finite number"
    return " or ".join(words.get(t, t.__name__) for t in types)


@dataclass(frozen=True, slots=True)
class IndexLine:
    """One line of `index.jsonl`: a closed segment's summary, in the writer's shape.

    `to_json()` gives the line's object (with `*_iso` times and `duration_s` for people);
    `from_json()` validates one read back. `from_sidecar()` is the one way to build it, used by
    the writer when a segment closes and by crash recovery alike.
    """

    name: str
    path: str  # NAME.bin, a file name in the directory
    sidecar: str  # NAME.json
    start: float | None
    end: float | None
    rules: tuple[str, ...]
    records: int
    bytes: int
    close_reason: str
    part: int = 1
    recovered: bool = False
    gaps: int = 0  # how many gaps the sidecar lists
    dropped: int = 0  # records dropped (the sidecar's dropped.records)
    near_miss: bool = False  # a near-miss clip: only near-miss firings

    @classmethod
    def from_sidecar(cls, sidecar: dict[str, Any], log_name: str, sidecar_name: str) -> IndexLine:
        gaps = sidecar.get("gaps")
        dropped = sidecar.get("dropped")
        rules = sidecar.get("rules")
        return cls(
            name=str(sidecar.get("name", segment_stem(log_name))),
            path=log_name,
            sidecar=sidecar_name,
            start=finite(sidecar.get("start")),
            end=finite(sidecar.get("end")),
            rules=tuple(str(r) for r in rules) if isinstance(rules, (list, tuple)) else (),
            records=count(sidecar.get("records")) or 0,
            bytes=count(sidecar.get("bytes")) or 0,
            close_reason=str(sidecar.get("close_reason") or "?"),
            part=count(sidecar.get("part")) or 1,
            recovered=sidecar.get("recovered") is True,
            gaps=len(gaps) if isinstance(gaps, list) else 0,
            dropped=(count(dropped.get("records")) or 0) if isinstance(dropped, dict) else 0,
            near_miss=sidecar.get("near_miss") is True,
        )

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "name": self.name,
            "start": self.start,
            "end": self.end,
            "rules": list(self.rules),
            "records": self.records,
            "bytes": self.bytes,
            "close_reason": self.close_reason,
            "part": self.part,
            "recovered": self.recovered,
            "path": self.path,
            "sidecar": self.sidecar,
            "gaps": self.gaps,
            "dropped": self.dropped,
        }
        if self.near_miss:
            out["near_miss"] = True
        return with_iso_times(out)

    @classmethod
    def from_json(cls, entry: Any) -> IndexLine | str:
        """A line read back, or a problem (why it is not a usable index line). Never raises.

        Required: `name`, `path` (a plain file name), finite `start` and `end`. Other ill-typed
        fields take their defaults; `end` is at least `start`.
        """
        if not isinstance(entry, dict):
            return "not an index entry (not a JSON object)"
        name, path = entry.get("name"), entry.get("path")
        if not isinstance(path, str) or not isinstance(name, str):
            return "no segment name or path"
        if not is_plain_name(path):
            return f"segment path {path!r} is not a file name in this directory"
        start, end = finite(entry.get("start")), finite(entry.get("end"))
        if start is None or end is None:
            return "no valid start/end time"
        sidecar = entry.get("sidecar")
        rules = entry.get("rules")
        close_reason = entry.get("close_reason")
        return cls(
            name=name,
            path=path,
            sidecar=sidecar if isinstance(sidecar, str) and is_plain_name(sidecar) else name + SIDECAR_SUFFIX,
            start=start,
            end=max(start, end),
            rules=tuple(r for r in rules if isinstance(r, str)) if isinstance(rules, list) else (),
            records=count(entry.get("records")) or 0,
            bytes=count(entry.get("bytes")) or 0,
            close_reason=close_reason if isinstance(close_reason, str) else "?",
            part=count(entry.get("part")) or 1,
            recovered=entry.get("recovered") is True,
            gaps=count(entry.get("gaps")) or 0,
            dropped=count(entry.get("dropped")) or 0,
            near_miss=entry.get("near_miss") is True,
        )


# -- validating readers of the other JSON files --------------------------------
# (added by the robustness round: every JSON file of the directory is read through one of these; an
# ill-typed field is a problem, never an exception, and a NaN or infinity never passes as a number)


def check_journal_entry(entry: Any) -> dict[str, Any] | str:
    """A `journal.jsonl` line read back: the entry with a text `event`, a finite `time` and a finite
    `wall` (dropped when ill-typed: it only orders runs), or a problem."""
    if not isinstance(entry, dict):
        return "not a journal entry (not a JSON object)"
    if not isinstance(entry.get("event"), str):
        return "not a journal entry (no event name)"
    t = finite(entry.get("time"))
    if t is None:
        return "entry without a time"
    out = dict(entry)
    out["time"] = t
    wall = finite(entry.get("wall"))
    if wall is None:
        out.pop("wall", None)
    else:
        out["wall"] = wall
    if "counters" in out and not (
        isinstance(out["counters"], dict) and all(count(v) is not None for v in out["counters"].values())
    ):
        counters = out["counters"]
        out["counters"] = (
            {k: v for k, v in counters.items() if count(v) is not None} if isinstance(counters, dict) else {}
        )
    return out


def check_near_miss(entry: Any) -> dict[str, Any] | str:
    """A `near-misses.jsonl` line read back: `rule` (text), finite `start`, `end`, `peak`, `threshold`,
    `peak_time` (`end` and `peak_time` default to `start`), `baseline` (finite, or None: an older
    autorec's line), or a problem."""
    if not isinstance(entry, dict):
        return "not a near-miss (not a JSON object)"
    start, peak, threshold = finite(entry.get("start")), finite(entry.get("peak")), finite(entry.get("threshold"))
    rule = entry.get("rule")
    if start is None or peak is None or threshold is None or not isinstance(rule, str):
        return "not a near-miss line"
    end, peak_time = finite(entry.get("end")), finite(entry.get("peak_time"))
    return {
        "rule": rule,
        "start": start,
        "end": end if end is not None and end >= start else start,
        "peak": peak,
        "threshold": threshold,
        "peak_time": peak_time if peak_time is not None else start,
        "baseline": finite(entry.get("baseline")),
    }


# The status file's fields (`autorec.services.statusfile.Status`) and what each must hold.
_STATUS_TYPES: dict[str, str] = {
    "updated": "number",
    "connected": "bool",
    "msg_per_s": "number",
    "open_segment": "segment",
    "last_segment": "segment",
    "disk_free": "count",
    "disk_total": "count",
    "disk_below_floor": "bool",
    "counters": "counters",
    "alerts": "list",
    "scores": "scores",
    "pid": "count",
}


def _segment_info(value: Any) -> dict[str, Any] | None:
    if not isinstance(value, dict):
        return None
    path = value.get("path")
    rules = value.get("rules")
    return {
        "path": path if isinstance(path, str) else None,
        "start": finite(value.get("start")),
        "end": finite(value.get("end")),
        "rules": [r for r in rules if isinstance(r, str)] if isinstance(rules, list) else [],
        "records": count(value.get("records")) or 0,
        "bytes": count(value.get("bytes")) or 0,
    }


def _score(value: Any) -> dict[str, Any] | None:
    if not isinstance(value, dict):
        return None
    return {k: finite(value.get(k)) for k in ("time", "score", "threshold", "ratio")}


def check_status(data: Any) -> tuple[dict[str, Any] | None, list[str]]:
    """The status file read back: `(status, problems)`; None when it is not a JSON object.

    Known fields of the wrong type are dropped (or, inside a segment or a score, set to None) and
    named; unknown fields are kept as they are (a later autorec's).
    """
    if not isinstance(data, dict):
        return None, ["not a status file (not a JSON object)"]
    out = dict(data)
    problems: list[str] = []
    for key, kind in _STATUS_TYPES.items():
        if key not in out or out[key] is None:
            continue
        value = out[key]
        if kind == "number":
            fixed: Any = finite(value)
        elif kind == "count":
            fixed = count(value)
        elif kind == "bool":
            fixed = value if isinstance(value, bool) else None
        elif kind == "segment":
            fixed = _segment_info(value)
        elif kind == "counters":
            fixed = {str(k): v for k, v in value.items() if count(v) is not None} if isinstance(value, dict) else None
        elif kind == "scores":
            fixed = (
                {k: s for k, s in ((k, _score(v)) for k, v in value.items()) if s is not None}
                if isinstance(value, dict)
                else None
            )
        else:  # list
            fixed = [a for a in value if isinstance(a, dict)] if isinstance(value, list) else None
        if fixed is None:
            problems.append(f"field {key!r} is not {kind if kind != 'segment' else 'a segment'}; ignored")
            del out[key]
        else:
            out[key] = fixed
    return out, problems
