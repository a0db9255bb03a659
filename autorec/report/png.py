"""`autorec report --png`: the night in one picture (timeline + the summary figures), for a chat or an e-mail.

matplotlib (Agg, no display) draws it: a static image needs no browser, which
Bokeh's own PNG export would (Selenium and Chromium on the rig). The figures
are the report's (`autorec.report.summary`), so the picture and the page agree.
"""

from __future__ import annotations

import datetime as _dt
import os
from pathlib import Path

from autorec.report.night import load_night, local_text, rule_lanes
from autorec.report.summary import summarize_night
from autorec.units import format_duration, format_size

PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22", "#7f7f7f")


def _dt_local(t: float) -> _dt.datetime:
    return _dt.datetime.fromtimestamp(t).astimezone()


def write_png(
    directory: str | os.PathLike[str],
    out: str | os.PathLike[str],
    since: float | None = None,
    until: float | None = None,
) -> Path:
    """Draw the summary picture of `directory` into `out` (PNG). Raises OSError if it cannot be written."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.dates as mdates
    import matplotlib.pyplot as plt

    from autorec.io.atomicfile import replace_file

    night = load_night(directory, since, until)
    s = summarize_night(night)
    lanes = [*rule_lanes(night.segments), "connection", "alerts"]
    fig, ax = plt.subplots(figsize=(12, 1.9 + 0.38 * len(lanes)), dpi=100)
    fig.subplots_adjust(left=0.16, right=0.98, top=1 - 1.45 / fig.get_figheight(), bottom=0.45 / fig.get_figheight())
    ys = {lane: len(lanes) - 1 - i for i, lane in enumerate(lanes)}
    colors = {r: PALETTE[i % len(PALETTE)] for i, r in enumerate(lanes)}
    for seg in night.segments:
        for rule in seg.rules:
            start = mdates.date2num(_dt_local(seg.start))
            width = max(seg.duration, 1.0) / 86400.0
            ax.broken_barh([(start, width)], (ys[rule] - 0.35, 0.7), color=colors[rule])
    for a, b in night.connections():
        ax.broken_barh(
            [(mdates.date2num(_dt_local(a)), (b - a) / 86400)], (ys["connection"] - 0.15, 0.3), color="#5cb85c"
        )
    for a, b in night.disconnections():
        ax.broken_barh(
            [(mdates.date2num(_dt_local(a)), max(b - a, 1) / 86400)], (ys["connection"] - 0.35, 0.7), color="#d9534f"
        )
    end = s.end
    for alert in night.alerts():
        stop = alert.cleared if alert.cleared is not None else (end or alert.raised)
        ax.broken_barh(
            [(mdates.date2num(_dt_local(alert.raised)), max(stop - alert.raised, 1) / 86400)],
            (ys["alerts"] - 0.35, 0.7),
            color="#d9534f",
        )
    ax.set_yticks(list(ys.values()), list(ys.keys()))
    ax.set_ylim(-0.7, len(lanes) - 0.3)
    if s.start is not None and s.end is not None:
        pad = max(60.0, (s.end - s.start) * 0.01)
        ax.set_xlim(mdates.date2num(_dt_local(s.start - pad)), mdates.date2num(_dt_local(s.end + pad)))
    locator = mdates.AutoDateLocator(tz=_dt_local(0).tzinfo)
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator, tz=_dt_local(0).tzinfo))
    ax.grid(axis="x", alpha=0.3)
    title = f"autorec: {Path(directory).resolve().name}"
    if s.start is not None and s.end is not None:
        title += f"  {local_text(s.start, '%Y-%m-%d %H:%M')} to {local_text(s.end, '%H:%M')}"
    per_rule = ", ".join(f"{r} {n}" for r, n in s.segments_per_rule.items()) or "none"
    kept = format_size(s.kept_bytes)
    if s.pdrecord_bytes:
        kept += f" of {format_size(s.pdrecord_bytes)} ({100 * (s.kept_fraction or 0):.1f} %)"
    facts = [f"segments: {s.segments} ({per_rule})", f"kept: {kept}"]
    if s.connected_s is not None:
        facts.append(f"connected {format_duration(s.connected_s)}, {len(s.disconnections)} disconnection(s)")
    facts.append(
        f"alerts: {len(s.alerts)}" + (f", {sum(a.cleared is None for a in s.alerts)} open" if s.alerts else "")
    )
    if s.problems:
        facts.append(f"{len(s.problems)} problem(s): see the HTML report")
    fig.text(0.01, 1 - 0.3 / fig.get_figheight(), title, fontsize=13, weight="bold", va="top")
    half = (len(facts) + 1) // 2
    lines = "   ·   ".join(facts[:half]) + "\n" + "   ·   ".join(facts[half:])
    fig.text(0.01, 1 - 0.62 / fig.get_figheight(), lines, fontsize=10, va="top", linespacing=1.5)
    out = Path(out)
    import io

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    replace_file(out, buffer.getvalue())
    return out
