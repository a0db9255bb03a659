"""Times and trigger evidence as a person reads them: the one place that words them.

Everything a person reads (the report, the web pages, the command line) shows a time the
same way: the computer's local time, whole seconds (or tenths where they matter, such as a
firing inside a segment), with UTC beside it (`2026-12-07 02:14:07 (UTC 01:14:07)`) or on
hover in HTML (`time_html`). Machine-readable files (sidecars, index, journal) keep epoch
seconds and ISO 8601 UTC (`autorec.dates.utc_iso`); this module is only for people.

Evidence (a firing's `evidence` dict, as each trigger writes it) is put in words by
`evidence_text`: `pins 12, 13 driven (added 13)`, `board connected: no`,
`temperature 46.2, above 45`, `since 02:14:07.3`; never a Python repr, a bare `[]` or an
epoch float. Unknown keys (a plugin's) get the same treatment: lists joined, mappings as
`key: value`, yes/no for booleans, and times (keys such as `time`, `since`, `*_at`) as
clock times. Nothing here raises for odd values: a damaged time shows as a clamped date
(`autorec.dates`), an odd value as its text.
"""

from __future__ import annotations

import html
import math
from typing import Any

from autorec.dates import clamp_time, local_strftime, utc_strftime

# Evidence keys whose numbers are epoch times.
TIME_KEYS = frozenset({"time", "since", "at", "scheduled", "onset", "start", "end", "first", "last", "until"})
MAX_LIST = 12  # longer lists show their first items and how many there are in all


def _fraction(t: float, digits: int) -> str:
    if digits <= 0:
        return ""
    t = clamp_time(t)
    frac = math.floor((t - math.floor(t)) * 10**digits)
    return "." + f"{frac:0{digits}d}"


def clock(t: float | None, digits: int = 0) -> str:
    """Local time of day, `02:14:07` (`digits` 1: `02:14:07.3`); `?` for no time."""
    if t is None:
        return "?"
    return local_strftime(t, "%H:%M:%S") + _fraction(t, digits)


def local_time(t: float | None, digits: int = 0) -> str:
    """Local date and time, `2026-12-07 02:14:07`; `?` for no time."""
    if t is None:
        return "?"
    return local_strftime(t, "%Y-%m-%d %H:%M:%S") + _fraction(t, digits)


def utc_time(t: float | None, digits: int = 0, date: bool = True) -> str:
    """UTC date and time, `2026-12-07 01:14:07` (`date` False: the time of day only); `?` for no time."""
    if t is None:
        return "?"
    return utc_strftime(t, "%Y-%m-%d %H:%M:%S" if date else "%H:%M:%S") + _fraction(t, digits)


def utc_beside(t: float | None, digits: int = 0, date: bool = True) -> str:
    """The UTC time shown beside a local one: `01:14:07`, with its date only when the local date (shown
    when `date`) differs from it."""
    if t is None:
        return "?"
    same_day = local_strftime(t, "%Y-%m-%d") == utc_strftime(t, "%Y-%m-%d")
    return utc_time(t, digits, date=date and not same_day)


def local_and_utc(t: float | None, digits: int = 0, date: bool = True) -> str:
    """`2026-12-07 02:14:07 (UTC 01:14:07)`: local, with UTC beside it (the command line's style)."""
    if t is None:
        return "?"
    local = local_time(t, digits) if date else clock(t, digits)
    return f"{local} (UTC {utc_beside(t, digits, date)})"


def time_html(t: float | None, digits: int = 0, date: bool = False) -> str:
    """A `<time>` element: local time (with the date if `date`), UTC on hover, ISO in `datetime`."""
    if t is None:
        return "?"
    from autorec.dates import utc_iso

    shown = local_time(t, digits) if date else clock(t, digits)
    title = "UTC " + utc_time(t, digits)
    return f'<time datetime="{utc_iso(t)}" title="{html.escape(title)}">{html.escape(shown)}</time>'


# -- evidence ------------------------------------------------------------------------------------


def _is_time_key(key: str) -> bool:
    return key in TIME_KEYS or key.endswith(("_at", "_time", "_since"))


def number(v: float) -> str:
    """A measured value: 4 significant digits, never an exponent for everyday magnitudes."""
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, int):
        return str(v)
    if not math.isfinite(v):
        return str(v)
    if v == 0:
        return "0"
    if abs(v) >= 999.95:  # .4g would write 9999.7 as 1e+04
        return f"{v:.0f}"
    if abs(v) >= 1e-3:
        return f"{v:.4g}"
    return f"{v:.2e}"


def value_text(key: str, value: Any) -> str:
    """One evidence value in words (see the module docstring)."""
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, (int, float)):
        if _is_time_key(key) and 1e8 < abs(value) < 1e11:  # an epoch time (1973-5138), not a count
            return clock(float(value), 1)
        return number(value)
    if isinstance(value, (list, tuple)):
        if not value:
            return "none"
        items = [value_text(key, v) for v in value[:MAX_LIST]]
        more = f", ... ({len(value)} in all)" if len(value) > MAX_LIST else ""
        return ", ".join(items) + more
    if isinstance(value, dict):
        if not value:
            return "none"
        return "; ".join(f"{_field_name(str(k))}: {value_text(str(k), v)}" for k, v in value.items())
    return str(value)


