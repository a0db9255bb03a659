"""The rule engine: one trigger per rule, fed decoded events and ticks; returns firings.

Sans-I/O: no clocks, files or sockets; the only side effect is logging. The caller
supplies time (an event's own timestamp, or the last known time carried forward;
ticks while the stream is quiet).

Contracts:
- `feed(time, event)` first updates `state` (a `StateTracker`), then, for every
  enabled rule in rule-file order, calls `trigger.feed` if the trigger wants the
  event's kind (`kinds` None = all) and `trigger.tick` otherwise, so time-based
  triggers see time advance on every event. Returns the firings, each carrying
  its rule's name. `time` None means "no timestamp": the last known time is
  used, and before any time is known only the state is updated.
- `tick(time)` advances `state` and calls every enabled trigger's `tick`.
- Isolation: a trigger that raises (or returns something that is not a firing)
  does not affect the others. Its first failure is logged with the rule name and
  traceback; every failure is counted in `errors[rule]`; after the rule's
  `max_errors` failures the rule is disabled (`disabled[rule]` holds the reason,
  logged once) and never called again. `take_newly_disabled()` hands newly
  disabled rules to the alerting code once each.
- Scores a trigger reports (`Trigger.score`) are collected after each call,
  stamped with the rule's name (non-finite ones dropped, counted in
  `bad_scores`), and handed out by `take_scores()`; at most MAX_PENDING_SCORES
  wait between two calls (older ones are dropped and counted in
  `dropped_scores`), so an engine whose owner never takes them stays bounded.
  `latest_scores[rule]` is each rule's latest.
- A firing's `onset` must be a finite number; one after the firing time counts
  as the firing time. `onset_lags()` gives each rule's declared bound.
- Evidence is made JSON-safe (non-JSON values become strings) so sidecars can
  always be written.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any

from autorec.core.ruleset import Rule, RuleSet
from autorec.core.state import StateTracker
from autorec.proto import PurpleDropEvent
from autorec.triggers.base import MAX_ONSET_LAG, Firing, Score, Trigger

log = logging.getLogger(__name__)

MAX_PENDING_SCORES = 100_000


@dataclass
class _Slot:
    rule: Rule
    trigger: Trigger | None
    kinds: frozenset[str] | None


class RuleEngine:
    """Evaluates a `RuleSet` against a stream of (time, event). See the module docstring."""

    def __init__(self, ruleset: RuleSet, state: StateTracker | None = None) -> None:
        self.ruleset = ruleset
        self.state = state if state is not None else StateTracker()
        self.errors: dict[str, int] = {}
        self.disabled: dict[str, str] = {}
        self.fired: dict[str, int] = {r.name: 0 for r in ruleset.rules}
        self._newly_disabled: list[str] = []
        self._scores: list[Score] = []  # reported since the last take_scores()
        self.latest_scores: dict[str, Score] = {}
        self.bad_scores = 0  # scores that were not finite numbers (dropped)
        self.dropped_scores = 0  # scores nobody took in time (see MAX_PENDING_SCORES)
        self._slots: list[_Slot] = []
        for rule in ruleset.rules:
            try:
                trigger = rule.make_trigger()
            except Exception as exc:  # validated at load time; a plugin may still be flaky
                log.error("rule %s: trigger failed to start", rule.name, exc_info=True)
                self.errors[rule.name] = 1
                self._disable(rule.name, f"failed to start: {type(exc).__name__}: {exc}")
                trigger = None
            kinds = getattr(trigger, "kinds", None)
            self._slots.append(_Slot(rule, trigger, None if kinds is None else frozenset(kinds)))

    @property
    def triggers(self) -> dict[str, Trigger]:
        """rule name -> its trigger instance (enabled or not)."""
        return {s.rule.name: s.trigger for s in self._slots if s.trigger is not None}

    def feed(self, time: float | None, event: PurpleDropEvent) -> list[Firing]:
        if time is not None and not math.isfinite(time):
            time = None  # never hand NaN/inf to triggers: it would count against built-ins as errors
        kind = self.state.update(time, event)
        if time is None:
            # No timestamp and none to carry forward yet (a stream that starts with
            # electrode_state or device_info): the state learns it, triggers wait for a time.
            time = self.state.time
            if time is None:
                return []
        out: list[Firing] = []
        for slot in self._slots:
            if slot.trigger is None or slot.rule.name in self.disabled:
                continue
            if slot.kinds is None or kind in slot.kinds:
                self._call(slot, out, "feed", time, event, self.state)
            else:
                self._call(slot, out, "tick", time, self.state)
        return out

    def tick(self, time: float) -> list[Firing]:
        if not math.isfinite(time):
            return []
        self.state.advance(time)
        out: list[Firing] = []
        for slot in self._slots:
            if slot.trigger is None or slot.rule.name in self.disabled:
                continue
            self._call(slot, out, "tick", time, self.state)
        return out

    def onset_lags(self) -> dict[str, float]:
        """rule name -> how far before a firing its onset may lie (the trigger's `max_onset_lag`,
        bounded by MAX_ONSET_LAG; 0 for a trigger whose declaration is not a sane number)."""
        out: dict[str, float] = {}
        for slot in self._slots:
            lag = getattr(slot.trigger, "max_onset_lag", 0.0) if slot.trigger is not None else 0.0
            ok = isinstance(lag, (int, float)) and not isinstance(lag, bool) and math.isfinite(lag) and lag > 0
            out[slot.rule.name] = min(float(lag), MAX_ONSET_LAG) if ok else 0.0
        return out

    def take_scores(self) -> list[Score]:
        """Scores the triggers reported since the last call, in order (see `Trigger.score`)."""
        out, self._scores = self._scores, []
        return out

    @property
    def disabled_pending(self) -> bool:
        """Whether rules were disabled since the last `take_newly_disabled` (a cheap check per message)."""
        return bool(self._newly_disabled)

    def take_newly_disabled(self) -> list[str]:
        """Rules disabled since the last call (each reported once)."""
        out, self._newly_disabled = self._newly_disabled, []
        return out

    # -- internals ---------------------------------------------------------------------------

    def _call(self, slot: _Slot, out: list[Firing], method: str, *args: Any) -> None:
        name = slot.rule.name
        try:
            result = getattr(slot.trigger, method)(*args)
            firings = _normalise(result, name)
        except Exception as exc:
            self._collect_scores(slot)
            self._failed(slot, method, exc)
            return
        self._collect_scores(slot)
        if firings:
            self.fired[name] = self.fired.get(name, 0) + len(firings)
            out.extend(firings)

    def _collect_scores(self, slot: _Slot) -> None:
        pending = getattr(slot.trigger, "__dict__", {}).get("_scores")
        if not pending:
            return
        name = slot.rule.name
        for item in pending:
            try:
                t, v, th = (float(x) for x in item)
            except (TypeError, ValueError):
                self.bad_scores += 1
                continue
            if not (math.isfinite(t) and math.isfinite(v) and math.isfinite(th)):
                self.bad_scores += 1
                continue
            score = Score(name, t, v, th)
            self._scores.append(score)
            self.latest_scores[name] = score
        pending.clear()
        if len(self._scores) > MAX_PENDING_SCORES:
            excess = len(self._scores) - MAX_PENDING_SCORES // 2
            del self._scores[:excess]
            self.dropped_scores += excess

    def _failed(self, slot: _Slot, method: str, exc: Exception) -> None:
        name = slot.rule.name
        count = self.errors.get(name, 0) + 1
        self.errors[name] = count
        if count == 1:
            log.error(
                "rule %s: trigger %s raised in %s (counted; logged once)",
                name,
                slot.rule.trigger_name,
                method,
                exc_info=exc,
            )
        if count >= slot.rule.max_errors:
            self._disable(name, f"{count} errors, last: {type(exc).__name__}: {exc}")

    def _disable(self, name: str, reason: str) -> None:
        if name in self.disabled:
            return
        self.disabled[name] = reason
        self._newly_disabled.append(name)
        log.error("rule %s: disabled (%s)", name, reason)


def _normalise(result: Any, rule: str) -> list[Firing]:
    """Firings from what a trigger returned, stamped with its rule's name; TypeError if malformed."""
    if result is None:
        return []
    items = [result] if isinstance(result, Firing) else result
    try:
        items = list(items)
    except TypeError:
        raise TypeError(f"trigger returned {type(result).__name__}, expected Firing, a list of them, or None") from None
    out = []
    for f in items:
        if not isinstance(f, Firing):
            raise TypeError(f"trigger returned {type(f).__name__} in its firings, expected Firing")
        if isinstance(f.time, bool) or not isinstance(f.time, (int, float)) or not math.isfinite(f.time):
            raise TypeError(f"firing time must be a finite number, got {f.time!r}")
        time = float(f.time)
        onset = f.onset
        if isinstance(onset, bool) or not isinstance(onset, (int, float)) or not math.isfinite(onset):
            raise TypeError(f"firing onset must be a finite number, got {onset!r}")
        out.append(Firing(rule, time, _json_safe(f.evidence), min(float(onset), time)))  # never after the firing
    return out


def _json_safe(evidence: Any) -> dict[str, Any]:
    if not isinstance(evidence, dict):
        try:
            evidence = dict(evidence)
        except (TypeError, ValueError):
            return {"value": str(evidence)}
    return {str(k): _plain(v) for k, v in evidence.items()}


def _plain(value: Any) -> Any:
    """`value` as plain JSON data: containers recursively, numpy scalars/arrays unwrapped, NaN/inf -> None."""
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, (set, frozenset)):
        return [_plain(v) for v in sorted(value, key=str)]
    if hasattr(value, "tolist"):  # numpy scalars and arrays
        return _plain(value.tolist())
    return str(value)
