"""Built-in triggers on synthetic event sequences and on upstream's recorded simulator log."""

from __future__ import annotations

from autorec.core.engine import RuleEngine
from autorec.rules import parse_rules
from autorec.triggers.base import Firing
from tests.support.eventbuilder import electrode_state, event, scan
from tests.support.rulefiles import timed


def engine(rule_yaml: str) -> RuleEngine:
    """An engine for one rule given as the YAML lines after `trigger:` (name `r`)."""
    return RuleEngine(parse_rules("rules:\n  - name: r\n" + "".join(f"    {line}\n" for line in rule_yaml.split(";"))))


def run(eng: RuleEngine, seq) -> list[Firing]:
    out = []
    for t, ev in seq:
        out += eng.feed(t, ev) if ev is not None else eng.tick(t)
    return out


# -- electrodes -------------------------------------------------------------------------------


def test_electrodes_fires_on_changes_never_on_repeats():
    eng = engine("trigger: electrodes")
    seq = [
        (1.0, electrode_state()),  # first state, nothing driven: nothing to report
        (1.1, electrode_state()),
        (2.0, electrode_state(drive=[7])),
        (2.1, electrode_state(drive=[7])),  # pdserver repeats on every control call
        (2.2, electrode_state(drive=[7], scan=[1])),  # scan groups are not drive groups
        (3.0, electrode_state(drive=[7, 8])),
        (4.0, electrode_state(legacy=[7, 8])),  # same set in the legacy form
        (5.0, electrode_state()),
    ]
    firings = run(eng, seq)
    assert [(f.time, f.evidence["added"], f.evidence["removed"]) for f in firings] == [
        (2.0, [7], []),
        (3.0, [8], []),
        (5.0, [], [7, 8]),
    ]
    assert all(f.rule == "r" for f in firings)
    assert firings[1].evidence["pins"] == [7, 8]


def test_electrodes_first_state_with_driven_pins_fires():
    assert len(run(engine("trigger: electrodes"), [(1.0, electrode_state(drive=[3]))])) == 1


def test_electrodes_pins_filter_and_scan_groups():
    seq = [
        (1.0, electrode_state(drive=[1])),
        (2.0, electrode_state(drive=[1, 50], scan=[9])),
        (3.0, electrode_state(drive=[50], scan=[9])),
        (4.0, electrode_state(drive=[50], scan=[9, 10])),
    ]
    assert [f.time for f in run(engine("trigger: electrodes;pins: [50, 51]"), seq)] == [2.0]
    assert [f.time for f in run(engine("trigger: electrodes;groups: scan"), seq)] == [2.0, 4.0]


def test_electrodes_on_upstream_log_fires_once_per_real_change(upstream_log):
    stream = list(timed(upstream_log))
    # The real changes, counted independently from the raw drive groups.
    states = [
        frozenset(i for g in ev.electrode_state.drive_groups for i, on in enumerate(g.electrodes) if on)
        for _t, ev in stream
        if ev.WhichOneof("msg") == "electrode_state"
    ]
    changes = sum(1 for a, b in zip([frozenset(), *states], states) if a != b)
    assert len(states) == 58 and changes == 57
    firings = run(engine("trigger: electrodes"), stream)
    assert len(firings) == changes
    # pdserver repeats the state on every control call: doubling every message adds nothing.
    doubled = [item for item in stream for _ in range(2 if item[1].WhichOneof("msg") == "electrode_state" else 1)]
    assert len(run(engine("trigger: electrodes"), doubled)) == changes


# -- movement ---------------------------------------------------------------------------------


