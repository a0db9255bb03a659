"""From measurements to proposed thresholds, in words and as a rule file (sans-I/O).

`propose(ruleset, measurements, ...)` returns a `Proposal`: one `RuleProposal` per rule (a
sentence with the figures behind it, and a new option value where one follows from them),
facts about the stream (camera rate and jitter, brightness and noise, timestamps, bytes a
minute, bytes kept a night at a stated duty cycle) and warnings.

The rules:
- `motion`: the threshold goes between the idle noise (p99.9 of the per-second score maxima,
  stretches around electrode changes left out) and the smallest peak score of a measured move:
  their geometric mean (each side gets the same factor of margin), at most a quarter of the
  smallest move when the idle noise is tiny, and never at or under the idle maximum. When the
  smallest move does not clear `SEPARATION` x the idle p99.9 and the idle maximum, there is no
  threshold that keeps moves and drops noise: a warning instead (the camera does not see the
  drops: a region, scale or a capacitance rule), and the threshold stays. A proposal with less
  than `THIN_MARGIN` on either side comes with a warning too.
- `missed-move`: `within` = `WITHIN_FACTOR` x the slowest measured arrival plus one scan
  interval, rounded up to 0.5 s, at least 1 s.
- other scored rules (`threshold`): the idle maximum against their level (headroom, and a
  warning if they fired while idle); `electrodes`, `movement`: how many moves they caught and
  how often they fired while idle.
Numbers are rounded to two significant digits.

`rewrite_rules(text, ruleset, proposal, header)` returns the rule file's text with the
proposed values in place, each with a comment saying where it came from; every other line
(and comment) is kept.
"""

from __future__ import annotations

import itertools
import math
import re
import statistics
from dataclasses import dataclass, field
from typing import Any

from autorec.calibration.measure import Measurements
from autorec.core.ruleset import RuleSet
from autorec.units import format_duration, format_size

SEPARATION = 1.5  # the smallest move must score this many times the idle p99.9 (and above the idle max)
THIN_MARGIN = 1.5  # a proposal with less than this factor on either side comes with a warning
WITHIN_FACTOR = 2.0
FLICKER_RANGE = 0.03  # brightness varying by more than this (of its mean) while idle: flicker or a lighting step


@dataclass
class RuleProposal:
    """What calibration says about one rule. `option`/`value`: the proposed change (None: none)."""

    rule: str
    trigger: str
    text: str
    option: str | None = None
    value: Any = None
    current: Any = None
    source: str = ""  # the comment written beside the value
    warning: str | None = None


