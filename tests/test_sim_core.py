"""The sans-I/O simulation core, driven directly (no sockets, no clocks)."""

from __future__ import annotations

import pytest

from autorec import events
from autorec.proto import PurpleDropEvent
from autorec.sim.board import PIN_COUNT, SCAN_GROUP0_ROWS, misl_v41
from autorec.sim.config import SimConfig, add_sim_arguments, parse_faults
from autorec.sim.core import CameraFrame, Fault, Simulation
from autorec.sim.scenario import ScenarioError, load_scenario, parse_scenario
from autorec.sim.stream import CLOSE, OVERSIZED_BYTES, StreamEncoder

T0 = 1_700_000_000.0

MOVE_SCENARIO = """
drops: [[2, 2], [10, 6]]
control: {step: 0.5s, move_time: 0.3s, keepalive: 1s}
repeat: false
timeline:
  - idle: 3s
  - move: {drop: 0, path: [[3, 2], [4, 2], [4, 3]]}
  - idle: 5s
"""


def run_core(sc, seconds: float, **kw) -> tuple[Simulation, list]:
    sim = Simulation(sc, start_time=T0, duration=seconds, **kw)
    return sim, sim.advance(T0 + seconds)


def drop_pins(ev: PurpleDropEvent) -> set[int]:
    return {i for i, m in enumerate(ev.scan_capacitance.measurements) if m.drop_present}


def test_same_seed_same_stream_in_any_chunking():
    sc = load_scenario("demo")
    a = Simulation(sc, seed=7, start_time=T0, duration=120)
    b = Simulation(sc, seed=7, start_time=T0, duration=120)
    c = Simulation(sc, seed=8, start_time=T0, duration=120)
    enc = StreamEncoder()
    whole = [(t, m) for t, it in a.advance(T0 + 120) for m in enc.encode(t, it)]
    chunked = []
    t = T0
    while not b.finished:
        t += 0.37
        chunked += [(t2, m) for t2, it in b.advance(t) for m in enc.encode(t2, it)]
    other = [(t, m) for t, it in c.advance(T0 + 120) for m in enc.encode(t, it)]
    assert whole == chunked
    assert len(whole) > 1000
    assert whole != other


def test_electrode_state_quirks():
    _, items = run_core(load_scenario("idle"), 10, camera=False)
    states = [it for _, it in items if isinstance(it, PurpleDropEvent) and events.kind(it) == "electrode_state"]
    # keepalive every 2 s: sent although nothing changes
    assert 4 <= len(states) <= 6
    assert len({s.SerializeToString() for s in states}) == 1
    st = states[0].electrode_state
    assert events.timestamp(states[0]) is None
    assert not st.HasField("timestamp")
    assert len(st.electrodes) == 0
    assert [len(g.electrodes) for g in st.drive_groups] == [PIN_COUNT] * 2
    assert [len(g.electrodes) for g in st.scan_groups] == [PIN_COUNT] * 5
    assert len(states[0].SerializeToString()) == 947  # as upstream pdserver's
    # everything else carries its simulated time
    for t, it in items:
        if isinstance(it, PurpleDropEvent) and events.kind(it) not in ("electrode_state", "device_info"):
            assert events.timestamp(it) == pytest.approx(t)


def test_drops_move_when_the_scenario_says():
    sc = parse_scenario(MOVE_SCENARIO, "move.yaml")
    board = sc.board
    _, items = run_core(sc, 10)
    scans = [
        (t, drop_pins(it)) for t, it in items if isinstance(it, PurpleDropEvent) and it.HasField("scan_capacitance")
    ]
    start = {board.pin_at((2, 2)), board.pin_at((10, 6))}
    end = {board.pin_at((4, 3)), board.pin_at((10, 6))}
    assert all(pins == start for t, pins in scans if t < T0 + 3.0)
    assert all(pins == end for t, pins in scans if t > T0 + 3.0 + 2 * 0.5 + 0.3)
    moving = [pins for t, pins in scans if T0 + 3.0 < t < T0 + 4.3]
    assert any(pins not in (start, end) for pins in moving)
    # the camera sees the drop in between cells while it moves, and still otherwise
    frames = [(t, it) for t, it in items if isinstance(it, CameraFrame)]
    xs = [it.drops[0][0] for t, it in frames if T0 + 3.0 < t < T0 + 3.3]
    assert any(2 < x < 3 for x in xs)
    assert all(it.drops[0][:2] == (4.0, 3.0) for t, it in frames if t > T0 + 4.3)