def _field_name(path: str) -> str:
    """`device_info.connected` -> `board connected`; other paths lose their message-kind prefix."""
    names = {"device_info.connected": "board connected"}
    if path in names:
        return names[path]
    head, _, rest = path.partition(".")
    return rest if rest and head.islower() and "_" in head else path


def _pins(pins: Any) -> str:
    """`pin 12`, `pins 12, 13`, `no pin`."""
    pins = pins if isinstance(pins, list) else []
    if not pins:
        return "no pin"
    return ("pin " if len(pins) == 1 else "pins ") + value_text("pins", pins)


def _electrodes(e: dict[str, Any]) -> str:
    pins = e.get("pins")
    text = f"{_pins(pins)} driven" if pins else "no pins driven"
    changes = [f"{k} {value_text(k, e[k])}" for k in ("added", "removed") if isinstance(e.get(k), list) and e[k]]
    return text + (f" ({'; '.join(changes)})" if changes else "")


def _movement(e: dict[str, Any]) -> str:
    parts = []
    if e.get("added"):
        parts.append(f"drops arrived on {_pins(e['added'])}")
    if e.get("removed"):
        parts.append(f"left {_pins(e['removed'])}")
    parts.append(f"now on {_pins(e.get('covered'))}" if e.get("covered") else "no pins covered")
    if isinstance(e.get("since"), (int, float)):
        parts.append(f"since {value_text('since', e['since'])}")
    return "; ".join(parts)


def _threshold(e: dict[str, Any]) -> str:
    name = _field_name(str(e.get("field", "value")))
    value = value_text("value", e.get("value"))
    if "above" in e:
        return f"{name} {value}, above {value_text('above', e['above'])}"
    if "below" in e:
        return f"{name} {value}, below {value_text('below', e['below'])}"
    if "change" in e and isinstance(e.get("change"), (int, float)):
        return f"{name} {value}, changed by {e['change']:+.4g} from {value_text('previous', e.get('previous'))}"
    return f"{name} {value}"


def _motion(e: dict[str, Any]) -> str:
    score = e.get("score")
    pct = f"{score * 100:.2g} % of the picture changed" if isinstance(score, (int, float)) else "the picture changed"
    bbox = e.get("bbox")
    where = ""
    if isinstance(bbox, list) and len(bbox) == 4 and all(isinstance(v, int) for v in bbox):
        x, y, w, h = bbox
        where = f" around ({x + w // 2}, {y + h // 2}), {w}x{h} px"
    frames = e.get("frames")
    return f"camera: {pct}{where}" + (f", {frames} frames in a row" if isinstance(frames, int) else "")


def _missed_move(e: dict[str, Any]) -> str:
    pin = value_text("pin", e.get("pin"))
    waited = e.get("waited")
    after = f"{waited:.1f} s" if isinstance(waited, (int, float)) else "?"
    driven_at = value_text("driven_at", e.get("driven_at"))
    if e.get("what") == "no_arrival":
        return f"pin {pin} driven at {driven_at}; no drop after {after}; drop still on {_pins(e.get('drops_on'))}"
    if e.get("what") == "no_change":
        change = e.get("change")
        levels = f" (change {change:.1f} levels)" if isinstance(change, (int, float)) else ""
        return f"pin {pin} driven at {driven_at}; its part of the picture did not change in {after}{levels}"
    return (
        f"drop on pin {pin}, not driven; driven: {_pins(e.get('driven'))} since {driven_at}; "
        f"left {_pins(e.get('drops_on'))}"
    )


def _near_miss(e: dict[str, Any]) -> str:
    text = f"near-miss: peak {value_text('peak', e.get('peak'))}"
    if isinstance(e.get("baseline"), (int, float)):
        text += f", usually {value_text('baseline', e['baseline'])}"
    return text + f", fires at {value_text('threshold', e.get('threshold'))}"


def _message(e: dict[str, Any]) -> str:
    kind = str(e.get("kind", ""))
    where = e.get("where")
    if isinstance(where, dict) and where:
        return "; ".join(
            f"{_field_name(str(k) if '.' in str(k) or not kind else f'{kind}.{k}')}: {value_text(str(k), v)}"
            for k, v in where.items()
        )
    return f"{kind or 'a'} message"


def evidence_text(rule: str, evidence: Any) -> str:
    """A firing's evidence in words, e.g. `camera: 0.4 % of the picture changed around (512, 300), 40x30 px`.

    Recognises the built-in triggers' evidence by its keys (a rule's name says nothing of its trigger);
    anything else is `key value` pairs in words. No evidence: the rule's name."""
    if not isinstance(evidence, dict) or not evidence:
        return rule
    e = evidence
    if e.get("near_miss") is True:
        return _near_miss(e)
    if e.get("what") in ("no_arrival", "left_path", "no_change"):
        return _missed_move(e)
    if "bbox" in e or ("score" in e and "frames" in e):
        return _motion(e)
    if "field" in e and "value" in e:
        return _threshold(e)
    if "covered" in e and ("added" in e or "removed" in e):
        return _movement(e)
    if "pins" in e and ("added" in e or "removed" in e):
        return _electrodes(e)
    if "kind" in e and set(e) <= {"kind", "where"}:
        return _message(e)
    if set(e) == {"scheduled"}:
        return f"scheduled for {value_text('scheduled', e['scheduled'])}"
    return "; ".join(f"{k} {value_text(str(k), v)}" for k, v in e.items() if k != "text")
