"""`autorec calibrate` and the simulator's JSON-RPC: proposals from known moves, and --drive's safety.

The proposals are measured on the built-in simulator with its camera (small drops, nudges that
barely move, a lighting step and flicker while idle), and the proposed rule file is then run on
a fresh simulated night: it must keep every activity window from a full pre-roll and nothing
that is only lighting. --drive must refuse without JSON-RPC, drive no pin beyond --pins, and
leave every electrode off, also after SIGINT in the middle of a move.
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest
from websockets.sync.client import connect

from autorec import events
from autorec.cli import main
from autorec.core.pipeline import Pipeline, SegmentActions
from autorec.core.segmenter import CloseSegment
from autorec.rules import load_rules
from autorec.runs.filesource import FileSource
from autorec.sim.config import SimConfig
from autorec.sim.core import Simulation
from autorec.sim.rpc import RpcHandler
from autorec.sim.scenario import load_scenario
from autorec.sim.server import SimServerThread
from tests.support.polling import wait_until
from tests.support.simlog import T0, write_sim_log

REPO = Path(__file__).resolve().parent.parent

# Small drops (as the `subtle` scenario's), nudged by an eighth of a cell, a brightness step and
# flicker, all while nothing is driven: the idle phase's noise.
CALIBRATION_RIG = """\
board: misl_v4.1
drops: [[3, 3], [9, 5]]
control: {step: 0.5s, move_time: 0.3s, keepalive: 2s, drop_radius: 0.25}
timeline:
  - idle: 2s
  - nudge: {drop: 0, distance: 0.125, for: 3s}
  - lighting: 0.8
  - idle: 3s
  - flicker: {amplitude: 0.05, period: 2s, for: 6s}
  - lighting: 1.0
  - nudge: {drop: 1, distance: 0.125, for: 3s}
  - idle: 60s
"""

# A fresh night on the same rig: bursts of moves, a split, lighting steps, flicker and nudges.
NIGHT = """\
board: misl_v4.1
drops: [[3, 3], [9, 5]]
control: {step: 0.5s, move_time: 0.3s, keepalive: 2s, drop_radius: 0.25}
timeline:
  - idle: 15s
  - burst: {moves: 3, drops: 1}
  - idle: 25s
  - lighting: 0.8
  - nudge: {drop: 1, distance: 0.125, for: 3s}
  - idle: 25s
  - flicker: {amplitude: 0.05, period: 2s, for: 8s}
  - idle: 25s
  - burst: {moves: 4, drops: 2}
  - idle: 25s
  - lighting: 1.0
  - nudge: {drop: 0, distance: 0.125, for: 3s}
  - idle: 25s
  - split: {drop: 0}
  - idle: 25s