def test_truth_windows_cover_electrode_changes():
    sim, items = run_core(load_scenario("demo"), 400, camera=False)
    changes = []
    prev = None
    for t, it in items:
        if isinstance(it, PurpleDropEvent) and it.HasField("electrode_state"):
            b = it.SerializeToString()
            if prev is not None and b != prev:
                changes.append(t)
            prev = b
    windows = sim.truth.activity
    assert len(windows) >= 4
    for t in changes:
        assert any(w["start"] <= t <= w["end"] for w in windows), t
    for w in windows:
        inside = [t for t in changes if w["start"] <= t <= w["end"]]
        assert inside[0] == w["start"] and inside[-1] == w["end"]


def test_truth_lighting_disconnect_and_faults():
    sc = parse_scenario(
        """
drops: [[2, 2]]
repeat: false
timeline:
  - idle: 1s
  - lighting: 0.7
  - flicker: {amplitude: 0.1, period: 1s, for: 2s}
  - disconnect: 2s
  - fault: text
  - idle: 1s
""",
        "t.yaml",
    )
    sim, items = run_core(sc, 6, faults={"garbage": 2.5})
    truth = sim.truth.as_dict()
    assert [e["start"] - T0 for e in truth["lighting"]] == [1.0, 1.0]
    assert truth["disconnects"] == [{"start": T0 + 3.0, "end": T0 + 5.0, "what": "device"}]
    assert [(f["t"] - T0, f["what"]) for f in truth["faults"]] == [(2.5, "garbage"), (5.0, "garbage"), (5.0, "text")]
    infos = [
        (t, it.device_info.connected)
        for t, it in items
        if isinstance(it, PurpleDropEvent) and it.HasField("device_info")
    ]
    assert infos == [(T0 + 3.0, False), (T0 + 5.0, True)]
    # nothing from the device while it is away; the camera keeps going
    kinds = {
        events.kind(it) if isinstance(it, PurpleDropEvent) else type(it).__name__
        for t, it in items
        if T0 + 3.0 < t < T0 + 5.0
    }
    assert kinds == {"CameraFrame"}
    gains = {it.gain for t, it in items if isinstance(it, CameraFrame) and T0 + 1.0 < t < T0 + 3.0}
    assert len(gains) > 3 and all(0.6 <= g <= 0.8 for g in gains)


def test_fault_payloads():
    enc = StreamEncoder()
    out = {k: enc.encode(T0, Fault(k)) for k in ("close", "garbage", "text", "truncated", "oversized")}
    assert out["close"] == [CLOSE]
    assert isinstance(out["text"][0], str)
    for k in ("garbage", "truncated"):
        with pytest.raises(events.DecodeError):
            events.decode(out[k][0])
    big = out["oversized"][0]
    assert len(big) > OVERSIZED_BYTES
    ev = events.decode(big)
    assert ev.image.image_data.startswith(b"\xff\xd8") and ev.image.image_data.endswith(b"\xff\xd9")


