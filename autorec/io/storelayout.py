"""Where a rig's files go in the object store (hive-style partitions, so SQL engines prune by rig and day).

    PREFIX/rig=NAME/date=YYYY-MM-DD/NAME.bin, NAME.json, NAME.mp4    a closed segment (date: its UTC start)
    PREFIX/rig=NAME/date=YYYY-MM-DD/timelapse-YYYYMMDD.bin          the day's timelapse
    PREFIX/rig=NAME/date=YYYY-MM-DD/journal.jsonl                    the night journal, as of that day
    PREFIX/rig=NAME/date=YYYY-MM-DD/segments.parquet                 the day's catalogue (one row per segment)
    PREFIX/rig=NAME/status.json                                      the rig's latest status file
    PREFIX/rig=NAME/rig.json                                         which recorder owns the name

Pure functions of names and times; no I/O.
"""

from __future__ import annotations

import datetime as _dt
import re

from autorec.outdir import STATUS_NAME

CATALOGUE_NAME = "segments.parquet"
_DAY_IN_NAME = re.compile(r"(\d{4})(\d{2})(\d{2})")


def utc_day(t: float) -> str:
    """`YYYY-MM-DD` of epoch seconds `t` in UTC."""
    return _dt.datetime.fromtimestamp(t, tz=_dt.timezone.utc).strftime("%Y-%m-%d")


def day_of_daily_file(name: str) -> str | None:
    """`YYYY-MM-DD` from a daily log's name (`timelapse-20261207.bin`), None if it holds no day."""
    m = _DAY_IN_NAME.search(name)
    if m is None:
        return None
    try:
        return _dt.date(int(m[1]), int(m[2]), int(m[3])).isoformat()
    except ValueError:
        return None


def rig_prefix(prefix: str, rig: str) -> str:
    return "/".join(p for p in (prefix, f"rig={rig}") if p)


def day_prefix(prefix: str, rig: str, day: str) -> str:
    return f"{rig_prefix(prefix, rig)}/date={day}"


def file_key(prefix: str, rig: str, day: str, name: str) -> str:
    return f"{day_prefix(prefix, rig, day)}/{name}"


def catalogue_key(prefix: str, rig: str, day: str) -> str:
    return file_key(prefix, rig, day, CATALOGUE_NAME)


def status_key(prefix: str, rig: str) -> str:
    return f"{rig_prefix(prefix, rig)}/{STATUS_NAME}"


def parse_partitions(key: str) -> dict[str, str]:
    """The `name=value` parts of a key (`{"rig": "a", "date": "2026-12-07"}`)."""
    out: dict[str, str] = {}
    for part in key.split("/"):
        name, eq, value = part.partition("=")
        if eq and name in ("rig", "date"):
            out[name] = value
    return out
