"""`autorec report`: one night of an output directory in one self-contained HTML file.

`build_report(directory, out, since, until)` reads the night (`autorec.report.night`),
the telemetry logs (`autorec.report.sensorseries`), a score track and near-misses if
the directory has them, and writes one HTML file: summary, timeline,
telemetry plots, then one card per segment with its contact strip. The file
needs no network: Bokeh's JavaScript is inlined, thumbnails are data URIs,
and the only links are relative ones to the segment's own files.

Contracts:
- Never raises for bad content: every problem found (a damaged index line, a
  corrupt sidecar, a missing segment file, a sidecar from a newer autorec, a
  damaged telemetry log) is listed on the page and returned in
  `Report.problems` (the command prints them on stderr); the report still
  comes out. A directory being recorded into gives a report of what is
  finished (open `.partial` segments are counted, not shown).
- Thumbnails are made one segment at a time from that segment's log and are
  never all held as pictures: the page holds their small JPEGs (the number
  per segment shrinks for big nights so the file stays a few MB).
- Every text that comes from the directory is HTML-escaped.
- The file is written atomically (`.NAME.tmp`, then renamed).
"""

from __future__ import annotations

import base64
import datetime as _dt
import json
import logging
import os
import shlex
import time as _time
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from autorec import __version__
from autorec.io.atomicfile import replace_file
from autorec.outdir import NEAR_MISSES_NAME, is_score_track
from autorec.readable import clock, evidence_text, local_time, time_html, utc_beside
from autorec.report import markup
from autorec.report.night import (
    Night,
    Segment,
    load_night,
    read_near_misses,
)
from autorec.report.sensorseries import read_sensor_series
from autorec.report.summary import NightSummary, summarize_night
from autorec.units import format_duration, format_size

log = logging.getLogger(__name__)

THUMB_BUDGET = 3_600_000  # bytes of thumbnail JPEGs in one report (before base64)
THUMB_ESTIMATE = 2_000  # bytes of one 160-px thumbnail at THUMB_QUALITY, measured on the simulator's frames
THUMB_WIDTH = 160
THUMB_QUALITY = 8  # JPEG quantiser: at 160 px, 8 looks like 6 and is 20 % smaller
MAX_THUMBS = 5
TIMELAPSE_THUMBS = 48  # frames of the night's timelapse shown as a filmstrip


@dataclass
class Report:
    path: Path
    segments: int
    bytes: int
    seconds: float
    problems: list[str] = field(default_factory=list)
    summary: NightSummary | None = None


_e = markup.text  # the one escaping path (autorec.report.markup)


def _when(t: float | None) -> str:
    if t is None:
        return "?"
    return f"{local_time(t)} <span class=utc>(UTC {utc_beside(t)})</span>"


def evidence_bbox(firing: dict[str, Any]) -> list[int] | None:
    evidence = firing.get("evidence")
    bbox = evidence.get("bbox") if isinstance(evidence, dict) else None
    if isinstance(bbox, list) and len(bbox) == 4 and all(isinstance(v, int) for v in bbox):
        return bbox
    return None


