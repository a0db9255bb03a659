"""missed-move: commanded moves that did not happen, on synthetic sequences, the simulator and upstream's log."""

from __future__ import annotations

import json

import pytest

from autorec import events
from autorec.core.engine import RuleEngine
from autorec.proto import PurpleDropEvent
from autorec.rules import parse_rules
from autorec.sim.core import Simulation
from autorec.sim.scenario import load_scenario, parse_scenario
from autorec.triggers.base import Firing
from autorec.triggers.missedmove import neighbours_from_layout
from tests.support.eventbuilder import electrode_state, event, scan
from tests.support.rulefiles import timed

T0 = 1_700_000_000.0
DROP = 210.0


def engine(options: str = "") -> RuleEngine:
    text = "rules:\n  - name: mm\n    trigger: missed-move\n" + "".join(f"    {o}\n" for o in options.split(";") if o)
    return RuleEngine(parse_rules(text))


def run(eng: RuleEngine, seq) -> list[Firing]:
    out: list[Firing] = []
    for t, ev in seq:
        out += eng.feed(t, ev)
    return out


def sc(t: float, *pins: int) -> tuple[float, PurpleDropEvent]:
    return t, scan(t, {p: DROP for p in pins})


def es(t: float, *pins: int) -> tuple[float, PurpleDropEvent]:
    return t, electrode_state(drive=pins)


def test_a_drop_that_arrives_never_fires_one_that_does_not_fires_with_words():
    seq = [sc(0.0, 22), sc(0.25, 22), es(0.3, 24), sc(0.5, 24), sc(0.75, 24)]  # moved 22 -> 24
    assert run(engine(), seq) == []
    eng = engine()
    seq = [sc(T0, 22), es(T0 + 0.4, 24)] + [sc(T0 + 0.5 + 0.25 * i, 22) for i in range(10)]
    firings = run(eng, seq)
    assert len(firings) == 1, firings
    f = firings[0]
    assert f.evidence["what"] == "no_arrival" and f.evidence["pin"] == 24 and f.evidence["drops_on"] == [22]
    assert f.time == pytest.approx(T0 + 2.5)  # the first scan at or after the deadline
    assert f.evidence["text"] == "pin 24 driven at 22:13:20.4Z; no drop after 2.1 s; drop still on pin 22"
    assert eng.triggers["mm"].counters["missed"] == 1


def test_within_option_and_no_verdict_without_scans():
    seq = [sc(0.0, 22), es(0.4, 24), sc(0.9, 22), sc(1.5, 22)]
    assert [f.time for f in run(engine("within: 1s"), seq)] == [1.5]
    assert run(engine("within: 2s"), seq) == []
    # Scans stop (device gone): time passing alone decides nothing; the expectation is forgotten.
    eng = engine()
    assert run(eng, [sc(0.0, 22), es(0.4, 24)]) == []
    assert eng.tick(100.0) == [] and eng.triggers["mm"].counters["unjudged"] == 1


def test_a_stuck_path_fires_once_and_holding_a_drop_never_fires():
    # The drop on 22 never moves while the controller walks 24, 26, 28: one failure, one firing.
    seq = [sc(0.0, 22)]
    for i, pin in enumerate((24, 26, 28)):
        seq.append(es(0.5 + 0.5 * i, pin))
    seq += [sc(0.6 + 0.25 * i, 22) for i in range(20)]
    seq.sort(key=lambda x: x[0])
    eng = engine()
    firings = run(eng, seq)
    assert [f.evidence["pin"] for f in firings] == [24]
    assert eng.triggers["mm"].counters["suppressed"] == 2
    # Driving the pin a drop sits on holds it: no expectation at all.
    eng = engine()
    assert run(eng, [sc(0.0, 22), es(0.5, 22)] + [sc(0.6 + 0.5 * i, 22) for i in range(10)]) == []
    assert eng.triggers["mm"].counters["expected"] == 0


def test_a_drop_that_leaves_the_driven_path_fires():
    # Driven 24 (the drop arrives), then it slides on to 30, which nobody drives.
    seq = [sc(0.0, 22), es(0.3, 24), sc(0.5, 24), sc(0.75, 30), sc(1.0, 30), sc(1.25, 30)]
    firings = run(engine(), seq)
    assert [(f.evidence["what"], f.evidence["pin"]) for f in firings] == [("left_path", 30)], firings
    assert "drop on pin 30" in firings[0].evidence["text"] and firings[0].evidence["drops_on"] == [24]
    assert run(engine("left_path: false"), seq) == []
    # One noisy scan is not a drop.
    assert run(engine(), [sc(0.0, 22), es(0.3, 24), sc(0.5, 24), sc(0.75, 24, 30), sc(1.0, 24)]) == []


def test_layout_limits_expectations_to_pins_next_to_a_drop():
    grid = {"layout": {"grid": [[22, 24, 26], [30, None, 32]]}}
    assert neighbours_from_layout(json.dumps(grid))[24] == {22, 26}
    assert neighbours_from_layout(json.dumps([[1, -1, 2]]))[1] == frozenset()
    for bad in ("", "{", '{"layout": {}}', "[[]]", '"x"'):
        with pytest.raises(ValueError):
            neighbours_from_layout(bad)
    layout = (0.0, event("electrode_layout", 0.0, layout=json.dumps(grid)))
    far = [layout, sc(0.1, 22), es(0.3, 32)] + [sc(0.5 + 0.25 * i, 22) for i in range(12)]
    assert run(engine(), far) == []  # 32 is not next to the drop: nothing should move
    near = [layout, sc(0.1, 22), es(0.3, 24)] + [sc(0.5 + 0.25 * i, 22) for i in range(12)]
    assert len(run(engine(), near)) == 1
    eng = engine()
    run(eng, [(0.0, event("electrode_layout", 0.0, layout="not json"))])
    assert eng.triggers["mm"].counters["layout_errors"] == 1


