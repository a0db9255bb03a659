"""The web UI's pages: HTML around the project's own small scripts (`static/*.js`) and Bokeh charts.

BokehJS is served from the installed Bokeh package (`/static/js/...`), not
inlined: a browser loads it once and caches it. Every text that comes from
the directory is HTML-escaped.
"""

from __future__ import annotations

import urllib.parse
from pathlib import Path
from typing import Any
from urllib.parse import quote

from autorec import __version__
from autorec.dates import utc_iso
from autorec.readable import evidence_text, local_time, time_html, utc_beside, value_text
from autorec.report import markup
from autorec.report.night import Night, Segment, rule_lanes
from autorec.units import format_duration, format_size

_e = markup.text  # the one escaping path (autorec.report.markup)


def _nav(active: str) -> str:
    items = [("/", "Live"), ("/night", "Night"), ("/api/status", "API")]
    links = " ".join(
        f'<a href="{href}"{" class=active" if label == active else ""}>{label}</a>' for href, label in items
    )
    return f"<nav class=top><b>autorec</b> {links}</nav>"


_HEAD = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="generator" content="autorec {version}">
<title>{title}</title>
<link rel="stylesheet" href="/ui/ui.css">
</head><body>
"""


def page_head(title: str) -> str:
    """The start of every page the web UI serves, up to the open `<body>` (`title` is escaped here)."""
    return _HEAD.format(version=__version__, title=_e(title))


def live_page(directory: Path) -> str:
    """The live page: filled and updated by /ui/live.js from /api/status and /api/events."""
    return (
        page_head(f"autorec live: {directory.name}")
        + _nav("Live")
        + f"""
<main class=live>
<header><h1>Live <span id=conn class="badge">…</span></h1>
<div class=sub>{_e(directory.resolve())}</div>
<div class="sub stopped" id=stopped hidden></div></header>
<section class=grid>
  <div class=panel id=camera-panel><h2>Camera</h2>
    <img id=frame alt="latest camera frame" width=512 height=384 hidden>
    <div class=meta id=frame-info>no frame yet</div></div>
  <div class=panel><h2>Stream</h2>
    <table class=facts>
      <tr><td>messages/s</td><td id=rate>–</td></tr>
      <tr><td>stream time</td><td id=stream-time>–</td></tr>
      <tr><td>disk free</td><td id=disk>–</td></tr>
      <tr><td>segments</td><td id=seg-count>–</td></tr>
    </table>
    <h2>Open segment</h2><div id=open-segment class=meta>none</div>
    <h2>Scores</h2><div id=scores class=meta>no scores yet</div>
    <h2>Alerts</h2><div id=alerts class=meta>none</div>
  </div>
</section>
<section class=panel><h2>Last segments</h2>
<table class=segments><thead><tr><th>start</th><th>length</th><th>size</th><th>rules</th><th>closed</th></tr></thead>
<tbody id=recent></tbody></table></section>
</main>
<script src="/ui/timefmt.js"></script>
<script src="/ui/live.js"></script>
</body></html>
"""
    )


def _links(seg: Segment) -> list[str]:
    out = [f'<a href="/segment/{markup.url_part(seg.name)}">open</a>']
    for p in [seg.path, seg.sidecar_path, *seg.videos]:
        if p.exists():
            out.append(f'<a href="/files/{markup.url_part(p.name)}">{_e(p.name)}</a>')
    return out


def player_at(seg: Segment, t: float) -> str:
    """The segment page's player at moment `t` (UTC ISO in the URL: a link a colleague can open)."""
    return f"/segment/{quote(seg.name)}?t={utc_iso(t)}"


def _strip_url(seg: Segment) -> str:
    return f"/api/segments/{urllib.parse.quote(seg.name, safe='')}/strip"  # escaped where it is used


def night_page(directory: Path) -> str:
    """The report page of the directory, with server links, lazy strips and /ui/night.js for live updates."""
    from bokeh.resources import Resources

    from autorec.report.page import render_report

    page, _ = render_report(
        directory,
        resources=Resources(mode="server", root_url="/"),
        links_for=_links,
        strip_url=_strip_url,
        title_prefix="autorec night",
        extra_body='<link rel="stylesheet" href="/ui/ui.css"><script src="/ui/night.js"></script>',
        link_at=player_at,
        server=True,
    )
    return page.replace("<body>", "<body>\n" + _nav("Night"), 1)


def card_json(index: int, seg: Segment, night: Night) -> dict[str, Any]:
    """A new segment for the night page: its card's HTML and its timeline bars (one per rule), in the
    colours the page gave its rules."""
    from autorec.outdir import NEAR_MISSES_NAME
    from autorec.report.charts import lane_colors, segment_bars
    from autorec.report.night import read_near_misses
    from autorec.report.page import card_html, review_tagger

    bars = segment_bars([(index, seg)], lane_colors(rule_lanes(night.segments)))
    tags = review_tagger(read_near_misses(night.directory / NEAR_MISSES_NAME, []), night.alerts())(seg)
    return {"html": card_html(index, seg, _strip_url(seg), _links, player_at, tags), "bars": bars}


_SEGMENT_TEMPLATE = """{% from macros import embed %}<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{ page_title }}</title>
<link rel="stylesheet" href="/ui/ui.css">
{{ bokeh_css }}
{{ bokeh_js }}
</head><body>
{{ nav }}
<main class=segment>
{{ header }}
<section class=panel><h2>Camera</h2>{{ player }}</section>
<section class=panel><h2>Telemetry</h2>{{ embed(roots.plots) }}</section>
<section class=panel><h2>Firings</h2>{{ firings }}</section>
</main>
{{ plot_script }}
<script src="/ui/timefmt.js"></script>
<script src="/ui/segment.js"></script>
</body></html>
"""


