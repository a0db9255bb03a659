"""Durations and sizes as a lab user writes them: `10s`, `30min`, `256MB`, `1GiB`; times as people read them.

`parse_duration` returns seconds (float); `parse_size` returns bytes (int).
Bare numbers are seconds / bytes. Errors are `ValueError` with a message that
lists the allowed units, ready to show after a file:line prefix.

`parse_listen` reads a listening address, `[HOST:]PORT` (`--http`, `--metrics`).

`format_size` is the one size format a person reads (`109.7MB`); `with_iso_times` puts ISO 8601
UTC strings (`autorec.dates.utc_iso`, the one date helper) beside the epoch times of the JSON files
autorec writes (sidecars, `index.jsonl`, `status.json`).
"""

from __future__ import annotations

import datetime
import math
import re
from typing import Any

# `m` is minutes, as people write it (`3m`); there is no month or metre to confuse it with here.
DURATION_UNITS: dict[str, float] = {"ms": 1e-3, "s": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0, "d": 86400.0}
SIZE_UNITS: dict[str, int] = {
    "B": 1,
    "kB": 10**3,
    "MB": 10**6,
    "GB": 10**9,
    "TB": 10**12,
    "KiB": 2**10,
    "MiB": 2**20,
    "GiB": 2**30,
    "TiB": 2**40,
}
_NUMBER_UNIT = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*([A-Za-z]*)\s*$")


def show_written(value: Any) -> str:
    """A value as it was written, for an error message (`'5 fortnights'`, `a mapping`; a bare
    `2026-12-01`, which YAML reads as a date, as itself rather than `datetime.date(2026, 12, 1)`)."""
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list" if value else "an empty list"
    if isinstance(value, datetime.date):  # a datetime is a date too
        shown = value.isoformat(sep=" ") if isinstance(value, datetime.datetime) else value.isoformat()
        return f"{shown} (YAML reads it as a date)"
    return repr(value)


def _split(text: str) -> tuple[float, str] | None:
    m = _NUMBER_UNIT.match(text)
    if not m:
        return None
    return float(m.group(1)), m.group(2)


def _negative(value: object) -> bool:
    """`-5s`, `- 2GB`: a well-formed value with a minus sign (said as such, not as 'expected a duration')."""
    return isinstance(value, str) and value.strip().startswith("-") and _split(value.strip()[1:]) is not None


def _finite(number: float, value: object, what: str) -> float:
    # YAML's .inf/.nan and overflowing exponents (1e400s) would otherwise pass as
    # durations no timer can wait for, or crash int() for sizes.
    if not math.isfinite(number):
        raise ValueError(f"{what} must be a finite number, got {show_written(value)}")
    return number


def parse_duration(value: str | int | float) -> float:
    if isinstance(value, bool):
        raise ValueError(f"expected a duration like 10s, got {show_written(value)}")
    if isinstance(value, (int, float)):
        if value < 0:
            raise ValueError(f"a duration cannot be negative: {value!r}")
        return _finite(float(value), value, "a duration")
    parts = _split(str(value))
    allowed = ", ".join(DURATION_UNITS)
    if parts is None and _negative(value):
        raise ValueError(f"a duration cannot be negative, got {show_written(value)}")
    if parts is None:
        raise ValueError(f"expected a duration like 10s or 30min (units: {allowed}), got {show_written(value)}")
    number, unit = parts
    if unit == "":
        return _finite(number, value, "a duration")
    if unit not in DURATION_UNITS:
        raise ValueError(f"unknown duration unit {unit!r} in {value!r} (units: {allowed})")
    return _finite(number * DURATION_UNITS[unit], value, "a duration")


def parse_size(value: str | int | float) -> int:
    if isinstance(value, bool):
        raise ValueError(f"expected a size like 256MB, got {show_written(value)}")
    if isinstance(value, (int, float)):
        if value < 0:
            raise ValueError(f"a size cannot be negative: {value!r}")
        return int(_finite(value, value, "a size"))
    parts = _split(str(value))
    allowed = ", ".join(SIZE_UNITS)
    if parts is None and _negative(value):
        raise ValueError(f"a size cannot be negative, got {show_written(value)}")
    if parts is None:
        raise ValueError(f"expected a size like 256MB or 1GiB (units: {allowed}), got {show_written(value)}")
    number, unit = parts
    if unit == "":
        return int(_finite(number, value, "a size"))
    if unit not in SIZE_UNITS:
        raise ValueError(f"unknown size unit {unit!r} in {value!r} (units: {allowed})")
    return int(_finite(number * SIZE_UNITS[unit], value, "a size"))


def format_duration(seconds: float) -> str:
    if seconds < 1:
        return f"{seconds * 1000:.0f}ms"
    if seconds < 120:
        return f"{seconds:.1f}s"
    if seconds < 7200:
        return f"{seconds / 60:.1f}min"
    return f"{seconds / 3600:.1f}h"


def format_size(n: float) -> str:
    for unit, scale in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= scale:
            return f"{n / scale:.1f}{unit}"
    return f"{int(n)}B"


# Keys that hold epoch seconds in sidecars, index lines and the status file.
TIME_KEYS = frozenset(
    {"start", "end", "segment_start", "segment_end", "time", "first", "last", "original_time", "stamped_time"}
    | {"updated", "since", "at"}
)


def with_iso_times(value: Any) -> Any:
    """`value` (JSON-like) with `KEY_iso` (UTC with milliseconds, `autorec.dates.utc_iso`) after every epoch time
    in `TIME_KEYS`, and
    `duration_s` after a mapping's `start`/`end` pair, for people reading the files.

    Recomputed from the epoch values: `_iso` and `duration_s` keys already in `value` are replaced.
    Trigger evidence (`evidence`) is left as the trigger wrote it. A time that cannot be shown as a
    date (a rig clock far out of range) gets null.
    """
    if isinstance(value, list):
        return [with_iso_times(v) for v in value]
    if not isinstance(value, dict):
        return value
    out: dict[Any, Any] = {}
    for key, v in value.items():
        if key == "duration_s" or (isinstance(key, str) and key.endswith("_iso") and key[:-4] in TIME_KEYS):
            continue
        out[key] = v if key == "evidence" else with_iso_times(v)
        if key in TIME_KEYS and (v is None or _is_number(v)):
            out[f"{key}_iso"] = _iso_or_none(v)
        if key == "end" and _is_number(value.get("start")) and _is_number(v):
            out["duration_s"] = round(v - value["start"], 3)
    return out


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _iso_or_none(v: Any) -> str | None:
    """The ISO form of `v`, or None where it is no date (not a finite number, or out of range: the
    files keep the true epoch value and say it cannot be shown, rather than a clamped date)."""
    from autorec.dates import MAX_TIME, MIN_TIME, utc_iso

    if not _is_number(v) or not MIN_TIME <= v <= MAX_TIME:
        return None
    return utc_iso(v)


def parse_listen(text: str, default_host: str = "127.0.0.1") -> tuple[str, int]:
    """`PORT`, `HOST:PORT` or `[V6]:PORT` -> (host, port); ValueError with a readable message."""
    text = text.strip()
    host, sep, port_text = text.rpartition(":")
    if not sep:
        host, port_text = default_host, text
    host = host.strip("[]") or default_host
    try:
        port = int(port_text)
    except ValueError:
        raise ValueError(f"{text!r}: expected PORT or HOST:PORT (e.g. 8080 or 0.0.0.0:8080)") from None
    if not 0 <= port <= 65535:
        raise ValueError(f"{text!r}: port must be 0-65535")
    return host, port
