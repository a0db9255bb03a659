"""Turning an epoch time (any float) into a date, without ever raising.

Stream time comes from the rig's clock, and a damaged record can carry any
value: 0 (1970), year 1, year 40000, or a float that is not a number. Every
place that shows a time as a date (segment names, telemetry file names,
`--dry-run` lines, `info`, alerts, hooks, the video overlay and metadata)
goes through this module, so none of them can fail on it.

Contract: times are clamped to what `datetime` can show, 0001-01-01T00:00:00
to 9999-12-31T23:59:59.999999 UTC (a NaN becomes 1970-01-01T00:00:00Z); the
result is always a valid date string. A format that `strftime` rejects gives
the ISO form instead. Clamping, not a placeholder, so file names stay sortable
and of the usual shape; the true value is always kept elsewhere (sidecars and
the index carry the epoch seconds).
"""

from __future__ import annotations

import datetime as _dt
import math
import re
import time as _time

UTC = _dt.timezone.utc
EPOCH = _dt.datetime(1970, 1, 1, tzinfo=UTC)
FIRST = _dt.datetime(1, 1, 1, tzinfo=UTC)
LAST = _dt.datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)
MIN_TIME = (FIRST - EPOCH).total_seconds()  # -62135596800.0
MAX_TIME = (LAST - EPOCH).total_seconds()


def clamp_time(t: float) -> float:
    """`t` limited to the range a date can show (NaN: 0.0)."""
    try:
        t = float(t)
    except (TypeError, ValueError, OverflowError):
        return 0.0
    if math.isnan(t):
        return 0.0
    return min(max(t, MIN_TIME), MAX_TIME)


def utc_datetime(t: float) -> _dt.datetime:
    """An aware UTC datetime for epoch `t`, clamped (see the module docstring). Never raises."""
    t = clamp_time(t)
    # EPOCH + timedelta avoids the platform's gmtime/localtime, whose range is narrower on some systems.
    try:
        return EPOCH + _dt.timedelta(seconds=t)
    except OverflowError:  # rounding at the very ends of the range
        return FIRST if t < 0 else LAST


def utc_strftime(t: float, fmt: str) -> str:
    """`strftime(fmt)` of epoch `t` in UTC; never raises (a rejected format gives `utc_iso(t)`)."""
    d = utc_datetime(t)
    try:
        return d.strftime(_four_digit_year(fmt, d.year))
    except (ValueError, OverflowError):
        return utc_iso(t)


_YEAR = re.compile(r"%([%Y])")


def _four_digit_year(fmt: str, year: int) -> str:
    # glibc writes year 1 as "1" for %Y; a file name must keep its shape (and sort), so pad it.
    return _YEAR.sub(lambda m: "%%" if m.group(1) == "%" else f"{year:04d}", fmt)


def utc_iso(t: float, digits: int = 3, sep: str = "T") -> str:
    """`YYYY-MM-DDTHH:MM:SS.mmmZ` (with `digits` fraction digits, 0-6) of epoch `t`; never raises."""
    d = utc_datetime(t)
    text = f"{d.year:04d}-{d.month:02d}-{d.day:02d}{sep}{d.hour:02d}:{d.minute:02d}:{d.second:02d}"
    if digits > 0:
        text += "." + f"{d.microsecond:06d}"[:digits]
    return text + "Z"


def local_strftime(t: float, fmt: str) -> str:
    """`strftime(fmt)` of epoch `t` in the local time zone; never raises (falls back to UTC)."""
    # Two days inside the range, so that no time zone offset can carry it out.
    t = min(max(clamp_time(t), MIN_TIME + 172_800), MAX_TIME - 172_800)
    try:
        return _time.strftime(fmt, _time.localtime(int(t)))
    except (ValueError, OverflowError, OSError):
        return utc_strftime(t, fmt)
