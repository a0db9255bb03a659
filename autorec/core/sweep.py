"""Threshold sweeps: what a range of thresholds would have kept, from one pass over a log.

The expensive part of a backtest is the rules' own work (JPEG decode and frame difference for
motion); the thresholds only change which scores become firings. `sweep()` runs the rule engine
once, and gives each threshold a lane: a real `Pipeline` of its own (timeline, budgets, flap
control, near-miss clips, segmenter) whose engine is a `_LaneEngine` that hands it the shared
engine's firings of the other rules and, for the swept rule, the firings its trigger's `Decider`
makes from the recorded scores at that threshold. So a lane is exactly what `run --log LOG
--dry-run --set RULE.OPTION=THRESHOLD` plans, budgets and all (tests/test_tune.py compares them).

Sans-I/O apart from the messages it is handed: give it any iterable of
`autorec.core.streamitems.Message` (a `FileSource`).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from autorec.core.dryrun import DryRun
from autorec.core.engine import RuleEngine
from autorec.core.ruleset import RuleSet
from autorec.core.streamitems import Message
from autorec.triggers.base import Decider, Firing, Score, as_firings

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


class _SharedEngine:
    """The real rule engine, fed once per record for every lane: the first lane to reach a record
    computes it, the others take the result (lanes see the same records in the same order)."""

    def __init__(self, ruleset: RuleSet, rule: str, lanes: int) -> None:
        self.engine = RuleEngine(ruleset)
        self.rule = rule
        self.lanes = lanes
        self._results: dict[int, list[Any]] = {}  # seq -> [others' firings, swept scores, others' scores, left]

    def result(self, seq: int, t: float, event: Any) -> tuple[list[Firing], list[Score], list[Score]]:
        entry = self._results.get(seq)
        if entry is None:
            firings = self.engine.feed(t, event)
            scores = self.engine.take_scores()
            mine = [x for x in scores if x.rule == self.rule]
            entry = [
                [f for f in firings if f.rule != self.rule],
                mine,
                [x for x in scores if x.rule != self.rule] if mine else scores,
                self.lanes,
            ]
            self._results[seq] = entry
        entry[3] -= 1
        if entry[3] == 0:
            del self._results[seq]
        return entry[0], entry[1], entry[2]


class _LaneEngine:
    """What a lane's `Pipeline` sees as its rule engine (the part of `RuleEngine` it uses)."""

    def __init__(self, shared: _SharedEngine, decider: Decider, threshold: float) -> None:
        self.shared = shared
        self.decider = decider
        self.threshold = threshold
        self._seq = 0
        self._scores: list[Score] = []
        self.disabled: dict[str, str] = {}
        self.disabled_pending = False

    def feed(self, t: float, event: Any) -> list[Firing]:
        others, mine, rest = self.shared.result(self._seq, t, event)
        self._seq += 1
        if not mine:
            self._scores = rest
            return others
        decided: list[Firing] = []
        for score in mine:
            decided += as_firings(self.decider.feed(score))
        th = self.threshold
        self._scores = [*rest, *(Score(x.rule, x.time, x.value, th) for x in mine)]
        return [*others, *decided] if decided else others

    def tick(self, t: float) -> list[Firing]:
        return []  # a sweep is offline: no ticks

    def take_scores(self) -> list[Score]:
        out, self._scores = self._scores, []
        return out

    def take_newly_disabled(self) -> list[str]:
        return []

    def onset_lags(self) -> dict[str, float]:
        return self.shared.engine.onset_lags()

    @property
    def errors(self) -> dict[str, int]:
        return self.shared.engine.errors

    @property
    def triggers(self) -> dict[str, Any]:
        return self.shared.engine.triggers


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
            "compare separate `run --log LOG --dry-run --set RULE.OPTION=VALUE` runs instead"
        )
    return option


def sweep(
    ruleset: RuleSet, rule: str, thresholds: Sequence[float], messages: Iterable[Message], log_bytes: int | None = None
) -> list[SweepRow]:
    """One pass over `messages`; a `SweepRow` per threshold. `log_bytes` for the kept fraction
    (default: the payload bytes seen, with their 4-byte headers)."""
    from autorec.core.pipeline import Pipeline, SegmentActions

    sweep_option(ruleset, rule)
    shared = _SharedEngine(ruleset, rule, len(thresholds))
    trigger = shared.engine.triggers[rule]
    lanes: list[tuple[float, Pipeline, DryRun]] = []
    for th in thresholds:
        decider = trigger.decider(th)
        if decider is None:
            raise SweepError(f"rule {rule}: threshold {th} is not possible with its other options")
        lane = Pipeline(
            ruleset, offline=True, telemetry=False, timelapse=False, engine=_LaneEngine(shared, decider, th)
        )
        lanes.append((th, lane, DryRun()))
    seen_bytes = 0

    def deliver(outputs: list[Any], sink: DryRun) -> None:
        for out in outputs:
            if type(out) is SegmentActions:
                sink.submit(out.actions)

    for msg in messages:
        seen_bytes += 4 + len(msg.payload)
        decoded = msg.decoded()
        if decoded is not None and msg.event is None:  # decoded once here, not once per lane
            msg = Message(msg.payload, msg.received, msg.monotonic, decoded[1], msg.rejected, decoded[0])
        for _th, lane, sink in lanes:
            deliver(lane.message(msg), sink)
    total = log_bytes if log_bytes is not None else seen_bytes
    rows = []
    for th, lane, sink in lanes:
        deliver(lane.finish("end_of_log"), sink)
        kept = sink.kept_bytes
        rows.append(SweepRow(th, len(sink.segments), kept, kept / total if total else 0.0))
    return rows