"""

PROPOSED = re.compile(r"camera-motion: idle p99\.9 (\S+), smallest move (\S+), proposed (\S+): ")


def calibrate(capsys, *args: str) -> tuple[int, str, str]:
    code = main(["calibrate", *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


# -- the simulator's JSON-RPC -----------------------------------------------------------------


def test_rpc_set_electrode_pins_moves_the_simulated_drop() -> None:
    sim = Simulation(load_scenario("idle"), start_time=1000.0, camera=False)
    rpc = RpcHandler(sim)
    sim.advance(1001.0)

    def call(method: str, params, t: float) -> dict:
        return json.loads(rpc.handle(json.dumps({"jsonrpc": "2.0", "method": method, "params": params, "id": 1}), t))

    rows = call("get_board_definition", [], 1001.0)["result"]["layout"]["grids"][0]["pins"]
    drop = sim.board.pin_at((2, 2))
    assert rows[2][2] == drop
    raw = call("get_scan_capacitance", {}, 1001.0)["result"]["raw"]
    assert raw[drop] > 500 and raw[rows[2][3]] == 0
    target = rows[2][3]
    assert call("set_electrode_pins", {"pins": [target]}, 1001.0) == {"jsonrpc": "2.0", "result": None, "id": 1}
    state = [item for _, item in sim.advance(1001.0) if getattr(item, "WhichOneof", lambda _: None)("msg")]
    assert any(ev.HasField("electrode_state") and ev.electrode_state.drive_groups[0].electrodes[target] for ev in state)
    sim.advance(1002.0)  # move_time 0.3 s
    raw = call("get_scan_capacitance", [], 1002.0)["result"]["raw"]
    assert raw[target] > 500 and raw[drop] == 0, "the commanded move did not happen"
    assert sim.truth.activity and sim.truth.activity[-1]["what"].startswith("commanded: pins")
    call("set_electrode_pins", [[]], 1002.0)  # positional params, as upstream's pdclient sends them
    assert call("get_electrode_pins", [], 1002.0)["result"] == [False] * 128
    assert call("nope", [], 1002.0)["error"]["code"] == -32601
    assert call("set_electrode_pins", {"pins": [300]}, 1002.0)["error"]["code"] == -32602
    assert json.loads(rpc.handle(b"{not json", 1002.0))["error"]["code"] == -32700


def test_rpc_over_http_changes_the_streamed_electrode_state() -> None:
    cfg = SimConfig(scenario="idle", speed=5.0, camera=False, rpc_port=0)
    with SimServerThread(cfg) as server, connect(server.uri, max_size=None) as ws:
        assert server.rpc_url is not None
        methods = json.loads(urllib.request.urlopen(server.rpc_url + "/map", timeout=5).read())
        assert "set_electrode_pins" in methods
        body = json.dumps({"jsonrpc": "2.0", "method": "set_electrode_pins", "params": {"pins": [37]}, "id": 7})
        request = urllib.request.Request(server.rpc_url, body.encode(), {"Content-Type": "application/json"})
        assert json.loads(urllib.request.urlopen(request, timeout=5).read()) == {
            "jsonrpc": "2.0",
            "result": None,
            "id": 7,
        }
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            ev = events.decode(ws.recv(timeout=5))
            if ev.HasField("electrode_state") and ev.electrode_state.drive_groups[0].electrodes[37]:
                break
        else:
            raise AssertionError("no electrode_state with pin 37 driven")


# -- proposals ----------------------------------------------------------------------------------


def _segments(rules: Path, log: Path) -> tuple[list[tuple[float, float]], list[float]]:
    """The segments (start, end) the rule file keeps of a log, and the times of the firings in them."""
    pipeline = Pipeline(load_rules(rules), offline=True, telemetry=False, timelapse=False)
    segments: list[tuple[float, float]] = []
    firings: list[float] = []

    def take(outs) -> None:
        for o in outs:
            if isinstance(o, SegmentActions):
                for a in o.actions:
                    if isinstance(a, CloseSegment):
                        segments.append((a.start, a.end))
                        firings.extend(f.time for f in a.firings)

    for msg in FileSource(log):
        take(pipeline.message(msg))
    take(pipeline.finish())
    return segments, firings


def _covered(segments: list[tuple[float, float]], start: float, end: float) -> bool:
    """Whether the segments (back to back allowed, 0.5 s apart at most) hold all of [start, end]."""
    at = start
    for s, e in sorted(segments):
        if s <= at + 0.5 and e > at:
            at = e
    return at >= end


def test_proposal_from_known_moves_keeps_a_fresh_night_and_no_lighting(tmp_path: Path, capsys) -> None:
    rig = tmp_path / "rig.yaml"
    rig.write_text(CALIBRATION_RIG)
    new = tmp_path / "calibrated.yaml"
    code, out, err = calibrate(
        capsys, "--rules", str(REPO / "rules" / "motion.yaml"), "--sim", "--scenario", str(rig), "--drive",
        "--speed", "10", "--fps", "5", "--idle", "22s", "--write", str(new),
    )  # fmt: skip
    assert code == 0, err
    assert "electrodes switched off" in err and "NOT CONFIRMED" not in err
    found = PROPOSED.search(out)
    assert found, out
    noise, smallest, proposed = (float(x) for x in found.groups())
    assert 0 < noise < proposed < smallest, out  # the nudges and the flicker are noise, below it
    assert "flicker or a lighting change" in out and "4 move(s)" in out
    assert main(["check", str(new)]) == 0
    [rule] = load_rules(new).rules
    assert rule.options["threshold"] == pytest.approx(proposed, rel=0.01)
    assert "# calibrated: idle p99.9" in new.read_text()

    night = tmp_path / "night.bin"
    truth = write_sim_log(night, NIGHT, 220.0, fps=5.0, seed=5, text=True)
    segments, firings = _segments(new, night)
    pre_roll = rule.segments.pre_roll
    for window in truth["activity"]:
        # From a full pre-roll (the trigger's onset is up to a frame or two after the command) to the
        # end; a segment that starts where the previous one closed continues it.
        assert _covered(segments, window["start"] - pre_roll + 1.0, window["end"]), (
            f"activity at +{window['start'] - T0:.1f}s ({window['what']}) not kept from a full pre-roll: "
            f"{[(round(s - T0, 1), round(e - T0, 1)) for s, e in segments]}"
        )
    for s, e in segments:  # each segment holds a move: none is lighting or a nudge alone
        assert any(w["start"] <= e and s <= w["end"] for w in truth["activity"]), (s - T0, e - T0)
    # Nothing fires on the lighting steps, the flicker or the nudges (not even inside a move's post-roll):
    # every firing is a move, or the camera catching up with one (2 x background_time).
    settle = 2 * rule.make_trigger().background_time + 0.5
    stray = [t - T0 for t in firings if not any(w["start"] <= t <= w["end"] + settle for w in truth["activity"])]
    assert not stray, f"firings outside the moves at +{stray} s"


def test_subtle_scenario_with_a_protocol_step_puts_the_nudges_under_the_threshold(capsys) -> None:
    code, out, err = calibrate(
        capsys, "--rules", str(REPO / "rules" / "motion.yaml"), "--sim", "--scenario", "subtle",
        "--speed", "10", "--fps", "5", "--idle", "22s", "--moves", "4",
    )  # fmt: skip
    assert code == 0, err
    found = PROPOSED.search(out)
    assert found, out
    noise, smallest, proposed = (float(x) for x in found.groups())
    # The idle phase held the first nudge (0.55-0.9x the shipped 0.0003): the proposal is above it.
    assert 0.0001 < noise < proposed < smallest
    assert "Nothing written" in out


def test_a_region_off_the_board_warns_instead_of_proposing(tmp_path: Path, capsys) -> None:
    rules = tmp_path / "corner.yaml"
    rules.write_text(
        "rules:\n  - name: cam\n    trigger: motion\n    region: [0, 0, 40, 40]   # a corner with no electrodes\n"
    )
    new = tmp_path / "new.yaml"
    code, out, err = calibrate(
        capsys, "--rules", str(rules), "--sim", "--drive", "--speed", "10", "--fps", "5", "--idle", "8s",
        "--write", str(new),
    )  # fmt: skip
    assert code == 0, err
    assert "WARNING: cam: idle and moves do not separate" in out and "region" in out
    assert "proposed" not in out.split("Proposal:")[1].split("The stream:")[0]
    assert load_rules(new).rules[0].make_trigger().threshold == 0.0003  # unchanged


# -- --drive safety -------------------------------------------------------------------------------


def test_drive_refuses_without_a_rig_that_answers_json_rpc(capsys) -> None:
    code, _, err = calibrate(
        capsys, "--rules", str(REPO / "rules" / "missed-move.yaml"), "--uri", "ws://127.0.0.1:9",
        "--drive", "--rpc", "http://127.0.0.1:9/rpc",
    )  # fmt: skip
    assert code == 2
    assert err.startswith("autorec calibrate: --drive: refusing to drive: no JSON-RPC answer at http://127.0.0.1:9/rpc")
    assert len(err.strip().splitlines()) == 1
    code, _, err = calibrate(capsys, "--rules", str(REPO / "rules" / "missed-move.yaml"), "--log", "x", "--drive")
    assert code == 2 and "--drive needs a live rig" in err


class Watcher:
    """Every pin any electrode_state of the stream drives, and the last state's pins."""

    def __init__(self, uri: str) -> None:
        self.ever: set[int] = set()
        self.last: set[int] | None = None
        self._ws = connect(uri, max_size=None).__enter__()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            for message in self._ws:
                ev = events.decode(message)
                if ev.HasField("electrode_state"):
                    pins = {i for g in ev.electrode_state.drive_groups for i, on in enumerate(g.electrodes) if on}
                    self.ever |= pins
                    self.last = pins
        except Exception:  # closed at the end of the test
            pass

    def close(self) -> None:
        self._ws.close()
        self._thread.join(5)


