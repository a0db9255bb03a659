"""RuleEngine: dispatch by kind, ticks, and isolation of a trigger that raises."""

from __future__ import annotations

import itertools
import json
import logging
import math
from pathlib import Path
from typing import ClassVar

from autorec.core.engine import RuleEngine
from autorec.rules import Rule, RuleSet, SegmentPolicy, load_rules, parse_rules
from autorec.triggers.base import Firing, Trigger
from tests.support.eventbuilder import electrode_state, event, scan
from tests.support.rulefiles import timed

REPO = Path(__file__).resolve().parent.parent


class Exploding(Trigger):
    """Raises on every hv_regulator after the first `ok` ones."""

    name = "exploding"
    kinds: ClassVar[frozenset[str] | None] = frozenset({"hv_regulator"})

    def __init__(self, rule, ok=0, **options):
        super().__init__(rule, **options)
        self.ok = ok
        self.calls = 0

    def feed(self, time, event, state):
        self.calls += 1
        if self.calls > self.ok:
            raise ZeroDivisionError("bad plugin arithmetic")
        return self.fire(time, n=self.calls)


class Garbage(Trigger):
    """Returns things that are not firings."""

    name = "garbage"

    def feed(self, time, event, state):
        return "fired!"


class Odd(Trigger):
    """Returns a firing with another rule's name and evidence that is not plain JSON."""

    name = "odd"
    kinds: ClassVar[frozenset[str] | None] = frozenset({"hv_regulator"})

    def feed(self, time, event, state):
        return [Firing("someone-else", time, {"pins": {3, 1}, "score": math.nan, "obj": object})]


class Recorder(Trigger):
    """Keeps every call, to check dispatch."""

    name = "recorder"
    kinds: ClassVar[frozenset[str] | None] = frozenset({"hv_regulator"})

    def __init__(self, rule, **options):
        super().__init__(rule, **options)
        self.calls: list[tuple[str, float]] = []

    def feed(self, time, event, state):
        assert state.latest("hv_regulator") is event  # state is updated before triggers run
        self.calls.append(("feed", time))

    def tick(self, time, state):
        self.calls.append(("tick", time))


def ruleset(*rules: tuple[str, type[Trigger], dict], max_errors: int = 10) -> RuleSet:
    seg = SegmentPolicy()
    return RuleSet(
        path=Path("<test>"),
        rules=[Rule(name, cls, cls.name, opts, seg, max_errors=max_errors) for name, cls, opts in rules],
        max_errors=max_errors,
    )


def hv(t: float) -> object:
    return event("hv_regulator", t, voltage=100.0)


def test_dispatch_by_kind_and_ticks():
    eng = RuleEngine(ruleset(("r", Recorder, {})))
    eng.feed(1.0, hv(1.0))
    eng.feed(2.0, electrode_state(drive=[1]))
    eng.tick(3.0)
    assert eng.triggers["r"].calls == [("feed", 1.0), ("tick", 2.0), ("tick", 3.0)]
    assert eng.state.time == 3.0 and eng.state.driven_pins == {1}


def test_a_raising_trigger_is_isolated_counted_and_disabled(caplog):
    eng = RuleEngine(
        ruleset(("bad", Exploding, {"ok": 2}), ("good", Recorder, {}), ("also", Exploding, {"ok": 100}), max_errors=3)
    )
    with caplog.at_level(logging.ERROR, logger="autorec.core.engine"):
        fired = [f.rule for t in range(10) for f in eng.feed(float(t), hv(float(t)))]
    # The good rules keep working all along.
    assert fired.count("also") == 10 and fired.count("bad") == 2
    assert len(eng.triggers["good"].calls) == 10
    # Counted, disabled after max_errors, never called again.
    assert eng.errors == {"bad": 3} and list(eng.disabled) == ["bad"]
    assert "ZeroDivisionError: bad plugin arithmetic" in eng.disabled["bad"]
    assert eng.triggers["bad"].calls == 5
    assert eng.fired == {"bad": 2, "good": 0, "also": 10}
    # The traceback is logged once, with the rule's name; the disabling once more.
    tracebacks = [r for r in caplog.records if r.exc_info]
    assert len(tracebacks) == 1 and "rule bad" in tracebacks[0].getMessage()
    assert "ZeroDivisionError" in caplog.text and "Traceback" in caplog.text
    assert sum("disabled" in r.getMessage() for r in caplog.records) == 1
    assert eng.take_newly_disabled() == ["bad"] and eng.take_newly_disabled() == []


