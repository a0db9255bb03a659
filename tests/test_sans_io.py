"""The core is sans-I/O: its modules import no networking, and running them touches no file and no clock.

The state machines (timeline and clock rule, pre-roll, segmenter, rule engine and triggers, stream
state, scores, alerts' monitor, the simulation core) are imported in a fresh interpreter where
importing `socket`, `asyncio`, `ssl`, `selectors`, `subprocess` or `websockets` fails, then fed a
simulated stream with `open`, `os.open`, `time.time`, `time.monotonic` and `time.sleep` replaced
by functions that raise: first the engine and segmenter by hand, then the `Pipeline` itself
(offline; its outputs collected). Both must give the same segment openings, so the check cannot
pass by doing nothing.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

# Every module of autorec/core, every trigger, and the simulation core. Not the plugin registry: it
# finds installed plugins in the environment's package metadata, an edge (importlib.metadata).
CORE_FILES = sorted((REPO / "autorec" / "core").glob("*.py")) + sorted((REPO / "autorec" / "triggers").glob("*.py"))
CORE = (
    *(f"autorec.{p.parent.name}.{p.stem}" for p in CORE_FILES if p.stem not in ("__init__", "registry")),
    "autorec.sim.core",
    "autorec.sim.rpc",
    "autorec.calibration.measure",
    "autorec.calibration.proposal",
)

SCRIPT = textwrap.dedent(
    """
    import builtins, importlib, importlib.abc, io, os, sys, time

    BLOCKED = {"socket", "_socket", "asyncio", "ssl", "selectors", "subprocess", "websockets"}

    class Block(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in BLOCKED:
                raise ImportError(f"sans-I/O core imported {name}")
            return None

    # Modules already loaded by the interpreter's start-up are forgotten so that a core import of
    # them goes through the finder.
    for name in list(sys.modules):
        if name.split(".")[0] in BLOCKED:
            del sys.modules[name]
    sys.meta_path.insert(0, Block())
    for module in MODULES:
        importlib.import_module(module)

    # The rule model is built directly: reading YAML is the loader's job (autorec.rules, an edge).
    from pathlib import Path
    from autorec.core.ruleset import Rule, RuleSet
    from autorec.core.segmenter import SegmentPolicy
    from autorec.triggers.electrodes import ElectrodesTrigger
    from autorec.triggers.movement import MovementTrigger
    from autorec.triggers.threshold import ThresholdTrigger
    policy = SegmentPolicy(pre_roll=5.0, post_roll=5.0)
    ruleset = RuleSet(
        path=Path("rules.yaml"),
        rules=[
            Rule("electrodes", ElectrodesTrigger, "electrodes", {}, policy),
            Rule("moved", MovementTrigger, "movement", {}, policy),
            Rule("hot", ThresholdTrigger, "threshold", {"field": "temperature_control.temperatures[0]", "above": 40.0},
                 policy),
        ],
    )
    assert "autorec.rules" not in sys.modules, "the core imports the rule-file loader"
    from autorec import events
    from autorec.core.engine import RuleEngine
    from autorec.core.segmenter import Segmenter, OpenSegment, Write, CloseSegment
    from autorec.core.timeline import Timeline
    from autorec.sim.core import Simulation
    from autorec.sim.scenario import load_scenario
    from autorec.sim.stream import StreamEncoder
    scenario = load_scenario("demo")

    def forbidden(*a, **k):
        raise AssertionError("the core did I/O or read a clock")

    builtins.open = forbidden
    io.open = forbidden
    os.open = forbidden
    time.time = time.monotonic = time.sleep = time.perf_counter = forbidden

    t0 = 1_790_000_000.0
    sim = Simulation(scenario, seed=2, start_time=t0, duration=90.0, camera=False)
    encoder = StreamEncoder()
    engine = RuleEngine(ruleset)
    segmenter = Segmenter({r.name: r.segments for r in ruleset.rules}, ruleset.segments)
    timeline = Timeline()
    counts = {"open": 0, "write": 0, "close": 0}
    for t, item in sim.advance(t0 + 90.0):
        for payload in encoder.encode(t, item):
            if not isinstance(payload, bytes):
                continue
            event = events.decode(payload)
            for when, (p, e) in timeline.push(events.timestamp(event), None, (payload, event)):
                firings = engine.feed(when, e)
                for action in segmenter.feed(when, p, e.WhichOneof("msg"), firings):
                    kind = "open" if isinstance(action, OpenSegment) else "close"
                    counts["write" if isinstance(action, Write) else kind] += 1
    for action in segmenter.close(t0 + 90.0):
        counts["close"] += 1
    # the pipeline itself, offline: it returns what it decided, and nothing else happens
    from autorec.core.pipeline import Pipeline, SegmentActions, TelemetryRecord
    from tests.support.eventbuilder import message

    pipeline = Pipeline(ruleset, offline=True, telemetry=True, timelapse=False)
    outputs = []
    sim = Simulation(scenario, seed=2, start_time=t0, duration=90.0, camera=False)
    for t, item in sim.advance(t0 + 90.0):
        for payload in encoder.encode(t, item):
            if isinstance(payload, bytes):
                outputs += pipeline.receive(message(payload))

    outputs += pipeline.finish()
    actions = [a for out in outputs if isinstance(out, SegmentActions) for a in out.actions]
    telemetry_records = sum(isinstance(out, TelemetryRecord) for out in outputs)
    opened = sum(isinstance(a, OpenSegment) for a in actions)
    assert opened == counts["open"] and telemetry_records > 100, (opened, counts, telemetry_records)
    print(counts)
    assert counts["open"] >= 1 and counts["write"] > 100 and counts["close"] == counts["open"], counts
    print("sans-I/O ok")
    """
)


def test_core_imports_no_networking_and_runs_without_files_or_clocks():
    code = f"MODULES = {CORE!r}\n" + SCRIPT
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr + proc.stdout
    assert "sans-I/O ok" in proc.stdout


def test_the_check_itself_catches_a_module_that_imports_networking():
    code = "MODULES = ('autorec.io.source',)\n" + SCRIPT
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0 and "sans-I/O core imported" in proc.stderr


def test_core_imports_no_module_of_the_edges():
    """The layers point inwards: nothing in autorec/core imports from io/, services/, media/, report/ or web/."""
    import re

    edges = re.compile(r"^\s*(from|import) autorec\.(io|services|media|report|web)\b", re.M)
    offenders = [
        f"{path.relative_to(REPO)}:{text.count(chr(10), 0, m.start()) + 1}"
        for path in sorted((REPO / "autorec" / "core").glob("*.py"))
        for text in [path.read_text()]
        for m in edges.finditer(text)
    ]
    assert offenders == []