def thumbs_per_segment(segments: int) -> int:
    if segments <= 0:
        return MAX_THUMBS
    return max(1, min(MAX_THUMBS, THUMB_BUDGET // (segments * THUMB_ESTIMATE)))


# -- thumbnails, on every core ---------------------------------------------------------------

_thumbnailer = None  # one per worker process


def _strip_job(job: tuple | None):
    """A contact strip for one segment (runs in a worker process); never raises."""
    global _thumbnailer
    from autorec.media.thumbnails import Strip, Thumbnailer, contact_strip

    if job is None:
        return None
    path, start, end, count, evidence_time, bbox = job
    if _thumbnailer is None:
        _thumbnailer = Thumbnailer(THUMB_WIDTH, THUMB_QUALITY)
    try:
        return contact_strip(path, start, end, count, evidence_time, bbox, THUMB_WIDTH, _thumbnailer)
    except Exception as exc:  # a bug must cost one strip, not the report
        log.exception("thumbnails of %s failed", path)
        return Strip(problem=f"thumbnails of {path} failed: {exc}")


def _strips(jobs_list: list, jobs: int | None):
    """The strips of `jobs_list`, in order; on `jobs` processes (default: every core) when it is worth it.

    Decoding JPEGs is most of a report's time (measured: ~6 ms a thumbnail against ~1.7 s for a
    12-hour telemetry log), and segments are independent, so they are spread over the cores.
    """
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    work = sum(job is not None for job in jobs_list)
    jobs = jobs if jobs is not None else (os.cpu_count() or 1)
    jobs = max(1, min(jobs, work // 8 or 1))
    if jobs == 1:
        yield from (_strip_job(job) for job in jobs_list)
        return
    methods = multiprocessing.get_all_start_methods()
    context = multiprocessing.get_context("fork" if "fork" in methods else None)
    with ProcessPoolExecutor(jobs, mp_context=context) as pool:
        yield from pool.map(_strip_job, jobs_list, chunksize=4)


# -- the HTML ---------------------------------------------------------------------------------

_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 0 auto; max-width: 1200px;
       padding: 0 16px 40px; color: #222; }
h1 { margin: 18px 0 4px; font-size: 1.6em; }
h2 { margin-top: 28px; border-bottom: 1px solid #ddd; padding-bottom: 4px; }
.sub { color: #666; margin-bottom: 12px; }
.utc { color: #888; font-size: 0.9em; }
table.facts { border-collapse: collapse; }
table.facts td { padding: 3px 14px 3px 0; vertical-align: top; }
table.facts td:first-child { color: #555; white-space: nowrap; }
.problems { background: #fff3f3; border: 1px solid #e4b9b9; padding: 8px 14px; border-radius: 6px; }
.problems li { font-family: ui-monospace, monospace; font-size: 0.85em; }
.ok { color: #2d7a2d; } .bad { color: #b52a2a; font-weight: 600; }
.card { border: 1px solid #ddd; border-radius: 8px; padding: 10px 14px; margin: 12px 0;
        scroll-margin-top: 10px; transition: background 0.4s; }
.card.flash { background: #fff7d6; }
.card h3 { margin: 0 0 4px; font-size: 1.05em; }
.card .meta { color: #555; font-size: 0.92em; }
.card .evidence { margin: 6px 0; }
.strip { display: flex; gap: 6px; flex-wrap: wrap; margin-top: 6px; }
.strip figure { margin: 0; text-align: center; font-size: 0.75em; color: #666; }
.strip img { display: block; border-radius: 4px; border: 2px solid transparent; }
.strip img.evidence { border-color: #e028c8; }
.tag { display: inline-block; padding: 0 6px; border-radius: 4px; background: #eef; margin-right: 4px; }
a { color: #1a5fb4; }
.review-bar { display: flex; flex-wrap: wrap; gap: 8px 14px; align-items: center; padding: 8px 10px;
              background: #f6f7fa; border: 1px solid #ddd; border-radius: 8px; position: sticky; top: 0; z-index: 5; }
.review-bar label { font-size: 0.92em; color: #444; }
.review-bar input[type=text] { width: 12em; }
.review-bar .bad { color: #b52a2a; } .review-bar input.bad { outline: 2px solid #d9534f; }
.card.current { outline: 3px solid #1a5fb4; }
.card.reviewed { opacity: 0.6; }
.card.hidden, .card.folded { display: none; }
.card .group-toggle { margin-left: 8px; }
.moments { font-size: 0.92em; } .moments li { margin: 2px 0; }
.strip img.previewing { outline: 2px solid #1a5fb4; }
"""

REVIEW_JS = Path(__file__).with_name("review.js")  # the review bar: filters, keys, marks, export, electrodes


def review_html(night: Night, near_misses, server: bool) -> str:
    """The review bar's data (near-misses, alerts, each rule's post-roll as the segments show it) as a JSON
    island, and the review script itself (the project's own, inlined: a report stands alone)."""
    span = night.span()
    data = {
        "server": server,
        "span": list(span) if span else None,
        "post_roll": post_rolls(night),
        "near_miss_count": len(near_misses),
        "near_misses": [
            {"start": n.start, "end": n.end, "rule": n.rule, "peak": n.peak, "threshold": n.threshold}
            for n in near_misses[:2000]
        ],
        "alerts": [{"raised": a.raised, "cleared": a.cleared, "message": a.message} for a in night.alerts()[:500]],
    }
    try:
        text = json.dumps(data, separators=(",", ":"), allow_nan=False, default=str)
    except ValueError:  # a damaged figure (NaN) must not cost the page its review bar
        text = json.dumps(dict(data, near_misses=[], alerts=[]), separators=(",", ":"), default=str)
    text = text.replace("<", "\\u003c")
    try:
        script = REVIEW_JS.read_text()
    except OSError:
        script = ""  # a broken install: the page still shows everything, without the review bar
    return f'<script type="application/json" id=review-data>{text}</script><script>{script}</script>'


DEFAULT_POST_ROLL = 20.0  # seconds: the segmenter's default, for rules no segment shows


def post_rolls(night: Night) -> dict[str, float]:
    """Each rule's post-roll as its segments show it: the longest gap from a rule's last firing to the end of
    a segment closed by post-roll. Consecutive segments of one rule closer than this read as one review item."""
    out: dict[str, float] = {}
    for seg in night.segments:
        if seg.close_reason != "post_roll":
            continue
        last: dict[str, float] = {}
        for f in seg.firings:
            last[str(f.get("rule"))] = f["time"]
        for rule, t in last.items():
            out[rule] = round(max(out.get(rule, 0.0), seg.end - t), 1)
    for seg in night.segments:
        for rule in seg.rules:
            out.setdefault(rule, DEFAULT_POST_ROLL)
    return out


def review_tagger(near_misses, alerts):
    """`tags(segment)`: `near-miss` / `alert` when one of those overlaps the segment (the review bar filters on
    them). Spans sorted by start with a running maximum of their ends: a segment costs two bisections, so a
    night of 20 000 near-misses and 500 segments adds milliseconds, not seconds."""
    import bisect
    from itertools import accumulate

    def overlaps(spans: list[tuple[float, float]]):
        spans.sort()
        starts = [a for a, _ in spans]
        ends = list(accumulate((b for _, b in spans), max))
        return lambda lo, hi: (k := bisect.bisect_right(starts, hi)) > 0 and ends[k - 1] >= lo

    near = overlaps([(n.start, n.end) for n in near_misses])
    alert = overlaps([(a.raised, a.cleared if a.cleared is not None else float("inf")) for a in alerts])

    def tags(seg: Segment) -> tuple[str, ...]:
        return tuple(t for t, hit in (("near-miss", near), ("alert", alert)) if hit(seg.start, seg.end))

    return tags


def video_link_at(link_base: Path):
    """For a report file: a segment's exported video (relative path) at a moment (`#t=` seconds from its
    start, a media fragment browsers honour); None when the segment has no video."""

    def link_at(seg: Segment, t: float) -> str | None:
        video = next((v for v in seg.videos if v.suffix == ".mp4"), None) or next(iter(seg.videos), None)
        if video is None:
            return None
        return f"{os.path.relpath(video, link_base)}#t={max(0.0, t - seg.start):.2f}"

    return link_at


def _summary_html(s: NightSummary, night: Night) -> str:
    rows: list[tuple[str, str]] = []
    if s.start is not None and s.end is not None:
        rows.append(("night", f"{_when(s.start)} to {_when(s.end)} ({format_duration(s.end - s.start)})"))
    else:
        rows.append(("night", "nothing recorded yet"))
    if s.connected_s is not None:
        gaps = s.disconnections
        gap_text = (
            f"; <span class=bad>{len(gaps)} disconnection(s), {format_duration(sum(b - a for a, b in gaps))}</span>"
            if gaps
            else "; <span class=ok>no disconnection</span>"
        )
        rows.append(("connected", f"{format_duration(s.connected_s)} in {s.runs} run(s){gap_text}"))
    else:
        rows.append(("connected", "unknown (no journal.jsonl: recorded by an older autorec)"))
    per_rule = ", ".join(f"{_e(r)}: {n}" for r, n in s.segments_per_rule.items()) or "none"
    rows.append(("segments", f"{s.segments} ({per_rule}); {format_duration(s.recorded_s)} recorded"))
    if s.open_segments:
        rows.append(("open", f"{s.open_segments} segment(s) still being written (not in this report)"))
    if s.pdrecord_bytes:
        rows.append(
            (
                "kept",
                f"{format_size(s.kept_bytes)} of {format_size(s.seen_bytes or 0)} seen "
                f"({100 * (s.kept_fraction or 0):.1f} % of the {format_size(s.pdrecord_bytes)} a full pdrecord "
                f"would have written)",
            )
        )
    else:
        rows.append(("kept", f"{format_size(s.kept_bytes)} (bytes seen not known: no stats in journal.jsonl yet)"))
    if s.alerts:
        items = []
        for a in s.alerts:
            state = f"cleared {time_html(a.cleared)}" if a.cleared is not None else "<span class=bad>not cleared</span>"
            items.append(f"{time_html(a.raised)} {_e(a.message)} ({state})")
        rows.append(("alerts", f"{len(s.alerts)}:<br>" + "<br>".join(items)))
    else:
        rows.append(("alerts", "<span class=ok>none</span>" if s.runs else "unknown (no journal)"))
    if s.disk_start is not None or s.disk_end is not None:
        rows.append(
            (
                "disk free",
                f"{format_size(s.disk_start) if s.disk_start is not None else '?'} at start, "
                f"{format_size(s.disk_end) if s.disk_end is not None else '?'} at the end",
            )
        )
    rows.append(("autorec", _e(", ".join(s.versions) or "?") + f" (this report: {__version__})"))
    if s.rule_files:
        rows.append(
            (
                "rule file",
                "<br>".join(f"{_e(p)} <span class=utc>sha256 {_e((h or '?')[:16])}</span>" for p, h in s.rule_files),
            )
        )
    rows.append(("directory", _e(night.directory)))
    body = "".join(f"<tr><td>{k}</td><td>{v}</td></tr>" for k, v in rows)
    out = f"<table class=facts>{body}</table>"
    if s.problems:
        items = "".join(f"<li>{_e(p)}</li>" for p in s.problems[:200])
        more = f"<li>... and {len(s.problems) - 200} more</li>" if len(s.problems) > 200 else ""
        out += (
            f"<div class=problems id=problems><b>{len(s.problems)} problem(s) found reading this directory</b>"
            f"<ul>{items}{more}</ul></div>"
        )
    return out


def strip_html(strip, seg: Segment | None, link_at=None) -> str:
    """A contact strip (`autorec.media.thumbnails.Strip`, or None) as HTML: the thumbnails inline as data URIs.

    `link_at(segment, time)`: the URL of the player at that moment (None: no link); each thumbnail
    links there."""
    if strip is not None and strip.thumbs:
        figs = []
        for th in strip.thumbs:
            data = base64.b64encode(th.jpeg).decode()
            cls = " class=evidence" if th.evidence else ""
            label = clock(th.time) + (" (first firing)" if th.evidence else "")
            img = (
                f"<img{cls} width={th.width} height={th.height} loading=lazy decoding=async "
                f'alt="frame at {label}" data-t="{th.time:.3f}" src="data:image/jpeg;base64,{data}">'
            )
            href = link_at(seg, th.time) if link_at is not None and seg is not None else None
            if href:
                img = f'<a class=at href="{_e(href)}" title="open the player at {label}">{img}</a>'
            figs.append(f"<figure>{img}<figcaption>{label}</figcaption></figure>")
        return f"<div class=strip>{''.join(figs)}</div>"
    if strip is not None and strip.problem:
        return f"<div class=meta>{_e(strip.problem)}</div>"
    if strip is not None and strip.frames == 0 and seg is not None and seg.exists:
        return "<div class=meta>no camera frames in this segment</div>"
    return ""


def card_html(index: int, seg: Segment, strip, links_for, link_at=None, tags: tuple[str, ...] = ()) -> str:
    """One segment's card. `link_at(segment, time)`: the player at a moment (thumbnails and the first
    firing link there); `tags`: review tags (`near-miss`, `alert`) the page's filter knows."""
    from autorec.report.charts import card_id

    firings = seg.firings
    per_rule: dict[str, int] = {}
    for f in firings:
        per_rule[str(f.get("rule"))] = per_rule.get(str(f.get("rule")), 0) + 1
    counts = (seg.sidecar or {}).get("firing_counts")
    if isinstance(counts, dict) and counts:  # every firing per rule, also those a capped sidecar leaves out
        # (firings_omitted is {count, last, note}: read as rule counts, it showed "count fired 135x")
        per_rule = {str(r): n for r, n in counts.items() if isinstance(n, int) and not isinstance(n, bool)}
    evidence = ""
    if firings:
        first = firings[0]
        when = time_html(first["time"], 1)
        href = link_at(seg, first["time"]) if link_at is not None else None
        if href:
            when = f'<a class="at firing" href="{_e(href)}" title="open the player at the first firing">{when}</a>'
        evidence = (
            f"<div class=evidence>first firing {when}: "
            f"{_e(evidence_text(str(first.get('rule')), first.get('evidence')))}"
            f"{' (' + ', '.join(f'{_e(r)} fired {n}x' for r, n in per_rule.items()) + ')' if per_rule else ''}</div>"
        )
    links = links_for(seg)
    flags = []
    if not seg.exists:
        flags.append("<span class=bad>segment file missing</span>")
    if seg.recovered:
        flags.append("<span class=tag>recovered after a crash</span>")
    if seg.gaps:
        flags.append(f"<span class=tag>{seg.gaps} gap(s)</span>")
    if seg.dropped:
        flags.append(f"<span class=bad>{seg.dropped} message(s) dropped</span>")
    if isinstance(strip, str):  # a URL: the page fetches the strip when the card scrolls into view
        thumbs = f'<div class=strip data-strip="{_e(strip)}"></div>'
    else:
        thumbs = strip_html(strip, seg, link_at)
    rules = " ".join(f"<span class=tag>{_e(r)}</span>" for r in seg.rules)
    data = {
        "name": seg.name,
        "start": f"{seg.start:.3f}",
        "end": f"{seg.end:.3f}",
        "rules": json.dumps(list(seg.rules)),
        "tags": " ".join(tags),
        "open": (link_at(seg, seg.start) if link_at is not None else None) or "",
    }
    attrs = " ".join(f'data-{k}="{_e(v)}"' for k, v in data.items())
    return (
        f'<div class=card id="{card_id(index)}" {attrs}>'
        f"<h3>{_when(seg.start)}</h3>"
        f"<div class=meta>{rules} {format_duration(seg.duration)}, {format_size(seg.bytes)}, "
        f"{seg.records} records, closed by {_e(seg.close_reason)} {' '.join(flags)}</div>"
        f"{evidence}{thumbs}<div class=meta>{' · '.join(links)}</div></div>"
    )


_TEMPLATE = """{% from macros import embed %}<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="generator" content="autorec {{ version }}">
<title>{{ page_title }}</title>
<style>{{ css }}</style>
{{ bokeh_css }}
{{ bokeh_js }}
</head>
<body>
<h1>{{ page_title }}</h1>
<div class=sub>{{ subtitle }}</div>
<h2 id=summary>Summary</h2>
{{ summary }}
<h2 id=timeline>Timeline</h2>
{{ embed(roots.charts) }}
{{ timelapse }}
<h2 id=segments>Segments</h2>
<div id=review-bar class=review-bar></div>
{{ cards }}
{{ plot_script }}
{{ review }}
{{ extra_body }}
</body>
</html>
"""


def file_links(link_base: Path):
    """Card links for a report file: relative paths from the report's folder to the segment's files."""

    def links(seg: Segment) -> list[str]:
        out = []
        for p in [seg.path, seg.sidecar_path, *seg.videos]:
            if p.exists():
                out.append(f'<a href="{_e(urllib.parse.quote(os.path.relpath(p, link_base)))}">{_e(p.name)}</a>')
        return out

    return links


MAX_SCORE_PLOTS = 12


def _peak_ratio(track: tuple[list[float], list[float], float | None]) -> float:
    _, values, threshold = track
    peak = max(values, default=0.0)
    return peak / threshold if threshold else peak


def render_report(
    directory: str | os.PathLike[str],
    since: float | None = None,
    until: float | None = None,
    *,
    thumbnails: bool = True,
    jobs: int | None = None,
    resources=None,
    links_for=None,
    strip_url=None,
    title_prefix: str = "autorec night report",
    extra_body: str = "",
    link_at=None,
    server: bool = False,
) -> tuple[str, Report]:
    """The report page as a string (see `build_report`); the web UI's night page uses it too.

    `resources`: Bokeh resources (default INLINE: the file stands alone). `links_for(segment)`: the
    card's links (default: relative file paths from `directory`). `strip_url(segment)`: if given,
    cards hold that URL instead of inline thumbnails (the page fetches them as it scrolls).
    `extra_body`: HTML placed at the end of the body (the web UI's own script). `link_at(segment, time)`:
    the player at a moment (default: the segment's exported video at `#t=`, if any). `server`: the page is
    served by `autorec serve`/`run --http` (the review bar offers marks, exports and the electrode search).
    """
    from bokeh.embed import file_html
    from bokeh.layouts import column
    from bokeh.models import Range1d
    from bokeh.resources import INLINE
    from jinja2 import Template

    from autorec.report.charts import score_figures, telemetry_figures, timeline_figure
    from autorec.report.scoretrack import read_score_track

    began = _time.perf_counter()
    directory = Path(directory)
    night = load_night(directory, since, until)
    summary = summarize_night(night)
    problems = summary.problems
    near = read_near_misses(directory / NEAR_MISSES_NAME, problems)
    sensors = read_sensor_series(night.telemetry, since, until)
    problems += sensors.problems
    span = night.span()
    if span is None:
        now = _time.time()
        span = (now - 3600, now)
    lo, hi = span
    pad = max(1.0, (hi - lo) * 0.01)
    x_range = Range1d(1000 * (lo - pad), 1000 * (hi + pad))
    scores, score_problems = read_score_track(
        [directory / n for n in sorted(os.listdir(directory)) if is_score_track(n)] if directory.is_dir() else [],
        since,
        until,
    )
    problems += score_problems
    if len(scores) > MAX_SCORE_PLOTS:  # one figure each: a damaged track's hundreds of names would take minutes
        ranked = sorted(scores, key=lambda r: -_peak_ratio(scores[r]))
        problems.append(
            f"score track: {len(scores)} rules; the {MAX_SCORE_PLOTS} that came closest to their threshold are plotted"
        )
        scores = {r: scores[r] for r in ranked[:MAX_SCORE_PLOTS]}
    charts = [
        timeline_figure(night, x_range, near),
        *telemetry_figures(sensors, x_range),
        *score_figures(scores, x_range),
    ]
    layout = column(*charts, sizing_mode="stretch_width", name="charts")
    per = thumbs_per_segment(len(night.segments))
    jobs_list = []
    for seg in night.segments:
        if not (thumbnails and seg.exists) or strip_url is not None:
            jobs_list.append(None)
            continue
        # the frame at the first firing; the first camera firing's when there is one, so its box is drawn
        firings = seg.firings
        first = next((f for f in firings if evidence_bbox(f) is not None), firings[0] if firings else None)
        jobs_list.append(
            (
                str(seg.path),
                seg.start,
                seg.end,
                per,
                first["time"] if first else None,
                evidence_bbox(first) if first else None,
            )
        )
    timelapse_html = ""
    if night.timelapse and thumbnails:
        from autorec.media.thumbnails import Thumbnailer, filmstrip

        film = filmstrip(night.timelapse, TIMELAPSE_THUMBS, since, until, Thumbnailer(THUMB_WIDTH, THUMB_QUALITY))
        if film.problem:
            problems.append(film.problem)
        if film.thumbs:
            names = " ".join(_e(p.name) for p in night.timelapse)
            # the folder as the reader gave it (the report may be read from anywhere): a bare file name only
            # works from inside the output directory
            movies = "; ".join(
                f"<code>autorec video {_e(shlex.quote(str(p)))} --fps 10 --timestamp</code>" for p in night.timelapse
            )
            timelapse_html = (
                f"<h2 id=timelapse>The night in pictures</h2><div class=meta>{len(film.thumbs)} of the "
                f"{film.frames} timelapse frames ({names}); the whole night as a movie: {movies}</div>"
                + strip_html(film, None)
            )
    links_for = links_for or file_links(directory.resolve())
    link_at = link_at or video_link_at(directory.resolve())
    tags = review_tagger(near, night.alerts())
    cards: list[str] = []
    for i, (seg, strip) in enumerate(zip(night.segments, _strips(jobs_list, jobs))):
        if strip is not None and strip.problem:
            problems.append(strip.problem)
        if strip_url is not None and thumbnails and seg.exists:
            strip = strip_url(seg)
        cards.append(card_html(i, seg, strip, links_for, link_at, tags(seg)))
    if not cards:
        cards.append("<p>No segment in this directory" + (" in the chosen span" if since or until else "") + ".</p>")
    title = f"{title_prefix}: {directory.resolve().name}"
    made = _dt.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    subtitle = _e(f"{directory.resolve()} · made {made} by autorec {__version__}")
    page = file_html(
        layout,
        resources=resources or INLINE,
        title=title,
        template=Template(_TEMPLATE),
        template_variables={
            "page_title": _e(title),
            "css": _CSS,
            "summary": _summary_html(summary, night),
            "cards": "\n".join(cards),
            "subtitle": subtitle,
            "version": __version__,
            "extra_body": extra_body,
            "timelapse": timelapse_html,
            "review": review_html(night, near, server),
        },
    )
    report = Report(directory, len(night.segments), len(page), _time.perf_counter() - began, problems, summary)
    return page, report


def build_report(
    directory: str | os.PathLike[str],
    out: str | os.PathLike[str] | None = None,
    since: float | None = None,
    until: float | None = None,
    thumbnails: bool = True,
    jobs: int | None = None,
) -> Report:
    """Write the report of `directory` to `out` (default DIR/report.html). See the module docstring."""
    began = _time.perf_counter()
    directory = Path(directory)
    out_path = Path(out) if out is not None else directory / "report.html"
    page, report = render_report(
        directory,
        since,
        until,
        thumbnails=thumbnails,
        jobs=jobs,
        links_for=file_links(out_path.resolve().parent),
        link_at=video_link_at(out_path.resolve().parent),
    )
    data = page.encode()
    replace_file(out_path, data)
    report.path, report.bytes, report.seconds = out_path, len(data), _time.perf_counter() - began
    return report