def _rpc(url: str, method: str, **params):
    body = json.dumps({"jsonrpc": "2.0", "method": method, "params": params, "id": 1}).encode()
    request = urllib.request.Request(url, body, {"Content-Type": "application/json"})
    return json.loads(urllib.request.urlopen(request, timeout=5).read())["result"]


def test_drive_uses_only_the_named_pins_and_leaves_everything_off(capsys) -> None:
    cfg = SimConfig(scenario="idle", speed=10.0, camera=False, rpc_port=0)
    with SimServerThread(cfg) as server:
        watcher = Watcher(server.uri)
        board = server.sim.board
        drop = board.pin_at((2, 2))
        path = [board.pin_at((2, 3)), board.pin_at((2, 4))]  # down from the drop at (2, 2)
        rules = str(REPO / "rules" / "missed-move.yaml")
        common = ["--rules", rules, "--uri", server.uri, "--rpc", server.rpc_url, "--idle", "3s", "--drive"]
        code, out, err = calibrate(capsys, *common, "--pins", ",".join(map(str, [drop, *path])))
        assert code == 0, err
        assert "missed-move: drops arrived" in out
        wait_until(lambda: watcher.last == set(), 10, "the final electrode_state: all off")
        assert watcher.ever == {drop, *path}
        assert _rpc(server.rpc_url, "get_electrode_pins") == [False] * 128
        # Pins that leave no path: nothing is driven at all.
        before = set(watcher.ever)
        watcher.ever.clear()
        code, _, err = calibrate(capsys, *common, "--pins", f"{drop},{path[1]}")
        assert code == 2 and "no drop with 2 free electrode(s) in a line" in err
        assert watcher.ever == set() and before
        watcher.close()


