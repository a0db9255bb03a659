"""The report's charts (Bokeh): the night's timeline and the telemetry plots on one shared time axis.

Bokeh was chosen for its size: its JavaScript comes inside the PyPI wheel and
`file_html` inlines only the parts a page uses (~1.3 MB for these charts,
against ~4.8 MB for Plotly's bundle), so a report with hundreds of segments
and their thumbnails stays a self-contained file under 8 MB that opens
offline. Zoom and pan are Bokeh tools; hovering a bar shows the segment;
tapping a bar opens the segment's player at that time in the web UI, or scrolls to its card in a
report file (a few lines of the project's own JavaScript in a `CustomJS` callback).

`timeline_figure(night, ...)` and `telemetry_figures(sensors, x_range)` build
figures only; `autorec.report.page` renders them into the page.
"""

from __future__ import annotations

import math
import time as _time
from collections.abc import Iterable, Sequence

from bokeh.models import ColumnDataSource, CustomJS, CustomJSTickFormatter, HoverTool, Range1d, Span, TapTool
from bokeh.plotting import figure

from autorec.core.scores import NearMiss
from autorec.readable import clock, local_and_utc, number
from autorec.report.night import Night, Segment, rule_lanes
from autorec.report.sensorseries import SensorData
from autorec.units import format_duration, format_size

MAX_TICKS = 20_000  # firing ticks drawn on the timeline; more are thinned evenly
PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22", "#7f7f7f")

CONNECTION_LANE = "connection"
ALERTS_LANE = "alerts"
CAMERA_LANE = "lighting rejected"
NEAR_MISS_LANE = "near-misses"

# Tapping a segment bar opens the segment's player at the tapped time where the page offers one
# (the web UI's review script sets `window.autorecOpenAt`), else scrolls to its card (ids "seg-" + index).
_TAP_JS = """
const i = source.selected.indices[0];
if (i === undefined) { return; }
const g = cb_data && cb_data.geometries;
if (window.autorecOpenAt && g && g.x !== undefined) {
  source.selected.indices = [];
  window.autorecOpenAt(source.data.name[i], Math.min(Math.max(g.x, source.data.left[i]), source.data.right[i]) / 1000);
  return;
}
const card = document.getElementById(source.data.card[i]);
if (card) {
  card.scrollIntoView({behavior: "instant", block: "start"});
  card.classList.add("flash");
  setTimeout(() => card.classList.remove("flash"), 1500);
}
source.selected.indices = [];
"""


def _ms(t: float) -> float:
    return t * 1000.0


# Bokeh's datetime axes label ticks in UTC; every other time a person reads is the local time of the
# computer that made the page (autorec.readable), so the ticks are shifted by that computer's UTC offset
# at the night's time (`offset`, ms) and written HH:MM (HH:MM:SS when ticks are under a minute apart),
# with the date under the first tick of each day. (A night across a daylight-saving change keeps the
# offset of its start on the axis; the texts beside it are exact.)
_LOCAL_TICKS = """
const pad = (n) => String(n).padStart(2, "0");
const local = (ms) => {
  const u = new Date(ms + offset);
  return {y: u.getUTCFullYear(), mo: u.getUTCMonth() + 1, d: u.getUTCDate(), h: u.getUTCHours(),
          mi: u.getUTCMinutes(), s: u.getUTCSeconds()};
};
const d = local(tick);
const step = ticks.length > 1 ? Math.abs(ticks[1] - ticks[0]) : 60000;
let text = pad(d.h) + ":" + pad(d.mi) + (step < 60000 ? ":" + pad(d.s) : "");
const prev = index > 0 ? local(ticks[index - 1]) : null;
if (index === 0 || prev.d !== d.d) {
  text += "\\n" + d.y + "-" + pad(d.mo) + "-" + pad(d.d);
}
return text;
"""


def _near_miss_text(n: NearMiss) -> str:
    """`camera-motion at 02:14:07: peak 0.00025 (usually 1.2e-05, fires at 0.0003)` for a hover."""
    usual = f"usually {number(n.baseline)}, " if n.baseline is not None else ""
    return f"{n.rule} at {clock(n.peak_time)}: peak {number(n.peak)} ({usual}fires at {number(n.threshold)})"


def local_time_axis(p, at: float | None) -> None:
    """Label `p`'s datetime x axis in this computer's local time at epoch `at` (None: now), the one time
    style (see `_LOCAL_TICKS`)."""
    try:
        offset = _time.localtime(at if at is not None and math.isfinite(at) else None).tm_gmtoff
    except (OverflowError, OSError, ValueError):  # a damaged time beyond the platform's time_t: now's offset
        offset = _time.localtime().tm_gmtoff
    p.xaxis.formatter = CustomJSTickFormatter(code=_LOCAL_TICKS, args={"offset": 1000 * offset})