@dataclass
class Proposal:
    rules: list[RuleProposal] = field(default_factory=list)
    facts: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def changes(self) -> list[RuleProposal]:
        return [r for r in self.rules if r.option is not None]

    def text(self) -> str:
        lines = ["Proposal:"]
        lines += [f"  {r.text}" for r in self.rules]
        lines.append("The stream:")
        lines += [f"  {f}" for f in self.facts]
        warnings = [r.warning for r in self.rules if r.warning] + self.warnings
        if warnings:
            lines.append("Warnings:")
            lines += [f"  WARNING: {w}" for w in warnings]
        return "\n".join(lines)


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0-100) of a non-empty list."""
    ordered = sorted(values)
    k = max(0, min(len(ordered) - 1, math.ceil(q / 100 * len(ordered)) - 1))
    return ordered[k]


def round2(x: float) -> float:
    """`x` to two significant digits."""
    if x <= 0 or not math.isfinite(x):
        return x
    return float(f"{x:.2g}")


def _g(x: float) -> str:
    return f"{x:.2g}"


def propose(
    ruleset: RuleSet,
    m: Measurements,
    *,
    duty: float = 0.1,
    night: float = 12 * 3600.0,
    clock_comparable: bool = True,
) -> Proposal:
    """See the module docstring. `clock_comparable` False (a sped-up simulator, a log) leaves
    out the rig clock against this computer's."""
    p = Proposal()
    idle = m.phases.get("idle")
    activity = m.phases.get("activity")
    moves = m.windows
    scan_interval = _median_interval(m.scan_times)
    for rule in ruleset.rules:
        trig = rule.trigger_name
        if trig == "motion":
            p.rules.append(_motion(rule, m))
        elif trig == "missed-move":
            p.rules.append(_missed_move(rule, m, scan_interval))
        elif trig in ("electrodes", "movement"):
            caught = sum(1 for w in moves if m.window_fired(rule.name, w))
            idle_n = m.idle_firings(rule.name)
            text = f"{rule.name} ({trig}): fired on {caught} of {len(moves)} move(s), {idle_n} time(s) while idle"
            warning = None
            if idle_n and trig == "movement":
                warning = (
                    f"{rule.name} fired {idle_n} time(s) while nothing was driven: capacitance noise; "
                    "raise min_pins or settle"
                )
            elif moves and caught < len(moves):
                warning = f"{rule.name} missed {len(moves) - caught} of {len(moves)} measured move(s)"
            p.rules.append(RuleProposal(rule.name, trig, text, warning=warning))
        elif m.rows.get(rule.name):
            values = m.idle_scores(rule.name)
            threshold = _latest_threshold(rule)
            idle_n = m.idle_firings(rule.name)
            if values:
                text = f"{rule.name} ({trig}): idle max {_g(max(values))}"
                if isinstance(threshold, (int, float)) and threshold > 0 and max(values) > 0:
                    text += f", level {_g(threshold)} ({threshold / max(values):.1f}x the idle maximum)"
            else:
                text = f"{rule.name} ({trig}): no idle scores"
            text += f"; fired {idle_n} time(s) while idle"
            warning = f"{rule.name} fired {idle_n} time(s) while idle" if idle_n else None
            p.rules.append(RuleProposal(rule.name, trig, text, warning=warning))
        else:
            idle_n = m.idle_firings(rule.name)
            p.rules.append(
                RuleProposal(rule.name, trig, f"{rule.name} ({trig}): nothing to calibrate; {idle_n} firing(s) idle")
            )

    if idle is not None:
        changes = [c for c in m.changes if idle.start is not None and idle.start <= c[0] <= (idle.end or math.inf)]
        if changes:
            left_out = sum(b - a for a, b in m.excluded)
            p.warnings.append(
                f"the electrodes changed {len(changes)} time(s) during the idle phase: "
                f"{format_duration(left_out)} around them left out of the noise figures"
            )
    p.facts += _camera_facts(m)
    p.facts += _timestamp_facts(m, clock_comparable)
    if idle is not None and idle.duration > 0:
        rate = idle.bytes / idle.duration
        share = 100.0 * idle.image_bytes / idle.bytes if idle.bytes else 0.0
        p.facts.append(
            f"idle {format_duration(idle.duration)}: {idle.messages} message(s), "
            f"{format_size(rate * 60)} a minute ({share:.0f} % camera frames)"
        )
        quiet = all(
            r.option != "threshold" or all(v <= r.value for v in m.idle_scores(r.rule)) for r in p.rules
        ) and not any(m.idle_firings(r.name) for r in ruleset.rules if r.trigger_name not in ("interval",))
        kept = rate * night * duty
        line = (
            f"kept a night: ~{format_size(kept)} of {format_size(rate * night)} streamed in "
            f"{format_duration(night)}, at a {duty:.0%} duty cycle (the rig busy {format_duration(night * duty)} "
            "of the night, pre- and post-roll included)"
        )
        line += "; idle alone keeps nothing at these thresholds" if quiet else "; idle stretches would be kept too"
        p.facts.append(line)
    if activity is not None:
        arrived = [w for w in moves if w.arrival is not None]
        p.facts.append(
            f"activity {format_duration(activity.duration)}: {len(moves)} move(s), "
            f"{len(arrived)} with an arrival seen by capacitance"
        )
        if moves and len(arrived) < len(moves):
            p.warnings.append(
                f"{len(moves) - len(arrived)} move(s) without an arrival in the capacitance scans: the drop did "
                "not follow, or this rig sends no scan_capacitance"
            )
    if not moves:
        p.warnings.append(
            "no drop moves were measured: no threshold between noise and moves can be proposed "
            "(run a protocol step during the activity phase, or use --drive)"
        )
    return p


def _latest_threshold(rule) -> Any:
    return _option(rule, rule.trigger.threshold_option or "")


def _option(rule, name: str) -> Any:
    """The rule's value of option `name`, or its trigger's default (None: no such option)."""
    if name in rule.options:
        return rule.options[name]
    for opt in rule.trigger.options:
        if opt.name == name and not opt.required:
            return opt.default
    return None


