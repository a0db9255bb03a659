"""Budgets and flap control: the sans-I/O keeper, and the pipeline holding budgets over simulated nights."""

from __future__ import annotations

from autorec.core.budget import Budget, BudgetKeeper, Change, FlapPolicy
from autorec.core.pipeline import Pipeline
from autorec.core.segmenter import CloseSegment, OpenSegment, Write
from autorec.core.streamitems import StreamListener
from autorec.io.source import Message
from autorec.rules import parse_rules
from autorec.runs.dispatch import Dispatcher
from autorec.services.alerts import AlertMonitor
from autorec.sim.camera import CameraRenderer
from autorec.sim.core import Simulation
from autorec.sim.scenario import parse_scenario
from autorec.sim.stream import StreamEncoder
from autorec.triggers.base import Firing
from tests.support import eventbuilder as build

T0 = 1_764_540_000.0  # a whole hour (UTC)


class Collect:
    """A sink that keeps every action (for sizes, gaps, reasons and firings)."""

    def __init__(self) -> None:
        self.actions: list = []

    def submit(self, actions) -> None:
        self.actions.extend(actions)

    def telemetry(self, time: float, payload: bytes) -> None:
        pass

    def close(self, timeout: float | None = None) -> bool:
        return True

    def closes(self) -> list[CloseSegment]:
        return [a for a in self.actions if isinstance(a, CloseSegment)]


def hv(t: float, voltage: float) -> Message:
    return build.message(build.hv(t, voltage).SerializeToString())


# -- the keeper alone ------------------------------------------------------------------------------


class BudgetChanges(StreamListener):
    """A listener that keeps the pipeline's budget and flapping changes."""

    def __init__(self, into: list[Change]) -> None:
        self.into = into

    def budget_changed(self, change: Change) -> None:
        self.into.append(change)


def test_segment_budget_blocks_then_refills_and_changes_come_once():
    keeper = BudgetKeeper(rules={"r": Budget(max_segments_per_hour=2)})
    f = [Firing("r", T0, {})]
    assert keeper.firings(T0, f) == (f, [])
    keeper.opened(T0, ["r"])
    keeper.opened(T0 + 60, ["r"])
    allowed, blocked = keeper.firings(T0 + 120, [Firing("r", T0 + 120, {})])
    assert allowed == [] and len(blocked) == 1
    changes = keeper.check(T0 + 120) + keeper.check(T0 + 121)
    assert [(c.state, c.key) for c in changes] == [("raised", "budget_exhausted:r")]
    assert "2 segments in the last hour" in changes[0].message
    assert keeper.check(T0 + 3600) == []  # the first segment's minute still counts
    (cleared,) = keeper.check(T0 + 3660)
    assert cleared.state == "cleared" and keeper.firings(T0 + 3660, f)[0] == f
    assert keeper.counters()["r.budget_blocked"] == 1


def test_overall_bytes_and_share_budgets():
    keeper = BudgetKeeper(Budget(max_bytes_per_hour=1000), volume_bytes=10_000)
    keeper.wrote(T0, 999, [])
    assert keeper.firings(T0, [Firing("x", T0, {})])[1] == []
    keeper.wrote(T0 + 1, 1, [])
    assert len(keeper.firings(T0 + 2, [Firing("x", T0 + 2, {})])[1]) == 1
    assert [c.key for c in keeper.check(T0 + 2)] == ["budget_exhausted:*"]
    share = BudgetKeeper(rules={"r": Budget(max_share=0.1)}, volume_bytes=10_000)
    share.wrote(T0, 1000, ["r"])
    assert share.firings(T0 + 7200, [Firing("r", T0 + 7200, {})])[0] == []  # 24 h window
    share.volume_bytes = None  # size of the disk unknown: not checked
    assert share.firings(T0, [Firing("r", T0, {})])[1] == []


def test_flap_rate_for_whole_minutes_and_thinning():
    keeper = BudgetKeeper(flaps={"r": FlapPolicy(flap_rate=10, flap_for=120, keep_fps=1)})
    changes: list[Change] = []
    t = T0
    while t < T0 + 200:  # 20 firings a minute
        keeper.firings(t, [Firing("r", t, {})])
        changes += keeper.check(t, ["r"])
        t += 3
    assert [(c.state, round(c.time - T0)) for c in changes] == [("raised", 120)]
    # While flapping: one camera frame a second, its transform decided alike.
    kept = [keeper.keep_frame(T0 + 200 + i * 0.1, k, ["r"]) for i in range(20) for k in ("image_transform", "image")]
    assert kept.count(True) == 4 and keeper.counters()["r.flap_thinned"] == 36
    assert keeper.keep_frame(T0, "image", ["other"])  # other rules' segments are not thinned
    assert keeper.check(T0 + 230) == []  # the last whole minute (120-180) still had 20 firings
    (calm,) = keeper.check(T0 + 250)  # 180-240: 7 firings (they stopped at 200)
    assert calm.state == "cleared" and not keeper.is_flapping("r")


