"""Segment file names: `output.name` templates rendered into one safe file name.

`render_segment_name(template, start, rules, seq)` never raises for any time (a time out of the
calendar's range is clamped, see `autorec.dates`) and never returns a name containing a path
separator, a control character or a leading dot, so a segment always lands directly in the
output directory. The loader (`autorec.rules`) checks a template once at load time with
`render_raw`, so a bad one is reported up front with its line.
"""

from __future__ import annotations

import re
import string

from autorec.dates import utc_strftime

DEFAULT_NAME = "{start:%Y%m%dT%H%M%SZ}-{rules}"
DEFAULT_START_FORMAT = "%Y%m%dT%H%M%SZ"
NAME_FIELDS = ("start", "rules", "seq")
# Longest segment base name in bytes: leaves room for ".bin.partial" and friends within NAME_MAX (255).
MAX_NAME_BYTES = 200

UNSAFE = re.compile(r"[/\\\x00-\x1f\x7f]")


def render_raw(template: str, start: float, rules: list[str], seq: int) -> str:
    rule_text = "+".join(dict.fromkeys(rules)) or "none"
    parts = []
    for literal, name, spec, _conv in string.Formatter().parse(template):
        parts.append(literal)
        if name is None:
            continue
        if name == "start":
            # Never raises: a time out of the calendar's range is clamped to it (autorec.dates).
            parts.append(utc_strftime(start, spec or DEFAULT_START_FORMAT))
        elif name == "rules":
            parts.append(format(rule_text, spec or ""))
        elif name == "seq":
            parts.append(format(seq, spec or ""))
        else:  # rejected at load time; never render an unknown field
            raise ValueError(f"unknown placeholder {{{name}}}")
    return "".join(parts)


def render_segment_name(template: str, start: float, rules: list[str], seq: int) -> str:
    """The base name (no extension) of a segment starting at `start` (epoch s, shown in UTC).

    Placeholders: `{start:STRFTIME}` (default %Y%m%dT%H%M%SZ), `{rules}` (rule names joined by
    '+'), `{seq}` (an int, format spec allowed). The result is always a single path component
    inside the output directory: separators and control characters become '_', a leading '.'
    becomes '_', and it is cut to MAX_NAME_BYTES bytes of UTF-8.
    """
    name = UNSAFE.sub("_", render_raw(template, start, rules, seq)).strip()
    if name.startswith("."):
        name = "_" + name[1:]
    encoded = name.encode("utf-8")
    if len(encoded) > MAX_NAME_BYTES:
        name = encoded[:MAX_NAME_BYTES].decode("utf-8", errors="ignore")
    return name or "segment"
