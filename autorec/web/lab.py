"""The lab page: one page for every rig, from several output directories or from an object store.

`autorec serve DIR DIR ...`: each directory is a rig (named as it uploads, `rig=NAME` in its
`uploads.jsonl`, else the directory's name). Each rig keeps its full web UI (`WebUI`), served on
its own port (the lab page's port + 1, + 2, ...): the UI's pages and scripts use absolute paths
(`/night`, `/api/...`), so a rig's UI cannot sit under a path prefix without rewriting them; a port
of its own serves it unchanged. The lab page links to each rig's live, night and segment pages there.

`autorec serve s3://BUCKET/PREFIX`: the rigs are the store's `rig=NAME/` partitions, their last
status the rig's `status.json` object (and whether the latest day's journal ends with `stop`), their
nights and segments the daily catalogues (`segments.parquet`, read as `autorec ls s3://` reads them).
A night's page lists its segments with download links; the server streams each file from the store
(only keys a catalogue names; never a write to the bucket). There are no plots or frames from the
store: download the segment, or copy the day locally and `autorec serve` it.

Contract: `directory_rig(path)` and `store_rigs(store)` return `Rig`s (blocking: call them in a
worker thread); `lab_page(rigs, ...)` and `store_night_page(...)` return HTML.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

from autorec.io.boundedread import open_regular
from autorec.outdir import INDEX_NAME, JOURNAL_NAME, STATUS_NAME, UPLOAD_STATE_NAME
from autorec.readable import local_and_utc, time_html
from autorec.report import markup
from autorec.units import format_duration, format_size
from autorec.web.feed import DirectoryFeed, stop_of_journal_tail
from autorec.web.pages import page_head

log = logging.getLogger(__name__)

STATUS_LIMIT = 1 << 20  # a status file is a few kB; more is not one
TAIL_BYTES = 65536  # how much of a journal's end is read for its `stop` line
SEGMENTS_SHOWN = 4  # a night's latest segments linked from the lab page (its night page has them all)
_BADGE_CLASS = {"connected": "up", "disconnected": "down"}


@dataclass
class NightRow:
    """One UTC day of a rig with segments."""

    day: str
    segments: int = 0
    bytes: int = 0
    first: float | None = None
    last: float | None = None
    names: list[str] = field(default_factory=list)  # its segments, by start


@dataclass
class Rig:
    """A rig as the lab page shows it."""

    name: str
    source: str  # the directory, or the store prefix
    status: dict[str, Any] | None = None
    stopped: dict[str, Any] | None = None
    nights: list[NightRow] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    rows: list[dict[str, Any]] = field(default_factory=list)  # store: the catalogue rows


_e = markup.text  # the one escaping path (autorec.report.markup)


def nights_of(rows: list[tuple[str, float | None, int, str]]) -> list[NightRow]:
    """Per-day totals of `(day, start, bytes, name)`, newest day first."""
    by_day: dict[str, NightRow] = {}
    for day, start, size, name in sorted(rows, key=lambda r: (r[0], r[1] or 0)):
        n = by_day.setdefault(day, NightRow(day))
        n.segments += 1
        n.names.append(name)
        n.bytes += size
        if start is not None:
            n.first = start if n.first is None else min(n.first, start)
            n.last = start if n.last is None else max(n.last, start)
    return sorted(by_day.values(), key=lambda n: n.day, reverse=True)


def uploaded_rig_name(directory: Path) -> str | None:
    """The rig name this directory uploads as (`rig=NAME` in the keys of `uploads.jsonl`), or None."""
    from autorec.io.storelayout import parse_partitions

    try:
        with open_regular(directory / UPLOAD_STATE_NAME) as f:  # a planted FIFO never blocks the page
            head = f.read(65536)
    except OSError:
        return None
    for line in head.splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if isinstance(entry, dict) and isinstance(entry.get("key"), str):
            rig = parse_partitions(entry["key"]).get("rig")
            if rig:
                return rig
    return None


def _status_of(data: bytes | None, where: str, problems: list[str]) -> dict[str, Any] | None:
    if data is None:
        return None
    try:
        status = json.loads(data)
    except ValueError:
        problems.append(f"{where}: not JSON (being replaced, or damaged)")
        return None
    return status if isinstance(status, dict) else None


def directory_rig(directory: str | os.PathLike[str]) -> Rig:
    """A directory's rig: its name, status file, journal's stop line and per-day segment totals."""
    from autorec.io.storelayout import utc_day
    from autorec.report.night import load_night

    path = Path(directory)
    rig = Rig(uploaded_rig_name(path) or path.resolve().name, str(path))
    try:
        with open_regular(path / STATUS_NAME) as f:
            data: bytes | None = f.read(STATUS_LIMIT)
    except OSError:
        data = None
    rig.status = _status_of(data, str(path / STATUS_NAME), rig.problems)
    rig.stopped = DirectoryFeed(path).last_stop()
    if (path / INDEX_NAME).exists():
        night = load_night(path)
        rig.problems.extend(night.problems)
        rig.nights = nights_of([(utc_day(s.start), s.start, s.bytes, s.name) for s in night.segments])
    return rig


def store_rigs(store: Any) -> tuple[list[Rig], list[str]]:
    """Every rig under the store's prefix (an `autorec.io.objectstore.ObjectStore`) with its status,
    stop line and nights, and the problems of the whole listing. Raises StoreError when it cannot list."""
    from autorec.io.catalogue import store_rows
    from autorec.io.objectstore import StoreError
    from autorec.io.storelayout import file_key, parse_partitions, status_key

    prefix = store.location.prefix
    names: set[str] = set()
    for key, _size in store.list_keys(prefix + "/" if prefix else ""):
        rig = parse_partitions(key).get("rig")
        if rig:
            names.add(rig)
    rows, problems = store_rows(store, [], None, None)
    rigs: list[Rig] = []
    for name in sorted(names):
        rig = Rig(name, f"{store.location}/rig={name}")
        rig.rows = [r for r in rows if r.get("rig") == name]
        rig.nights = nights_of(
            [(r.get("date") or "?", r.get("start"), r.get("bytes") or 0, r.get("name") or "?") for r in rig.rows]
        )
        try:
            rig.status = _status_of(store.get_bytes(status_key(prefix, name)), f"rig={name}/status.json", rig.problems)
        except StoreError as exc:
            if exc.kind != "missing":
                rig.problems.append(str(exc))
        if rig.nights:
            try:
                tail = store.get_tail(file_key(prefix, name, rig.nights[0].day, JOURNAL_NAME), TAIL_BYTES)
                rig.stopped = stop_of_journal_tail(tail)
            except StoreError:
                pass  # no journal uploaded for that day: the status object alone says how it is
        rigs.append(rig)
    return rigs, problems


# -- HTML -----------------------------------------------------------------------------------------


def _head(title: str) -> str:
    return page_head(title) + '<nav class=top><b>autorec</b> <a href="/" class=active>Lab</a></nav>\n<main class=lab>\n'


def status_text(rig: Rig, now: float) -> tuple[str, str]:
    """`(badge, details)` of a rig's last status: the badge says connected / disconnected / stopped /
    unknown; the details the last update, the stop, active alerts and disk free."""
    s = rig.status or {}
    facts: list[str] = []
    updated = s.get("updated")
    if isinstance(updated, (int, float)):
        facts.append(f"last update {local_and_utc(updated)}, {format_duration(max(0.0, now - updated))} ago")
    if rig.stopped is not None:
        wall = rig.stopped.get("wall")
        when = local_and_utc(wall) if isinstance(wall, (int, float)) else "?"
        facts.append(f"the recorder stopped at {when} ({rig.stopped.get('reason') or 'no reason given'})")
    alerts = s.get("alerts")
    if isinstance(alerts, list) and alerts:
        named = ", ".join(str(a.get("name") or a.get("key") or "?") for a in alerts if isinstance(a, dict))
        facts.append(f"{len(alerts)} alert(s) active: {named}")
    elif isinstance(alerts, list):
        facts.append("no alert active")
    free = s.get("disk_free")
    if isinstance(free, (int, float)):
        total = s.get("disk_total")
        of = f" of {format_size(total)}" if isinstance(total, (int, float)) and total else ""
        facts.append(f"disk free {format_size(free)}{of}" + (" (below the floor)" if s.get("disk_below_floor") else ""))
    if rig.stopped is not None:
        badge = "stopped"
    elif not s:
        badge = "no status"
    else:
        badge = "connected" if s.get("connected") else "disconnected"
    return badge, "; ".join(facts) or "no status file"


def _rig_section(rig: Rig, now: float, links: dict[str, str]) -> str:
    badge, details = status_text(rig, now)
    head_links = " ".join(
        f'<a href="{_e(links[label])}">{_e(label)}</a>' for label in ("live", "night") if links.get(label)
    )
    badge_class = _BADGE_CLASS.get(badge, "")
    out = [
        f'<section class=rig data-rig="{_e(rig.name)}"><h2>{_e(rig.name)} <span class="badge {badge_class}">'
        f"{_e(badge)}</span> <small>{head_links}</small></h2>",
        f"<div class=sub>{_e(rig.source)}</div><p class=status>{_e(details)}</p>",
    ]
    if not rig.nights:
        out.append("<p>no segments kept</p>")
    else:
        out.append(
            "<table class=nights><tr><th>night (UTC day)</th><th>segments</th><th>kept</th>"
            "<th>first</th><th>last</th><th>latest segments</th></tr>"
        )
        night_link = links.get("night") or ""
        segment_link = links.get("segment") or ""
        for n in rig.nights:
            href = links.get("day", "").replace("{day}", quote(n.day)) or night_link
            day = f'<a href="{_e(href)}">{_e(n.day)}</a>' if href else _e(n.day)
            shown = n.names[-SEGMENTS_SHOWN:]
            segs = " ".join(
                f'<a class=seg href="{_e(segment_link.replace("{name}", quote(name)).replace("{day}", quote(n.day)))}">'
                f"{_e(name)}</a>"
                for name in reversed(shown)
            )
            if len(n.names) > len(shown):
                segs += f" and {len(n.names) - len(shown)} more"
            out.append(
                f"<tr><td>{day}</td><td>{n.segments}</td><td>{_e(format_size(n.bytes))}</td>"
                f"<td>{time_html(n.first, date=True)}</td><td>{time_html(n.last, date=True)}</td>"
                f"<td class=segs>{segs}</td></tr>"
            )
        out.append("</table>")
    for p in rig.problems[:5]:
        out.append(f"<p class=problem>{_e(p)}</p>")
    out.append("</section>")
    return "\n".join(out)


def lab_page(title: str, rigs: list[Rig], links: dict[str, dict[str, str]], now: float, problems: list[str]) -> str:
    """The lab page: one section per rig. `links[rig.name]` maps a label (`live`, `night`) to a URL shown
    beside the rig's name, `day` to a URL with `{day}` for a night's own page (the store's; a night
    without one links to `night`), and `segment` to a URL with `{name}` (and `{day}`) for a segment."""
    body = [
        _head(f"autorec lab: {title}"),
        f"<header><h1>Lab</h1><div class=sub>{_e(title)}: {len(rigs)} rig(s)</div></header>",
    ]
    body.extend(_rig_section(r, now, links.get(r.name, {})) for r in rigs)
    if not rigs:
        body.append("<p>no rig here yet</p>")
    body.extend(f"<p class=problem>{_e(p)}</p>" for p in problems[:10])
    body.append("</main></body></html>")
    return "\n".join(body)


def file_name_of(key: str | None) -> str:
    return (key or "").rsplit("/", 1)[-1]


def store_night_page(rig: str, day: str, rows: list[dict[str, Any]]) -> str:
    """A night from the store: its segments (time, length, rules, size, close reason) with links that
    download the segment's log, sidecar and videos through the server (`files/NAME`, relative)."""
    body = [
        _head(f"autorec {rig}: {day}"),
        f"<header><h1>{_e(rig)}: {_e(day)}</h1><div class=sub>{len(rows)} segment(s), "
        f"{_e(format_size(sum(r.get('bytes') or 0 for r in rows)))}, from the store's catalogue</div></header>",
        "<table class=segments><tr><th>start</th><th>length</th><th>rules</th><th>size</th><th>closed</th>"
        "<th>files</th></tr>",
    ]
    for r in rows:
        keys = [r.get("key"), r.get("sidecar_key"), *(r.get("video_keys") or [])]
        files = " ".join(
            f'<a href="files/{quote(file_name_of(k))}" download>{_e(file_name_of(k))}</a>' for k in keys if k
        )
        body.append(
            f'<tr id="{_e(r.get("name") or "")}" data-name="{_e(r.get("name") or "")}">'
            f"<td>{time_html(r.get('start'), date=True)}</td>"
            f"<td>{_e(format_duration(r.get('duration_s') or 0))}</td><td>{_e('+'.join(r.get('rules') or []))}</td>"
            f"<td>{_e(format_size(r.get('bytes') or 0))}</td><td>{_e(r.get('close_reason') or '?')}</td>"
            f"<td>{files}</td></tr>"
        )
    body.append("</table></main></body></html>")
    return "\n".join(body)