def test_max_open_makes_a_rule_flap_and_alerts_come_once():
    keeper = BudgetKeeper(flaps={"r": FlapPolicy(max_open=600)})
    monitor = AlertMonitor()
    raised = []
    for i in range(0, 1300, 10):
        keeper.firings(T0 + i, [Firing("r", T0 + i, {})])
        for c in keeper.check(T0 + i, ["r"]):
            raised += monitor.budget_change(c)
    assert [(a.state, a.key, round(a.time - T0)) for a in raised] == [("raised", "flapping:r", 610)]
    assert "segments open for 10.2min" in raised[0].message or "without a break" in raised[0].message
    keeper.segment_closed(["r"], "post_roll")
    for i in range(1300, 1500, 10):
        for c in keeper.check(T0 + i, []):
            raised += monitor.budget_change(c)
    assert [a.state for a in raised] == ["raised", "cleared"]


# -- the pipeline over simulated nights ------------------------------------------------------------

NOISY = """
budget: {{max_segments_per_hour: 50}}
rules:
  - name: noisy
    trigger: message
    kind: hv_regulator
    where: {{voltage: 1.0}}
    pre_roll: 0s
    post_roll: 5s
    max_length: 2min
    max_bytes_per_hour: {budget}
    flap_rate: 30
    flap_for: 2min
"""


