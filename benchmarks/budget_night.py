"""A flapping rule against a budget: bytes written over a simulated night, with and without control.

One pass of the simulator feeds two pipelines side by side (dry runs: sizes are counted, nothing
is written): both run a `motion` rule on a camera view where a small spot blinks all night (a
reflection, an indicator lamp): it defeats lighting rejection, so the rule fires without end.
- baseline: no budget, no flap control;
- controlled: `budget: max_bytes_per_hour` overall, and on the rule `flap_rate`/`flap_for`
  (flapping) with `flap_keep_fps: 1` (thinning).
Prints the bytes kept every 5 simulated minutes against the budget, the alerts, and the totals.

    .venv/bin/python benchmarks/budget_night.py [--hours 1] [--fps 4] [--budget 200MB]
"""

from __future__ import annotations

import argparse
import time

from autorec import events
from autorec.core.pipeline import Pipeline
from autorec.core.segmenter import CloseSegment, Write
from autorec.io.source import Message
from autorec.rules import parse_rules
from autorec.runs.dispatch import Dispatcher
from autorec.sim.camera import CameraRenderer
from autorec.sim.core import Simulation
from autorec.sim.scenario import parse_scenario
from autorec.sim.stream import StreamEncoder
from autorec.units import format_size, parse_size

START = 1_764_547_200.0  # 2025-12-01T00:00:00Z
SCENARIO = """
drops: [[3, 3], [9, 5]]
timeline:
  - idle: 30s
  - flicker: {{amplitude: 0.5, period: 4s, for: {seconds}s, region: [0.06, 0.06, 0.1, 0.1]}}
"""
RULE = """
  - name: cam
    trigger: motion
    pre_roll: 5s
    post_roll: 20s
"""
CONTROL = """
    flap_rate: 20
    flap_for: 2min
    flap_keep_fps: 1
"""


class Counter:
    """A dry-run sink that counts bytes per time bucket and remembers close reasons."""

    def __init__(self, bucket: float) -> None:
        self.bucket = bucket
        self.bytes: dict[int, int] = {}
        self.closes: list[str] = []
        self.thinned = 0

    def submit(self, actions) -> None:
        for a in actions:
            if isinstance(a, Write):
                k = int((a.time - START) // self.bucket)
                self.bytes[k] = self.bytes.get(k, 0) + len(a.payload) + 4
            elif isinstance(a, CloseSegment):
                self.closes.append(a.reason)
                self.thinned += sum(g.records for g in a.gaps if g.reason == "flap_thinned")

    def telemetry(self, time: float, payload: bytes) -> None:
        pass

    def close(self, timeout: float | None = None) -> bool:
        return True


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--hours", type=float, default=1.0)
    ap.add_argument("--fps", type=float, default=4.0)
    ap.add_argument("--budget", default="200MB", help="overall max_bytes_per_hour")
    args = ap.parse_args()
    seconds = args.hours * 3600
    budget = parse_size(args.budget)
    scenario = parse_scenario(SCENARIO.format(seconds=seconds), "blinking-spot.yaml")
    sim = Simulation(scenario, seed=4, start_time=START, duration=seconds, fps=args.fps)
    encoder = StreamEncoder(CameraRenderer(scenario.board.cols, scenario.board.rows, seed=4, cache_size=1024), seed=4)
    bucket = 300.0
    base_sink, ctl_sink = Counter(bucket), Counter(bucket)
    base = Dispatcher(Pipeline(parse_rules("rules:" + RULE), offline=True), base_sink)
    ctl = Dispatcher(
        Pipeline(parse_rules(f"budget: {{max_bytes_per_hour: {args.budget}}}\nrules:" + RULE + CONTROL), offline=True),
        ctl_sink,
    )
    alerts: list = []
    ctl.on_budget_change = alerts.append
    began = time.perf_counter()
    t = START
    while t < START + seconds:
        t += 60.0
        for when, item in sim.advance(t):
            for payload in encoder.encode(when, item):
                if isinstance(payload, bytes):
                    msg = Message(payload, 0.0, 0.0, events.peek_kind(payload))
                    base.message(msg)
                    ctl.message(msg)
    base.finish()
    ctl.finish()
    print(
        f"{args.hours:g} simulated h, camera {args.fps:g} fps 1024x768, a spot blinking all night; "
        f"budget {args.budget}/h"
    )
    print(f"{'minute':>6} {'baseline':>10} {'controlled':>11} {'cumulative':>11} {'budget':>8}")
    cum = 0
    for k in range(int(seconds // bucket) + 1):
        b, c = base_sink.bytes.get(k, 0), ctl_sink.bytes.get(k, 0)
        cum += c
        print(
            f"{k * bucket / 60:6.0f} {format_size(b):>10} {format_size(c):>11} "
            f"{format_size(cum):>11} {format_size(budget):>8}"
        )
    total_b, total_c = sum(base_sink.bytes.values()), sum(ctl_sink.bytes.values())
    print(f"baseline:   {format_size(total_b)} in {len(base_sink.closes)} segment(s)")
    print(
        f"controlled: {format_size(total_c)} in {len(ctl_sink.closes)} segment(s) "
        f"({', '.join(sorted(set(ctl_sink.closes)))}), {ctl_sink.thinned} camera records thinned, "
        f"{ctl.budget.counters()['budget_blocked']} firings blocked"
    )
    for a in alerts:
        print(f"  {(a.time - START) / 60:6.1f} min  {a.state:<7} {a.key}: {a.message}")
    print(f"motion firings: {ctl.engine.fired['cam']}  ({time.perf_counter() - began:.0f} s)")


if __name__ == "__main__":
    main()