def test_sigint_in_the_middle_of_a_move_switches_everything_off(tmp_path: Path) -> None:
    cfg = SimConfig(scenario="idle", speed=1.0, camera=False, rpc_port=0)
    with SimServerThread(cfg) as server:
        watcher = Watcher(server.uri)
        proc = subprocess.Popen(
            [sys.executable, "-m", "autorec", "calibrate", "--rules", str(REPO / "rules" / "missed-move.yaml"),
             "--uri", server.uri, "--rpc", server.rpc_url, "--idle", "1s", "--drive"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path,
        )  # fmt: skip
        try:
            wait_until(lambda: server.sim.driven, 20, "calibrate to drive an electrode")
            proc.send_signal(signal.SIGINT)
            out, err = proc.communicate(timeout=20)
        finally:
            if proc.poll() is None:
                proc.kill()
        assert proc.returncode == 1, err
        assert "interrupted (SIGINT)" in err and "electrodes switched off" in err and "NOT CONFIRMED" not in err
        assert server.sim.driven == frozenset()
        wait_until(lambda: watcher.last == set(), 10, "the final electrode_state: all off")
        assert _rpc(server.rpc_url, "get_electrode_pins") == [False] * 128
        assert "Proposal" not in out
        watcher.close()


def test_a_log_measures_idle_and_the_protocol_steps(tmp_path: Path, capsys) -> None:
    log = tmp_path / "steps.bin"
    steps = "board: misl_v4.1\ndrops: [[2, 2]]\ntimeline:\n  - idle: 30s\n  - burst: {moves: 4}\n  - idle: 30s\n"
    write_sim_log(log, steps, 70.0, fps=0, text=True)
    rules = str(REPO / "rules" / "missed-move.yaml")
    code, out, err = calibrate(capsys, "--rules", rules, "--log", str(log), "--idle", "20s")
    assert code == 0, err
    assert "4 move(s)" in out and "missed-move: drops arrived" in out
    # The same log with the protocol step inside the idle phase: said, and left out of the noise.
    code, out, err = calibrate(capsys, "--rules", rules, "--log", str(log), "--idle", "45s")
    assert code == 0, err
    assert "the electrodes changed 5 time(s) during the idle phase" in out
    assert "no drop moves were measured" in out and "0 move(s)" in out


def test_a_file_that_is_not_a_log_is_said_to_be_one_as_run_log_says_it(tmp_path: Path, capsys) -> None:
    """`calibrate --log` reads a log as `run --log` does: a file that is no log at all is named as such
    (it said 'holds no records'), and a log cut off or damaged midway is measured up to there, with a warning."""
    rules = str(REPO / "rules" / "missed-move.yaml")
    junk = tmp_path / "photo.jpg"
    junk.write_bytes(b"\xff\xd8\xff\xe0" + bytes(100))
    code, _out, err = calibrate(capsys, "--rules", rules, "--log", str(junk))
    assert code == 1 and err.strip() == f"autorec calibrate: {junk} is not an upstream log: " + (
        "record length 3774863615 exceeds the 67108864-byte cap"
    ), err
    log = tmp_path / "steps.bin"
    steps = "board: misl_v4.1\ndrops: [[2, 2]]\ntimeline:\n  - idle: 30s\n  - burst: {moves: 4}\n  - idle: 30s\n"
    write_sim_log(log, steps, 70.0, fps=0, text=True)
    with log.open("ab") as f:
        f.write(b"\xff\xff\xff\xff damage")
    code, out, err = calibrate(capsys, "--rules", rules, "--log", str(log), "--idle", "20s")
    assert code == 0 and "4 move(s)" in out, err
    assert f"{log}: stopped at offset " in err and "exceeds the 67108864-byte cap" in err, err


def test_a_drop_that_does_not_follow_ends_the_moves_with_everything_off(capsys) -> None:
    # The simulator's `stuck` fault: the next commanded move does not happen.
    code, out, err = calibrate(
        capsys, "--rules", str(REPO / "rules" / "missed-move.yaml"), "--sim", "--drive", "--speed", "10",
        "--no-camera", "--idle", "5s", "--faults", "stuck=3s",
    )  # fmt: skip
    assert code == 0, err
    assert "WARNING: the drop did not reach pin" in err and "the moves stopped there" in err
    assert re.search(r"drove pins \[\d+\] \(1 move\(s\)\); electrodes switched off\n", err), err
    assert "no arrivals measured" in out and "1 move(s) without an arrival" in out


def test_a_rig_on_this_computers_clock_is_measured_on_it(capsys) -> None:
    # A rig stamping with this computer's clock, 50 messages a second: calibrate reports its offset and
    # spread from the arrival times. Read at paced intervals (0.2 s) the frames arrived up to 0.2 s
    # late, and it said "0.10 s behind this computer (spread 0.19 s)".
    from tests.support.eventbuilder import hv
    from tests.support.wsfixtures import EventServer

    with EventServer() as server:
        done = threading.Event()

        def stream() -> None:
            while not done.is_set():
                server.broadcast([hv(time.time(), 100.0).SerializeToString()])
                time.sleep(0.02)  # the rig's own pace

        streamer = threading.Thread(target=stream)
        streamer.start()
        try:
            code, out, err = calibrate(
                capsys, "--rules", str(REPO / "rules" / "electrodes.yaml"), "--uri", server.uri,
                "--idle", "1s", "--activity", "1s",
            )  # fmt: skip
        finally:
            done.set()
            streamer.join()
    assert code == 0, err
    found = re.search(r"rig clock ([\d.]+) s (?:ahead of|behind) this computer \(spread ([\d.]+) s\)", out)
    assert found, out
    offset, spread = (float(x) for x in found.groups())
    assert offset < 0.05 and spread < 0.1, found.group(0)