def segment_page(directory: Path, night: Night, seg: Segment, prev_seg: Segment | None, next_seg: Segment | None):
    """One segment: its sidecar in words, the camera frames, telemetry plots of its span, its firings."""
    from bokeh.embed import file_html
    from bokeh.layouts import column
    from bokeh.models import Div, Range1d
    from bokeh.resources import Resources
    from jinja2 import Template

    from autorec.report.charts import telemetry_figures
    from autorec.report.sensorseries import read_sensor_series

    side = seg.sidecar or {}
    facts: list[tuple[str, str]] = [
        ("start", f"{_e(local_time(seg.start))} <span class=utc>(UTC {_e(utc_beside(seg.start))})</span>"),
        ("length", format_duration(seg.duration)),
        ("rules", " ".join(f"<span class=tag>{_e(r)}</span>" for r in seg.rules)),
        ("size", f"{format_size(seg.bytes)} in {seg.records} records"),
        ("closed by", _e(seg.close_reason) + (" (recovered after a crash)" if seg.recovered else "")),
    ]
    origins = side.get("origins")
    if isinstance(origins, dict):
        facts.append(("records from", ", ".join(f"{_e(k)} {_e(v)}" for k, v in origins.items())))
    pre = side.get("pre_roll")
    if (
        isinstance(pre, dict)
        and isinstance(pre.get("first"), (int, float))
        and isinstance(pre.get("last"), (int, float))
    ):
        facts.append(("pre-roll", f"{format_duration(pre['last'] - pre['first'])}, {_e(pre.get('records'))} records"))
    for gap in seg.gap_list[:20]:
        facts.append(("gap", _e(f"{gap.get('reason', '?')}: {json_short(gap)}")))
    if seg.dropped:
        facts.append(("dropped", f"<span class=bad>{seg.dropped} message(s)</span>"))
    downloads = [
        f'<a href="/files/{markup.url_part(p.name)}" download>{_e(p.name)}</a>'
        for p in [seg.path, seg.sidecar_path, *seg.videos]
    ]
    if seg.exists:
        mcap = seg.path.with_suffix(".mcap").name
        downloads.append(
            f'<a id=mcap href="/files/{_e(mcap)}" download title="camera, plots and firings in one file for '
            f'Foxglove or Lichtblick (made on the first request)">{_e(mcap)}</a>'
            "<span id=mcap-note class=meta></span>"
        )
    nav = []
    if prev_seg is not None:
        nav.append(f'<a href="/segment/{markup.url_part(prev_seg.name)}">&larr; previous</a>')
    nav.append('<a href="/night">night</a>')
    if next_seg is not None:
        nav.append(f'<a href="/segment/{markup.url_part(next_seg.name)}">next &rarr;</a>')
    header = (
        f"<header><h1>{_e(seg.name)}</h1><div class=sub>{' · '.join(nav)}</div></header>"
        "<section class=panel><table class=facts>"
        + "".join(f"<tr><td>{k}</td><td>{v}</td></tr>" for k, v in facts)
        + f"<tr><td>download</td><td>{' · '.join(downloads)}</td></tr></table></section>"
    )
    mp4 = next((v for v in seg.videos if v.suffix == ".mp4"), None)
    if mp4 is not None:
        player = (
            f'<video id=video controls muted preload=auto width=768 data-start="{seg.start:.3f}" '
            f'src="/files/{markup.url_part(mp4.name)}"></video>'
        )
    else:
        player = (
            f'<div id=player data-name="{_e(seg.name)}"><img id=player-frame width=768 height=576 alt="camera frame">'
            "<div class=controls><button id=play type=button>Play</button>"
            "<input id=scrub type=range min=0 max=0 value=0><span id=frame-time class=meta></span></div></div>"
        )
    firings = seg.firings
    rows = "".join(
        f'<tr><td><a class="at firing" href="{_e(player_at(seg, f["time"]))}">'
        f"{time_html(f['time'], 1)}</a></td><td>{_e(f.get('rule'))}</td>"
        f"<td>{_e(evidence_text(str(f.get('rule')), f.get('evidence')))}</td></tr>"
        for f in firings[:200]
    )
    more = f"<p class=meta>... and {len(firings) - 200} more in the sidecar</p>" if len(firings) > 200 else ""
    firings_html = f"<table class=segments><tbody>{rows}</tbody></table>{more}" if rows else "<p>none listed</p>"
    sensors = read_sensor_series(night.telemetry, seg.start - 5, seg.end + 5, max_points=2000)
    pad = max(1.0, seg.duration * 0.02)
    x_range = Range1d(1000 * (seg.start - pad), 1000 * (seg.end + pad))
    figures = telemetry_figures(sensors, x_range) or [Div(text="no telemetry log covers this segment")]
    return file_html(
        column(*figures, sizing_mode="stretch_width", name="plots"),
        resources=Resources(mode="server", root_url="/"),
        title=f"autorec segment {seg.name}",
        template=Template(_SEGMENT_TEMPLATE),
        template_variables={
            "nav": _nav(""),
            "header": header,
            "player": player,
            "firings": firings_html,
            "page_title": _e(f"autorec segment {seg.name}"),
        },
    )


def json_short(data: dict[str, Any]) -> str:
    parts = []
    for k, v in data.items():
        if k == "reason":
            continue
        parts.append(f"{k} {value_text(k, v)}")
    return ", ".join(parts)
