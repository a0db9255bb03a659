"""What hooks, alerts and a plugin trigger cost the recording path.

Measures, in one process:
- `HookRunner.submit` latency (the recorder's only cost of a hook): with no hook
  configured, and with a command hook while its single worker is busy with a
  hanging hook (the queue grows; submit must stay flat). p50 / p99 / max.
- `AlertMonitor.message` and `AlertReporter.message` per-message cost over the
  upstream log's kinds, in messages/s.
- The example plugin trigger (`capacitance_step`) in the rule engine over the
  upstream log, in events/s, against a baseline engine with one built-in
  `message` rule in the same process (ratio).

    .venv/bin/python benchmarks/hooks_alerts.py [--log ../shared/fixtures/upstream-sim.bin] [--repeat 200]

The example plugin is imported from examples/plugins/autorec-capstep (put on
sys.path here; tests install it with pip).
"""

from __future__ import annotations

import argparse
import sys
import textwrap
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
FIXTURES = REPO.parent / "shared" / "fixtures"
sys.path.insert(0, str(REPO / "examples" / "plugins" / "autorec-capstep"))

from autorec import events  # noqa: E402
from autorec.core.engine import RuleEngine  # noqa: E402
from autorec.io.logfile import LogReader  # noqa: E402
from autorec.rules import parse_rules  # noqa: E402
from autorec.services.alerts import AlertMonitor, AlertReporter  # noqa: E402
from autorec.services.hooks import HookRunner  # noqa: E402


def _percentiles(samples: list[float]) -> str:
    samples = sorted(samples)
    p = lambda q: samples[min(len(samples) - 1, int(q * len(samples)))] * 1e6  # noqa: E731
    return f"p50 {p(0.5):.1f} us, p99 {p(0.99):.1f} us, max {samples[-1] * 1e6:.1f} us"


def bench_submit(n: int) -> None:
    idle = HookRunner()
    samples = []
    for i in range(n):
        t0 = time.perf_counter()
        idle.submit("on_segment_close", path=f"{i}.bin", sidecar=f"{i}.json", rules="r", start=1.0, end=2.0)
        samples.append(time.perf_counter() - t0)
    idle.close(5)
    print(f"submit, no hook configured:            {_percentiles(samples)}  (n={n})")

    hang = [sys.executable, "-c", "import time; time.sleep(60)"]
    busy = HookRunner({"on_segment_close": hang}, timeout=60, workers=1, max_pending=n + 10)
    busy.submit("on_segment_close", path="first.bin", sidecar="first.json", rules="r", start=1.0, end=2.0)
    samples = []
    for i in range(n):
        t0 = time.perf_counter()
        busy.submit("on_segment_close", path=f"{i}.bin", sidecar=f"{i}.json", rules="r", start=1.0, end=2.0)
        samples.append(time.perf_counter() - t0)
    print(f"submit, command hook, worker hanging:  {_percentiles(samples)}  (n={n}, queue {busy.pending})")
    t0 = time.perf_counter()
    busy.close(0.0)
    print(f"close(grace=0) with a hanging hook and {n} queued: {time.perf_counter() - t0:.3f} s")


def bench_alerts(stream: list[tuple[float, str]], repeat: int) -> None:
    span = stream[-1][0] - stream[0][0] + 1.0
    for label, make in (
        ("AlertMonitor.message ", lambda: AlertMonitor()),
        ("AlertReporter.message", lambda: AlertReporter(AlertMonitor())),
    ):
        obj = make()
        obj.connected(stream[0][0])
        t0 = time.perf_counter()
        for r in range(repeat):
            offset = r * span
            for t, kind in stream:
                obj.message(t + offset, kind)
        dt = time.perf_counter() - t0
        print(f"{label}: {len(stream) * repeat / dt:,.0f} messages/s")


def bench_plugin(decoded: list[tuple[float, object]], repeat: int) -> None:
    baseline_rules = textwrap.dedent("""\
        rules:
          - name: any-group
            trigger: message
            kind: group_capacitance
        """)
    plugin_rules = textwrap.dedent("""\
        rules:
          - name: group0-step
            trigger: autorec_capstep:CapacitanceStep
            step: 10
        """)
    results = {}
    span = decoded[-1][0] - decoded[0][0] + 1.0
    for label, text in (("baseline (message rule)", baseline_rules), ("capacitance_step plugin", plugin_rules)):
        engine = RuleEngine(parse_rules(text, REPO / "rules.yaml"))
        fired = 0
        t0 = time.perf_counter()
        for r in range(repeat):
            offset = r * span
            for t, ev in decoded:
                fired += len(engine.feed(t + offset, ev))
        dt = time.perf_counter() - t0
        results[label] = len(decoded) * repeat / dt
        print(f"engine, {label}: {results[label]:,.0f} events/s ({fired} firings)")
    ratio = results["capacitance_step plugin"] / results["baseline (message rule)"]
    print(f"plugin / baseline speed: {ratio:.2f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--log", type=Path, default=FIXTURES / "upstream-sim.bin")
    ap.add_argument("--repeat", type=int, default=200)
    ap.add_argument("--submits", type=int, default=5000)
    args = ap.parse_args()
    decoded, now = [], None
    for _rec, ev in LogReader(args.log).events():
        now = events.timestamp(ev) or now
        if now is not None:
            decoded.append((now, ev))
    stream = [(t, events.kind(ev)) for t, ev in decoded]
    print(f"log: {args.log.name}, {len(decoded)} events, repeated {args.repeat}x")
    bench_submit(args.submits)
    bench_alerts(stream, args.repeat)
    bench_plugin(decoded, max(1, args.repeat // 4))


if __name__ == "__main__":
    main()