def test_a_flapping_rule_with_a_byte_budget_over_three_hours():
    """Fires every second for 100 minutes, then is quiet: budget spent twice, refilled, flapping raised and cleared."""
    budget = 40_000  # bytes an hour; the rule writes ~25 bytes a second while it fires
    sink = Collect()
    changes: list[Change] = []
    dispatcher = Dispatcher(
        Pipeline(parse_rules(NOISY.format(budget=budget)), offline=True), sink, listeners=[BudgetChanges(changes)]
    )
    for i in range(3 * 3600):
        t = T0 + i
        dispatcher.message(hv(t, 1.0 if i < 6000 else 2.0))
    dispatcher.finish()
    # Bytes written in every sliding hour stay within the budget plus one segment's post-roll.
    writes = [(a.time, len(a.payload) + 4) for a in sink.actions if isinstance(a, Write)]
    worst = 0
    j = 0
    window = 0
    for t, n in writes:
        window += n
        while writes[j][0] <= t - 3600:
            window -= writes[j][1]
            j += 1
        worst = max(worst, window)
    assert budget <= worst <= budget + 6 * 25 + 200, worst
    keys = [(c.state, c.key) for c in changes]
    exhausted = [s for s, k in keys if k == "budget_exhausted:noisy"]
    # Raised once until cleared (alternating), refilled only with 20 % room: a handful of times in 3 hours.
    assert exhausted == ["raised", "cleared"] * (len(exhausted) // 2) and 2 <= len(exhausted) <= 12, keys
    assert [s for s, k in keys if k == "flapping:noisy"] == ["raised", "cleared"], keys
    flap_raised = next(c.time for c in changes if c.key == "flapping:noisy")
    assert 120 <= flap_raised - T0 <= 185
    reasons = [c.reason for c in sink.closes()]
    assert reasons.count("flapping") == 1 and "post_roll" in reasons
    # Blocked firings are listed in the open segment (when there is one) and counted.
    assert dispatcher.pipeline.budget.counters()["noisy.budget_blocked"] > 1000


SPOT_NIGHT = """
drops: [[3, 3]]
rates: {scan_capacitance: 1, group_capacitance: 0, hv_regulator: 0.5, active_capacitance: 0,
        temperature_control: 0, duty_cycle_updated: 0}
repeat: false
timeline:
  - idle: 20s
  - flicker: {amplitude: 0.5, period: 4s, for: 10min, region: [0.05, 0.05, 0.12, 0.12]}
  - idle: 2min
"""
SPOT_RULES = """
budget: {max_bytes_per_hour: 6MB}
rules:
  - name: cam
    trigger: motion
    scale: 2
    detect_fps: 0
    post_roll: 10s
    pre_roll: 2s
    flap_rate: 20
    flap_for: 1min
    flap_keep_fps: 1
"""


def test_a_blinking_spot_defeats_lighting_rejection_and_is_thinned_and_budgeted():
    seconds = 20 + 600 + 120
    sim = Simulation(parse_scenario(SPOT_NIGHT, "spot.yaml"), seed=2, start_time=T0, duration=seconds, fps=4)
    encoder = StreamEncoder(CameraRenderer(14, 8, width=256, height=192, seed=2))
    sink = Collect()
    changes: list[Change] = []
    dispatcher = Dispatcher(Pipeline(parse_rules(SPOT_RULES), offline=True), sink, listeners=[BudgetChanges(changes)])
    for t, item in sim.advance(T0 + seconds):
        for payload in encoder.encode(t, item):
            if isinstance(payload, bytes):
                dispatcher.message(build.message(payload))
    dispatcher.finish()
    assert dispatcher.pipeline.engine.fired["cam"] > 100  # the spot is not a lighting change: motion fires all along
    keys = [(c.state, c.key) for c in changes]
    assert ("raised", "flapping:cam") in keys and ("raised", "budget_exhausted:*") in keys, keys
    assert keys.count(("raised", "budget_exhausted:*")) == 1
    closes = sink.closes()
    thinned = [g for c in closes for g in c.gaps if g.reason == "flap_thinned"]
    assert thinned and sum(g.records for g in thinned) > 1000
    # While flapping, at most ~1 frame a second is kept.
    flap_start = next(c.time for c in changes if c.key == "flapping:cam")
    images = [a.time for a in sink.actions if isinstance(a, Write) and a.kind == "image" and a.time > flap_start + 1]
    span = images[-1] - images[0]
    assert len(images) <= span * 1.05 + 2, (len(images), span)
    # The byte budget holds to within one segment.
    written = sum(len(a.payload) + 4 for a in sink.actions if isinstance(a, Write))
    biggest = max(sum(len(a.payload) + 4 for a in seg) for seg in _segments(sink.actions))
    assert written <= 6_000_000 + biggest, (written, biggest)
    assert [o.rules for o in sink.actions if isinstance(o, OpenSegment)]


def _segments(actions) -> list[list[Write]]:
    out: list[list[Write]] = []
    for a in actions:
        if isinstance(a, OpenSegment):
            out.append([])
        elif isinstance(a, Write) and out:
            out[-1].append(a)
    return out


def test_rule_file_budget_keys_are_checked(tmp_path):
    import pytest

    from autorec.rules import ConfigError, load_rules
    from tests.support.rulefiles import write_rules

    def load(extra: str):
        return load_rules(write_rules(tmp_path, "rules:\n  - name: r\n    trigger: electrodes\n" + extra))

    rule = load("    max_share: 5%\n    max_open: 10min\n    flap_keep_fps: 0.5\n").rules[0]
    assert rule.budget.max_share == 0.05 and rule.flap.max_open == 600 and rule.flap.keep_fps == 0.5
    for extra, key in (
        ("    max_share: 150%\n", "max_share"),
        ("    max_share: lots\n", "max_share"),
        ("    max_segments_per_hour: 0\n", "max_segments_per_hour"),
        ("    max_bytes_per_hour: -1MB\n", "max_bytes_per_hour"),
        ("    flap_rate: 10\n    flap_for: 90s\n", "flap_for"),
        ("    flap_keep_fps: 1\n", "flap_keep_fps"),
        ("    flap_rate: 10\n    flap_keep_fps: 0\n", "flap_keep_fps"),
    ):
        with pytest.raises(ConfigError, match=rf"rules.yaml:\d+: rules\[r\]\.{key}"):
            load(extra)
    with pytest.raises(ConfigError, match=r"budget.max_bytes_per_hor: unknown key"):
        load_rules(
            write_rules(tmp_path, "budget: {max_bytes_per_hor: 1GB}\nrules:\n  - {name: r, trigger: electrodes}\n")
        )


def test_check_shows_budgets_and_flap_settings(tmp_path, capsys):
    from autorec.cli import main
    from tests.support.rulefiles import write_rules

    path = write_rules(
        tmp_path,
        "budget: {max_bytes_per_hour: 2GB}\nrules:\n  - name: cam\n    trigger: electrodes\n"
        "    max_segments_per_hour: 20\n    flap_rate: 20\n    flap_keep_fps: 1\n",
    )
    assert main(["check", str(path)]) == 0
    out = capsys.readouterr().out
    assert "[max_segments_per_hour 20, flapping above 20/min for 5.0min, flap_keep_fps 1]" in out
    assert "  budget    max_bytes_per_hour 2.0GB" in out