def test_movement_follows_the_drop_in_upstream_log(upstream_log):
    stream = list(timed(upstream_log))
    driven = [
        next(i for g in ev.electrode_state.drive_groups for i, on in enumerate(g.electrodes) if on)
        for _t, ev in stream
        if ev.WhichOneof("msg") == "electrode_state"
        and any(on for g in ev.electrode_state.drive_groups for on in g.electrodes)
    ]
    # settle 0: one firing per step; the pin the drop arrived on is the electrode that was driven.
    firings = run(engine("trigger: movement;settle: 0s"), stream)
    assert [f.evidence["added"] for f in firings] == [[pin] for pin in driven]
    assert all(len(f.evidence["removed"]) == 1 and {5, 12} <= set(f.evidence["covered"]) for f in firings)
    # Each firing comes after the drive command that caused it, within half a second.
    drive_times = [t for t, ev in stream if ev.WhichOneof("msg") == "electrode_state"][1:]
    for f, t in zip(firings, drive_times):
        assert 0 < f.time - t < 0.5
    # Default settle (two scans): a position seen in a single scan (the client's 0.5 s steps
    # drift against the 0.25 s scans) is skipped, the drop is still followed to the end.
    settled = run(engine("trigger: movement"), stream)
    added = [f.evidence["added"][0] for f in settled]
    assert 50 <= len(settled) < len(driven) and added[-1] == driven[-1]
    it = iter(driven)
    assert all(pin in it for pin in added)  # in order, a subsequence of the driven pins
    # Two pins change per step (one uncovered, one covered): min_pins 3 never fires.
    assert run(engine("trigger: movement;min_pins: 3"), stream) == []


def test_movement_settle_ignores_a_flicker():
    seq = [
        (0.0, scan(0.0, {4: 30.0})),  # baseline
        (0.25, scan(0.25, {4: 30.0})),
        (0.5, scan(0.5, {4: 30.0, 9: 30.0})),  # one noisy scan
        (0.75, scan(0.75, {4: 30.0})),
        (1.0, scan(1.0, {5: 30.0})),  # a real move...
        (1.2, None),  # ...time passing alone confirms nothing
        (1.25, scan(1.25, {5: 30.0})),  # confirmed by the next scan
        (1.5, scan(1.5, {5: 30.0})),
    ]
    firings = run(engine("trigger: movement;settle: 100ms"), seq)
    assert [(f.time, f.evidence["added"], f.evidence["removed"], f.evidence["since"]) for f in firings] == [
        (1.25, [5], [4], 1.0)
    ]
    # settle 0: every scan that differs fires, the flicker too (on and off).
    assert len(run(engine("trigger: movement;settle: 0s"), seq)) == 3


def test_movement_small_changes_accumulate_up_to_min_pins():
    seq = [(t, scan(t, caps)) for t, caps in [(0.0, {1: 30}), (1.0, {1: 30, 2: 30}), (2.0, {1: 30, 2: 30, 3: 30})]]
    firings = run(engine("trigger: movement;settle: 0s;min_pins: 2"), seq)
    assert [(f.time, f.evidence["added"]) for f in firings] == [(2.0, [2, 3])]


# -- threshold --------------------------------------------------------------------------------


def temps(*values, start=0.0):
    return [(start + i, event("temperature_control", start + i, temperatures=[v, 0.0])) for i, v in enumerate(values)]


def test_threshold_above_with_hysteresis():
    eng = engine("trigger: threshold;field: temperature_control.temperatures[0];above: 40;hysteresis: 2")
    firings = run(eng, temps(30, 41, 39, 41, 37, 40.5, 40, 45))
    assert [(f.time, f.evidence["value"]) for f in firings] == [(1.0, 41.0), (5.0, 40.5)]
    assert firings[0].evidence["field"] == "temperature_control.temperatures[0]"


def test_threshold_first_value_counts_and_below_band():
    eng = engine("trigger: threshold;field: temperature_control.temperatures[0];above: 40;below: 10")
    firings = run(eng, temps(50, 30, 5, 5, 20, 45))
    assert [(f.time, "above" in f.evidence) for f in firings] == [(0.0, True), (2.0, False), (5.0, True)]