def test_scenario_errors_name_file_and_line(tmp_path):
    cases = {
        "timeline:\n  - idle: 5s\n  - burst: {moves: x}\n": "bad.yaml:3:",
        "drops: [[1, 1]]\ntimeline:\n  - idle: 5s\n  - jump: 3\n": "bad.yaml:4: timeline: unknown step 'jump'",
        "timeline: [\n": "bad.yaml:2: not valid YAML",
        "drops: [[99, 1]]\n": "bad.yaml:1: drops: cell [99, 1] is off",
        "timeline:\n  - lighting: 0.5\n": "bad.yaml:1: timeline: a repeating timeline needs",
        "control: {step: 0.2s, move_time: 0.3s}\n": "bad.yaml:1: control: move_time",
    }
    for text, message in cases.items():
        path = tmp_path / "bad.yaml"
        path.write_text(text)
        with pytest.raises(ScenarioError) as err:
            load_scenario(str(path))
        assert str(err.value).startswith(str(tmp_path / message)), str(err.value)
    with pytest.raises(ScenarioError, match="built-ins: demo, idle"):
        load_scenario("nosuch")


def test_board_pin_map():
    board = misl_v41()
    pins = list(board.pins.values())
    assert len(pins) == len(set(pins)) == board.cols * board.rows
    assert all(board.cell_of(board.pin_at(c)) == c for c in board.pins)
    # scan group 0: the off-grid reservoirs and two grid rows, where drops come and go
    off_grid = set(board.scan_pins) - set(pins)
    assert len(off_grid) == 6
    assert {board.cell_of(p) for p in set(board.scan_pins) & set(pins)} == {
        (c, r) for c in range(board.cols) for r in SCAN_GROUP0_ROWS
    }


def test_config_from_args():
    import argparse

    p = argparse.ArgumentParser()
    add_sim_arguments(p)
    args = p.parse_args(["--speed", "50", "--duration", "2min", "--no-camera", "--faults", "close=30s,text=5s"])
    cfg = SimConfig.from_args(args)
    assert (cfg.speed, cfg.duration, cfg.camera, cfg.port) == (50.0, 120.0, False, 7001)
    assert cfg.faults == {"close": 30.0, "text": 5.0}
    with pytest.raises(ValueError, match="unknown fault"):
        parse_faults("explode=1s")
    with pytest.raises(ValueError, match="needs an interval"):
        parse_faults("close")


def test_drop_present_can_be_left_unset_like_upstream():
    sc = parse_scenario("drops: [[2, 2]]\ndrop_present: false\ntimeline:\n  - idle: 5s\n", "u.yaml")
    _, items = run_core(sc, 2, camera=False)
    scans = [
        it.scan_capacitance for _, it in items if isinstance(it, PurpleDropEvent) and it.HasField("scan_capacitance")
    ]
    assert scans
    for scan in scans:
        assert not any(m.drop_present for m in scan.measurements)
        high = [i for i, m in enumerate(scan.measurements) if m.capacitance > 100]
        assert high == [sc.board.pin_at((2, 2))]


def test_group_capacitance_reads_tens_of_pf_per_drop_on_the_group():
    # drop 0 starts on scan group 0 (row 5) and leaves it (row 3); drop 1 stays outside (row 1)
    sc = parse_scenario(
        """
drops: [[4, 5], [10, 1]]
control: {step: 0.5s, move_time: 0.3s, keepalive: 1s}
repeat: false
timeline:
  - idle: 3s
  - move: {drop: 0, path: [[4, 4], [4, 3]]}
  - idle: 5s
""",
        "group.yaml",
    )
    _, items = run_core(sc, 10, camera=False)
    readings = [
        (t, list(it.group_capacitance.measurements))
        for t, it in items
        if isinstance(it, PurpleDropEvent) and events.kind(it) == "group_capacitance"
    ]
    before = [v[0] for t, v in readings if t < T0 + 3]
    after = [v[0] for t, v in readings if t > T0 + 5]
    assert before and after
    assert before == pytest.approx([32.8] * len(before), abs=1.5)  # one drop, like upstream's 32.76
    assert after == pytest.approx([0.0] * len(after), abs=1.5)
    assert all(v[1:] == [0.0] * 4 for _, v in readings)  # the other groups have no electrodes