def _motion(rule, m: Measurements) -> RuleProposal:
    name = rule.name
    current = _option(rule, "threshold")
    idle = m.idle_scores(name)
    peaks = [v for v in (m.window_peak(name, w) for w in m.windows) if v is not None]
    base = RuleProposal(name, "motion", "", current=current)
    if not idle:
        base.text = f"{name}: no camera scores while idle (no frames?): threshold {_g(current)} kept"
        base.warning = f"{name}: no camera frames were analysed; is pdcam running?"
        return base
    p999, top = percentile(idle, 99.9), max(idle)
    if not peaks:
        base.text = f"{name}: idle p99.9 {_g(p999)}, max {_g(top)}; no moves measured: threshold {_g(current)} kept"
        return base
    smallest = min(peaks)
    if smallest <= SEPARATION * p999 or smallest <= top:
        base.text = (
            f"{name}: idle p99.9 {_g(p999)}, max {_g(top)}; smallest move {_g(smallest)}: "
            f"no threshold separates them; {_g(current)} kept"
        )
        base.warning = (
            f"{name}: idle and moves do not separate (idle max {_g(top)}, smallest move {_g(smallest)}): "
            "the camera does not see the drops well. Watch only the electrode array (region: [x, y, w, h] "
            "in full-frame pixels, or a mask), try scale: 2 for small drops, or use a capacitance rule "
            "(trigger: movement) instead"
        )
        return base
    middle = math.sqrt(max(p999, smallest / 16) * smallest)  # at most a quarter of the smallest move
    if middle <= top:
        middle = math.sqrt(top * smallest)  # top < middle < smallest: the separation check above
    proposed = round2(middle)
    if not top < proposed < smallest:  # rounding crossed a side
        proposed = middle
    noise = f"{proposed / p999:.1f}x above noise" if p999 > 0 else "noise 0"
    base.text = (
        f"{name}: idle p99.9 {_g(p999)}, smallest move {_g(smallest)}, proposed {_g(proposed)}: {noise}, "
        f"{smallest / proposed:.1f}x below the smallest move (now {_g(current)}; idle max {_g(top)}, "
        f"{len(peaks)} move(s))"
    )
    seen = [d for d in (m.first_firing(name, w) for w in m.windows) if d is not None]
    if seen:  # the camera's own arrival time: when the rule as it stands confirmed the move
        base.text += (
            f"; at {_g(current)} the camera confirmed {len(seen)} of {len(m.windows)} move(s) "
            f"{format_duration(max(0.0, min(seen)))}-{format_duration(max(0.0, max(seen)))} after the command"
        )
    base.option, base.value = "threshold", proposed
    above = proposed / max(top, p999) if max(top, p999) > 0 else math.inf
    if min(above, smallest / proposed) < THIN_MARGIN:
        base.warning = (
            f"{name}: thin margins ({above:.2g}x above the idle maximum, {smallest / proposed:.2g}x below the "
            "smallest move): a night may keep noise or miss a small move. A clearer view of the drops "
            "(region, scale: 2, steadier light) widens them; a capacitance rule (trigger: movement) needs none"
        )
    base.source = (
        f"idle p99.9 {_g(p999)} (max {_g(top)}) over {len(idle)} s, smallest of {len(peaks)} moves {_g(smallest)}"
    )
    return base


def _missed_move(rule, m: Measurements, scan_interval: float | None) -> RuleProposal:
    name = rule.name
    current = _option(rule, "within")
    delays = [w.delay for w in m.windows if w.delay is not None]
    base = RuleProposal(name, "missed-move", "", current=current)
    if not delays:
        base.text = f"{name}: no arrivals measured: within {format_duration(current)} kept"
        return base
    slow = max(delays)
    within = max(1.0, math.ceil((WITHIN_FACTOR * slow + (scan_interval or 0.0)) * 2) / 2)
    scans = f"; scans every {format_duration(scan_interval)}" if scan_interval else ""
    base.text = (
        f"{name}: drops arrived {format_duration(min(delays))}-{format_duration(slow)} after the command "
        f"(median {format_duration(statistics.median(delays))}, {len(delays)} move(s){scans}), proposed within "
        f"{within:g}s: {within / slow:.1f}x the slowest (now {current:g}s)"
    )
    base.option, base.value = "within", f"{within:g}s"
    base.source = f"slowest of {len(delays)} measured arrivals {format_duration(slow)} x{WITHIN_FACTOR:g} + a scan"
    return base


def _median_interval(times: list[float]) -> float | None:
    if len(times) < 3:
        return None
    gaps = [b - a for a, b in itertools.pairwise(times) if b > a]
    return statistics.median(gaps) if gaps else None