def _range_start(x_range: Range1d) -> float | None:
    start = getattr(x_range, "start", None)
    return start / 1000.0 if isinstance(start, (int, float)) else None


def card_id(index: int) -> str:
    return f"seg-{index}"


def lane_colors(rules: Sequence[str]) -> dict[str, str]:
    """Each rule's bar colour, by its order of first appearance (so a page and its later bars agree)."""
    return {r: PALETTE[i % len(PALETTE)] for i, r in enumerate(rules)}


def segment_bars(segments: Iterable[tuple[int, Segment]], colors: dict[str, str]) -> dict[str, list]:
    """The timeline's bar rows (one per rule of each `(card index, segment)`), as Bokeh columns.

    The web UI streams rows made here into the page's `segment_bars` source, so they must have
    exactly its columns."""
    bars: dict[str, list] = {
        k: [] for k in ("left", "right", "lane", "color", "card", "name", "when", "length", "size", "reason", "rules")
    }
    for i, seg in segments:
        for rule in seg.rules:
            bars["left"].append(_ms(seg.start))
            bars["right"].append(_ms(max(seg.end, seg.start + 0.5)))  # a bar stays visible however short
            bars["lane"].append(rule)
            bars["color"].append(colors.get(rule, PALETTE[-1]))
            bars["card"].append(card_id(i))
            bars["name"].append(seg.name)
            bars["when"].append(local_and_utc(seg.start))
            bars["length"].append(format_duration(seg.duration))
            bars["size"].append(format_size(seg.bytes))
            bars["reason"].append(seg.close_reason)
            bars["rules"].append(" + ".join(seg.rules))
    return bars


def timeline_figure(
    night: Night,
    x_range: Range1d,
    near_misses: Sequence[NearMiss] = (),
    width: int = 1100,
):
    """One lane per rule (segments as bars, firings as ticks) plus connection, alerts and lighting lanes."""
    rules = rule_lanes(night.segments)
    lanes = list(rules)
    if near_misses:
        lanes.append(NEAR_MISS_LANE)
    lanes += [CONNECTION_LANE, ALERTS_LANE]
    lighting = night.counter_rises(".global_changes")
    if lighting:
        lanes.append(CAMERA_LANE)
    lanes = list(reversed(lanes))  # Bokeh draws the first factor at the bottom
    height = 90 + 34 * len(lanes)
    p = figure(
        title="Timeline: segments per rule (tap a bar to open it), connection, alerts",
        x_axis_type="datetime",
        y_range=lanes,
        x_range=x_range,
        height=height,
        width=width,
        sizing_mode="stretch_width",
        tools="xpan,xwheel_zoom,xbox_zoom,reset,save",
        active_scroll="xwheel_zoom",
        toolbar_location="above",
        name="timeline",
    )
    colors = lane_colors(rules)
    bars = segment_bars(enumerate(night.segments), colors)
    source = ColumnDataSource(bars, name="segment_bars")
    renderer = p.hbar(
        y="lane",
        left="left",
        right="right",
        height=0.7,
        color="color",
        source=source,
        selection_color="color",
        nonselection_alpha=1.0,
        name="segments",
    )
    p.add_tools(
        HoverTool(
            renderers=[renderer],
            tooltips=[
                ("segment", "@name"),
                ("start", "@when"),
                ("length", "@length"),
                ("size", "@size"),
                ("rules", "@rules"),
                ("closed", "@reason"),
            ],
        )
    )
    p.add_tools(TapTool(renderers=[renderer], callback=CustomJS(args={"source": source}, code=_TAP_JS)))
    # firing ticks, thinned evenly if there are very many
    ticks_x: list[float] = []
    ticks_lane: list[str] = []
    for seg in night.segments:
        for f in seg.firings:
            rule = f.get("rule")
            if rule in colors:
                ticks_x.append(_ms(f["time"]))
                ticks_lane.append(rule)
    if len(ticks_x) > MAX_TICKS:
        step = len(ticks_x) / MAX_TICKS
        keep = [int(i * step) for i in range(MAX_TICKS)]
        ticks_x = [ticks_x[i] for i in keep]
        ticks_lane = [ticks_lane[i] for i in keep]
    if ticks_x:
        p.scatter(x=ticks_x, y=ticks_lane, marker="dash", angle=1.5708, size=12, color="black", alpha=0.6)
    if near_misses:
        nm = ColumnDataSource(
            {
                "left": [_ms(n.start) for n in near_misses],
                "right": [_ms(max(n.end, n.start + 1)) for n in near_misses],
                "lane": [NEAR_MISS_LANE] * len(near_misses),
                "text": [_near_miss_text(n) for n in near_misses],
            }
        )
        r = p.hbar(y="lane", left="left", right="right", height=0.5, color="#f0ad4e", source=nm)
        p.add_tools(HoverTool(renderers=[r], tooltips=[("near-miss", "@text")]))
    # connection lane: connected spans green, disconnections red
    up = night.connections()
    if up:
        p.hbar(
            y=[CONNECTION_LANE] * len(up),
            left=[_ms(a) for a, _ in up],
            right=[_ms(b) for _, b in up],
            height=0.35,
            color="#5cb85c",
        )
    down = night.disconnections()
    if down:
        src = ColumnDataSource(
            {
                "left": [_ms(a) for a, _ in down],
                "right": [_ms(max(b, a + 1)) for a, b in down],
                "lane": [CONNECTION_LANE] * len(down),
                "text": [f"disconnected {clock(a)} for {format_duration(b - a)}" for a, b in down],
            }
        )
        r = p.hbar(y="lane", left="left", right="right", height=0.7, color="#d9534f", source=src)
        p.add_tools(HoverTool(renderers=[r], tooltips=[("", "@text")]))
    alerts = night.alerts()
    if alerts:
        span_end = night.span()[1] if night.span() else None
        src = ColumnDataSource(
            {
                "left": [_ms(a.raised) for a in alerts],
                "right": [
                    _ms(max(a.cleared if a.cleared is not None else (span_end or a.raised), a.raised + 1))
                    for a in alerts
                ],
                "lane": [ALERTS_LANE] * len(alerts),
                "text": [a.message + ("" if a.cleared is not None else " (not cleared)") for a in alerts],
                "color": ["#8b0000" if a.name == "disk_floor" else "#d9534f" for a in alerts],
            }
        )
        r = p.hbar(y="lane", left="left", right="right", height=0.7, color="color", source=src)
        p.add_tools(HoverTool(renderers=[r], tooltips=[("alert", "@text")]))
    if lighting:
        src = ColumnDataSource(
            {
                "x": [_ms(t) for t, _, _ in lighting],
                "lane": [CAMERA_LANE] * len(lighting),
                "text": [f"{k.rsplit('.', 1)[0]}: {n} global change(s) ignored" for _, k, n in lighting],
            }
        )
        r = p.scatter(x="x", y="lane", marker="triangle", size=11, color="#f0ad4e", source=src)
        p.add_tools(HoverTool(renderers=[r], tooltips=[("lighting", "@text")]))
    p.ygrid.grid_line_color = None
    p.xaxis.axis_label = "time (local)"
    span = night.span()
    local_time_axis(p, span[0] if span else None)
    return p


