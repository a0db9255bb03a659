"""Threshold sweeps: what a range of thresholds would have kept, from one pass over a log.

The expensive part of a backtest is the rules' own work (JPEG decode and frame
difference for motion); the thresholds only change which scores become
firings. `sweep()` runs the rule engine once, and for each threshold feeds the
swept rule's scores to that trigger's `Decider` (see `Trigger.decider`) and
the resulting firings, with the other rules' firings unchanged, into a
segmenter of its own: one lane per threshold, each exactly what `run --replay
LOG --dry-run --set RULE.OPTION=THRESHOLD` would have planned (the message
handling is `Pipeline.message`'s for a log: held messages until the first
timestamp, rejected records skipped). Near-miss clips (`near_miss_clip`) are
not planned in a sweep.

Sans-I/O apart from the messages it is handed: give it any iterable of
`autorec.io.source.Message` (a `FileSource`).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from autorec import events
from autorec.core.dryrun import DryRun
from autorec.core.engine import RuleEngine
from autorec.core.pipeline import MAX_HELD
from autorec.core.ruleset import RuleSet
from autorec.core.segmenter import Segmenter
from autorec.core.streamitems import Message
from autorec.core.timeline import Timeline
from autorec.triggers.base import Decider, Firing, as_firings

log = logging.getLogger(__name__)


class SweepError(ValueError):
    """The rule cannot be swept (unknown rule, or its trigger's firings do not follow from its scores)."""


@dataclass(frozen=True)
class SweepRow:
    """What one threshold would have kept."""

    threshold: float
    segments: int
    kept_bytes: int
    kept_fraction: float  # of the log's bytes (as `run --dry-run` reports it)


@dataclass
class _Lane:
    threshold: float
    decider: Decider
    segmenter: Segmenter
    sink: DryRun


def sweep_option(ruleset: RuleSet, rule: str) -> str:
    """The option a sweep of `rule` varies; SweepError if it cannot be swept."""
    names = [r.name for r in ruleset.rules]
    if rule not in names:
        raise SweepError(f"no rule named {rule!r} (rules: {', '.join(names)})")
    r = ruleset.rule(rule)
    trigger = r.make_trigger()
    option = trigger.threshold_option
    probe = r.options.get(option) if option else None
    if option is None or trigger.decider(probe if isinstance(probe, (int, float)) else 0.0) is None:
        raise SweepError(
            f"rule {rule} ({r.trigger_name}) cannot be swept: its firings do not follow from its scores alone; "
            "compare separate `run --replay LOG --dry-run --set RULE.OPTION=VALUE` runs instead"
        )
    return option


def sweep(
    ruleset: RuleSet, rule: str, thresholds: Sequence[float], messages: Iterable[Message], log_bytes: int | None = None
) -> list[SweepRow]:
    """One pass over `messages`; a `SweepRow` per threshold. `log_bytes` for the kept fraction
    (default: the payload bytes seen, with their 4-byte headers)."""
    sweep_option(ruleset, rule)
    engine = RuleEngine(ruleset)
    trigger = engine.triggers[rule]
    policies = {r.name: r.segments for r in ruleset.rules}
    lags = engine.onset_lags()
    lanes = []
    for th in thresholds:
        decider = trigger.decider(th)
        if decider is None:
            raise SweepError(f"rule {rule}: threshold {th} is not possible with its other options")
        seg = Segmenter(policies, ruleset.segments)
        seg.set_onset_lags(lags)
        lanes.append(_Lane(th, decider, seg, DryRun()))
    timeline: Timeline[tuple[bytes, str, Any]] = Timeline(max_held=MAX_HELD)
    seen_bytes = 0
    last_t: float | None = None

    # Bound methods looked up once: this loop runs (lanes x messages) times.
    steps = [(lane.decider.feed, lane.segmenter.feed, lane.sink.submit) for lane in lanes]

    def process(t: float, payload: bytes, kind: str, event: Any) -> None:
        firings = engine.feed(t, event)
        scores = engine.take_scores()
        if scores:
            scores = [s for s in scores if s.rule == rule]
        others = [f for f in firings if f.rule != rule] if firings else firings
        for decide, feed, submit in steps:
            fs = others
            if scores:
                mine: list[Firing] = []
                for s in scores:
                    mine += as_firings(decide(s))
                if mine:
                    fs = others + mine
            actions = feed(t, payload, kind, fs)
            if actions:
                submit(actions)

    for msg in messages:
        seen_bytes += 4 + len(msg.payload)
        decoded = msg.decoded()
        if decoded is None:
            continue
        event, kind = decoded
        # the timeline holds records it cannot date yet (no clock, a possible clock step) and releases them
        for t, (payload, item_kind, item_event) in timeline.push(
            events.timestamp(event), None, (msg.payload, kind, event)
        ):
            process(t, payload, item_kind, item_event)
            last_t = t
    for t, (payload, item_kind, item_event) in timeline.flush():
        process(t, payload, item_kind, item_event)
        last_t = t
    total = log_bytes if log_bytes is not None else seen_bytes
    rows = []
    for lane in lanes:
        if last_t is not None:
            lane.sink.submit(lane.segmenter.close(last_t, "end_of_log"))
        kept = lane.sink.kept_bytes
        rows.append(SweepRow(lane.threshold, len(lane.sink.segments), kept, kept / total if total else 0.0))
    return rows