def test_malformed_results_count_as_errors_and_evidence_is_made_json_safe():
    eng = RuleEngine(ruleset(("g", Garbage, {}), ("o", Odd, {})))
    [f] = eng.feed(1.0, hv(1.0))
    assert eng.errors == {"g": 1}
    assert f.rule == "o"  # a firing always carries its own rule's name
    assert f.evidence["pins"] == [1, 3] and f.evidence["score"] is None and "object" in f.evidence["obj"]
    json.dumps(f.as_dict(), allow_nan=False)


class NoStart(Trigger):
    name = "nostart"

    def __init__(self, rule, **options):
        raise OSError("model file vanished")


def test_a_trigger_failing_to_start_is_disabled_not_fatal():
    eng = RuleEngine(ruleset(("x", NoStart, {}), ("r", Recorder, {})))
    assert "x" in eng.disabled and eng.errors["x"] == 1
    eng.feed(1.0, hv(1.0))
    assert eng.triggers["r"].calls == [("feed", 1.0)]


def test_engine_with_a_plugin_from_a_rule_file(tmp_path):
    (tmp_path / "flaky_h6.py").write_text(
        "from autorec.triggers.base import Trigger\n"
        "class Flaky(Trigger):\n"
        "    kinds = frozenset({'scan_capacitance'})\n"
        "    def feed(self, time, event, state):\n"
        "        raise KeyError('oops')\n"
    )
    rules = tmp_path / "r.yaml"
    rules.write_text(
        "max_errors: 2\nrules:\n  - {name: flaky, trigger: 'flaky_h6:Flaky'}\n  - {name: el, trigger: electrodes}\n"
    )
    eng = RuleEngine(load_rules(rules))
    assert eng.ruleset.rules[0].max_errors == 2
    out = []
    for i in range(4):
        out += eng.feed(float(i), scan(float(i), {4: 30.0}))
        out += eng.feed(float(i), electrode_state(drive=[i]))
    assert [f.rule for f in out] == ["el"] * 4  # the other rule is unaffected
    assert eng.errors == {"flaky": 2} and list(eng.disabled) == ["flaky"]


def test_engine_on_the_upstream_log_with_shipped_rules(upstream_log):
    eng = RuleEngine(load_rules(REPO / "rules" / "electrodes.yaml"))
    firings = [f for t, ev in timed(upstream_log) for f in eng.feed(t, ev)]
    assert len(firings) == 57 and {f.rule for f in firings} == {"electrodes-changed"}
    assert eng.errors == {} and eng.disabled == {}
    # Firing times are carried forward from the previous stamped message (electrode_state has none).
    assert all(b.time >= a.time for a, b in itertools.pairwise(firings))


def test_parse_rules_engine_multiple_rules_share_state():
    eng = RuleEngine(
        parse_rules(
            "rules:\n"
            "  - {name: el, trigger: electrodes}\n"
            "  - {name: volt, trigger: threshold, field: hv_regulator.voltage, below: 50}\n"
        )
    )
    out = eng.feed(1.0, electrode_state(drive=[2])) + eng.feed(2.0, event("hv_regulator", 2.0, voltage=10.0))
    assert [(f.rule, f.time) for f in out] == [("el", 1.0), ("volt", 2.0)]


def test_events_before_any_time_update_state_only():
    eng = RuleEngine(parse_rules("rules:\n  - {name: el, trigger: electrodes}\n"))
    assert eng.feed(None, electrode_state(drive=[4])) == []
    assert eng.state.driven_pins == {4} and eng.state.time is None
    eng.tick(10.0)
    [f] = eng.feed(None, electrode_state(drive=[5]))  # carried forward
    assert f.time == 10.0 and f.evidence["added"] == [5]
    assert eng.feed(math.nan, electrode_state(drive=[6])) != [] and eng.tick(math.inf) == []
    assert eng.state.time == 10.0 and eng.errors == {}