_GROUPS = (
    ("temperature", "Temperature (°C)"),
    ("voltage", "High voltage (V)"),
    ("capacitance", "Group capacitance (pF)"),
    ("electrodes", "Driven electrodes (count)"),
)


def telemetry_figures(sensors: SensorData, x_range: Range1d, width: int = 1100) -> list:
    """One figure per sensor group that has data, sharing `x_range` with the timeline."""
    out = []
    for group, title in _GROUPS:
        series = sensors.group(group)
        if not series:
            continue
        p = figure(
            title=title,
            x_axis_type="datetime",
            x_range=x_range,
            height=170,
            width=width,
            sizing_mode="stretch_width",
            tools="xpan,xwheel_zoom,xbox_zoom,reset,save",
            active_scroll="xwheel_zoom",
            toolbar_location="above",
            name=f"plot-{group}",
        )
        for i, s in enumerate(series):
            x = (s.times * 1000.0).tolist()
            y = s.values.tolist()
            color = PALETTE[i % len(PALETTE)]
            label = s.name
            if group == "electrodes":
                p.step(x, y, mode="after", color=color, legend_label=label)
            else:
                p.line(x, y, color=color, legend_label=label)
        p.legend.label_text_font_size = "9pt"
        p.legend.click_policy = "hide"
        p.add_layout(p.legend[0], "right")  # beside the plot, never over the data
        local_time_axis(p, _range_start(x_range))
        out.append(p)
    return out


def score_figures(scores: dict[str, tuple[list[float], list[float], float | None]], x_range: Range1d, width=1100):
    """One figure per rule's score track (times, values, threshold), with the threshold as a dashed line."""
    out = []
    for i, (rule, (times, values, threshold)) in enumerate(sorted(scores.items())):
        p = figure(
            title=f"Score of {rule}" + (f" (threshold {threshold:.4g})" if threshold is not None else ""),
            x_axis_type="datetime",
            x_range=x_range,
            height=150,
            width=width,
            sizing_mode="stretch_width",
            tools="xpan,xwheel_zoom,xbox_zoom,reset,save",
            active_scroll="xwheel_zoom",
            toolbar_location="above",
        )
        p.line([_ms(t) for t in times], values, color=PALETTE[i % len(PALETTE)])
        if threshold is not None:
            p.add_layout(Span(location=threshold, dimension="width", line_dash="dashed", line_color="red"))
        local_time_axis(p, _range_start(x_range))
        out.append(p)
    return out
