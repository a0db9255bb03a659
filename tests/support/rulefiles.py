"""Helpers for the rule-file, trigger and engine tests: write rule files, read logs as timed events.

The events themselves come from `tests.support.eventbuilder`."""

from __future__ import annotations

import textwrap
from collections.abc import Iterator
from pathlib import Path

from autorec import events
from autorec.io.logfile import LogReader
from autorec.proto import PurpleDropEvent


def write_rules(tmp_path: Path, text: str, name: str = "rules.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text).lstrip("\n"))
    return path


def timed(path: Path) -> Iterator[tuple[float, PurpleDropEvent]]:
    """(time, event) for every event of a log, carrying the last timestamp forward."""
    last = None
    for _record, ev in LogReader(path).events():
        ts = events.timestamp(ev)
        if ts is not None:
            last = ts
        if last is None:
            continue
        yield last, ev