def _camera_facts(m: Measurements) -> list[str]:
    out = []
    times = sorted(m.frame_times)
    gaps = [b - a for a, b in itertools.pairwise(times) if b > a]
    if len(gaps) >= 3:
        med = statistics.median(gaps)
        out.append(
            f"camera: {1 / med:.1f} frames/s (interval median {med * 1000:.0f} ms, p5-p95 "
            f"{percentile(gaps, 5) * 1000:.0f}-{percentile(gaps, 95) * 1000:.0f} ms, longest "
            f"{max(gaps) * 1000:.0f} ms), frames {format_size(statistics.median(m.frame_sizes))} each"
        )
    elif not times:
        out.append("camera: no frames while idle")
    if len(m.brightness) >= 2:
        mean = statistics.mean(m.brightness)
        spread = (max(m.brightness) - min(m.brightness)) / mean if mean > 0 else 0.0
        line = f"brightness {mean:.0f} of 255, range {spread:.1%} while idle"
        if m.noise:
            line += f"; frame-to-frame noise {statistics.median(m.noise):.2f} levels (median)"
        if spread > FLICKER_RANGE:
            line += ": flicker or a lighting change (the motion trigger discounts the whole picture's brightness)"
        out.append(line)
    return out


def _timestamp_facts(m: Measurements, clock_comparable: bool) -> list[str]:
    parts = []
    if m.untimed:
        parts.append("without timestamps: " + ", ".join(f"{k} ({n})" for k, n in sorted(m.untimed.items())))
    else:
        parts.append("every message timestamped")
    back = sum(m.backwards.values())
    parts.append(f"{back} step(s) backwards" if back else "none going backwards")
    if clock_comparable and len(m.clock_offsets) >= 10:
        med = statistics.median(m.clock_offsets)
        drift = percentile(m.clock_offsets, 99) - percentile(m.clock_offsets, 1)
        parts.append(
            f"rig clock {abs(med):.2f} s {'ahead of' if med > 0 else 'behind'} this computer (spread {drift:.2f} s)"
        )
    return ["timestamps: " + "; ".join(parts)]


# -- the rule file ----------------------------------------------------------------------------


def rewrite_rules(text: str, ruleset: RuleSet, proposal: Proposal, header: list[str]) -> str:
    """`text` (the rule file) with each proposed value in place and commented; `header` lines first."""
    lines = text.splitlines(keepends=True)
    if lines and not lines[-1].endswith("\n"):
        lines[-1] += "\n"
    by_rule = {r.name: r for r in ruleset.rules}
    # Bottom-up, so that inserted lines do not move the rules still to do.
    todo = sorted(
        (c for c in proposal.changes if c.rule in by_rule and by_rule[c.rule].line),
        key=lambda c: by_rule[c.rule].line or 0,
        reverse=True,
    )
    for change in todo:
        start = (by_rule[change.rule].line or 1) - 1
        end = _block_end(lines, start)
        value = change.value if isinstance(change.value, str) else f"{change.value:g}"
        comment = f"# calibrated: {change.source}; was {_show(change.current)}"
        pattern = re.compile(rf"^(\s*(?:-\s+)?){re.escape(change.option or '')}:\s*[^#\n]*?(\s*#.*)?$")
        for i in range(start, end):
            match = pattern.match(lines[i].rstrip("\n"))
            if match:
                lines[i] = f"{match.group(1)}{change.option}: {value}    {comment}\n"
                break
        else:
            at, indent = _trigger_line(lines, start, end)
            lines.insert(at + 1, f"{indent}{change.option}: {value}    {comment}\n")
    head = [f"# {h}\n" if h else "#\n" for h in header]
    return "".join(head) + ("#\n" if head else "") + "".join(lines)


def _show(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def _block_end(lines: list[str], start: int) -> int:
    """The line after the rule item starting at `start` (the next item at its indentation, or a dedent)."""
    first = lines[start]
    indent = len(first) - len(first.lstrip())
    for i in range(start + 1, len(lines)):
        stripped = lines[i].strip()
        if not stripped or stripped.startswith("#"):
            continue
        own = len(lines[i]) - len(lines[i].lstrip())
        if own < indent or (own == indent and stripped.startswith("-")) or (own == indent and indent == 0):
            return i
    return len(lines)


def _trigger_line(lines: list[str], start: int, end: int) -> tuple[int, str]:
    """The `trigger:` line of the rule item and the indentation of its keys."""
    for i in range(start, end):
        m = re.match(r"^(\s*)(-\s+)?trigger:", lines[i])
        if m:
            return i, m.group(1) + (" " * len(m.group(2)) if m.group(2) else "")
    m = re.match(r"^(\s*)(-\s+)?", lines[start])
    indent = (m.group(1) + " " * len(m.group(2) or "")) if m else "    "
    return start, indent