def test_zero_firings_on_upstreams_simulator_log(upstream_log):
    eng = engine()
    firings = run(eng, timed(upstream_log))
    assert firings == []
    counters = eng.triggers["mm"].counters
    assert counters["expected"] >= 50 and counters["arrived"] == counters["expected"], counters


def sim_firings(scenario, seconds: float, faults=None) -> tuple[list[Firing], dict, dict]:
    sim = Simulation(scenario, seed=3, start_time=T0, duration=seconds, camera=False, faults=faults)
    eng = engine()
    firings: list[Firing] = []
    last = T0
    for t, item in sim.advance(T0 + seconds):
        if isinstance(item, PurpleDropEvent):
            last = t
            firings += eng.feed(t, item)
    firings += eng.tick(last)
    return firings, sim.truth.as_dict(), eng.triggers["mm"].counters


def test_zero_firings_on_the_demo_scenarios_successful_moves():
    firings, truth, counters = sim_firings(load_scenario("demo"), 400.0)
    assert truth["failures"] == [] and len(truth["activity"]) >= 6
    assert firings == [] and counters["expected"] > 40 and counters["arrived"] == counters["expected"], counters


STUCK = """
drops: [[2, 2], [9, 5]]
control: {step: 0.5s, move_time: 0.3s, keepalive: 2s, stuck_for: 3s}
repeat: false
timeline:
  - idle: 2s
  - burst: {moves: 6, drops: 1}
  - idle: 5s
  - fault: stuck
  - burst: {moves: 6, drops: 2}
  - idle: 8s
  - split: {drop: 1}
  - idle: 5s
  - fault: stuck
  - split: {drop: 0}
  - idle: 5s
  - burst: {moves: 4, drops: 3}
  - idle: 5s
"""


def test_each_simulated_failure_is_found_and_nothing_else():
    firings, truth, counters = sim_firings(parse_scenario(STUCK, "stuck.yaml"), 60.0)
    failures = truth["failures"]
    assert len(failures) == 2, truth
    assert any("split" in a["what"] for a in truth["activity"])
    assert [f.evidence["what"] for f in firings] == ["no_arrival"] * 2, [f.evidence for f in firings]
    for failure, firing in zip(failures, firings):
        assert firing.evidence["pin"] in failure["pins"]
        assert 0 <= firing.evidence["driven_at"] - failure["t"] < 0.01
        assert firing.time - failure["t"] < 2.0 + 0.3  # within + one scan interval
    # The successful split made a third drop that the last burst moved without a firing.
    assert counters["arrived"] >= 10


def test_periodic_stuck_faults_in_the_demo_each_fire():
    firings, truth, _ = sim_firings(load_scenario("demo"), 200.0, faults={"stuck": 15.0})
    failures = truth["failures"]
    assert failures, truth["faults"]
    assert len(firings) == len(failures), ([f.evidence["text"] for f in firings], failures)
    for failure, firing in zip(failures, firings):
        assert firing.evidence["pin"] in failure["pins"]


def test_with_the_boards_layout_only_pins_next_to_a_drop_expect_one():
    text = STUCK.replace("repeat: false", "repeat: false\nlayout: true")
    firings, truth, counters = sim_firings(parse_scenario(text, "stuck-layout.yaml"), 60.0)
    assert len(truth["failures"]) == 2 and counters["layout_errors"] == 0
    assert [f.evidence["pin"] in t["pins"] for f, t in zip(firings, truth["failures"])] == [True, True]
    # Only the stuck drop's neighbour is named, not every drop on the board.
    assert all(len(f.evidence["drops_on"]) == 1 for f in firings), [f.evidence for f in firings]
    # A path walked after a stuck drop is no longer next to any drop: those pins expect nothing.
    _, _, without = sim_firings(parse_scenario(STUCK, "stuck.yaml"), 60.0)
    assert counters["expected"] < without["expected"]


def camera_firings(scenario, seconds: float) -> tuple[list[Firing], dict, dict]:
    from autorec.sim.camera import CameraRenderer
    from autorec.sim.stream import StreamEncoder

    scenario.layout = True
    sim = Simulation(scenario, seed=3, start_time=T0, duration=seconds, fps=5)
    encoder = StreamEncoder(CameraRenderer(scenario.board.cols, scenario.board.rows, width=512, height=384, seed=3))
    eng = engine("watch: camera")
    firings: list[Firing] = []
    for t, item in sim.advance(T0 + seconds):
        for payload in encoder.encode(t, item):
            if isinstance(payload, bytes):
                firings += eng.feed(t, events.decode(payload))
    return firings, sim.truth.as_dict(), eng.triggers["mm"].counters


def test_camera_variant_finds_the_stuck_drops_and_passes_the_good_moves():
    firings, truth, counters = camera_firings(parse_scenario(STUCK, "stuck.yaml"), 60.0)
    assert len(truth["failures"]) == 2
    assert [f.evidence["what"] for f in firings] == ["no_change"] * 2, [f.evidence["text"] for f in firings]
    for failure, firing in zip(truth["failures"], firings):
        assert firing.evidence["pin"] in failure["pins"] and "did not change" in firing.evidence["text"]
    assert counters["arrived"] >= 10 and counters["no_geometry"] == 0, counters
    firings, truth, counters = camera_firings(load_scenario("demo"), 150.0)
    assert truth["failures"] == [] and firings == [] and counters["arrived"] == counters["expected"] > 20, counters


def test_camera_variant_needs_the_layout():
    eng = engine("watch: camera")
    run(eng, [es(0.5, 24), es(1.0, 26)])
    assert eng.triggers["mm"].counters["no_geometry"] == 2