def test_threshold_delta_and_missing_index():
    eng = engine("trigger: threshold;field: temperature_control.temperatures[3];delta: 1.5")
    seq = [
        (t, event("temperature_control", t, temperatures=v))
        for t, v in enumerate(
            [[0, 0, 0, 20.0], [0, 0, 0, 21.0], [1.0], [0, 0, 0, 21.5], [0, 0, 0, 21.0], [0, 0, 0, 23.5]]
        )
    ]
    seq.append((9.0, event("hv_regulator", 9.0, voltage=100.0)))  # another kind: ignored
    firings = run(eng, seq)
    assert [(f.time, f.evidence["previous"], f.evidence["value"]) for f in firings] == [
        (3.0, 20.0, 21.5),
        (5.0, 21.5, 23.5),
    ]


def test_threshold_on_upstream_log(upstream_log):
    stream = list(timed(upstream_log))
    assert len(run(engine("trigger: threshold;field: hv_regulator.voltage;above: 50"), stream)) == 1
    # The big drop on pin 12 reads ~218 pF in every scan: above 100 once, never re-armed.
    f = run(engine("trigger: threshold;field: scan_capacitance.measurements[12].capacitance;above: 100"), stream)
    assert len(f) == 1 and f[0].evidence["value"] > 200


# -- message ----------------------------------------------------------------------------------


def test_message_kind_and_where():
    seq = [
        (1.0, event("device_info", connected=True, serial_number="A1")),
        (2.0, event("device_info", connected=False, serial_number="A1")),
        (3.0, event("hv_regulator", 3.0, voltage=0.0)),
        (4.0, event("device_info", connected=False, serial_number="B2")),
    ]
    lost = run(engine("trigger: message;kind: device_info;where: {connected: false}"), seq)
    assert [f.time for f in lost] == [2.0, 4.0] and lost[0].evidence["where"] == {"connected": False}
    # The kind may come from the where-key prefix.
    both = run(engine("trigger: message;where: {device_info.connected: false, serial_number: B2}"), seq)
    assert [f.time for f in both] == [4.0]
    assert [f.time for f in run(engine("trigger: message;kind: device_info"), seq)] == [1.0, 2.0, 4.0]


def test_message_on_upstream_log(upstream_log, upstream_counts):
    stream = list(timed(upstream_log))
    firings = run(engine("trigger: message;kind: hv_regulator"), stream)
    assert len(firings) == upstream_counts["kinds"]["hv_regulator"]
    assert run(engine("trigger: message;kind: device_info"), stream) == []


# -- interval ---------------------------------------------------------------------------------


def test_interval_aligned_with_jumps():
    eng = engine("trigger: interval;every: 10s")
    ticks = [95.0, 99.9, 100.0, 105.0, 110.2, 111.0, 175.0, 176.0, 180.0, 20.0, 29.0, 30.0]
    firings = run(eng, [(t, None) for t in ticks])
    # 100 and 110 on time; a jump to 175 fires once (not six times); after a jump back
    # to 20 it re-plans and fires at 30.
    assert [(f.time, f.evidence["scheduled"]) for f in firings] == [
        (100.0, 100.0),
        (110.2, 110.0),
        (175.0, 120.0),
        (180.0, 180.0),
        (30.0, 30.0),
    ]


def test_interval_unaligned_fires_from_first_time_and_on_events_too():
    eng = engine("trigger: interval;every: 30min;align: false")
    seq = [(1000.0, event("hv_regulator", 1000.0, voltage=1.0)), (2799.0, None)]
    seq += [(2800.0, event("hv_regulator", 2800.0, voltage=1.0)), (4600.0, None)]
    assert [f.time for f in run(eng, seq)] == [2800.0, 4600.0]


def test_interval_on_upstream_log(upstream_log):
    # 30 s of log, aligned 10 s periods: fires at each 10 s boundary inside it.
    stream = list(timed(upstream_log))
    firings = run(engine("trigger: interval;every: 10s"), stream)
    first, last = stream[0][0], stream[-1][0]
    assert len(firings) == int(last // 10) - int(first // 10)
