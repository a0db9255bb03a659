"""How fast does the rule engine evaluate a stream? (backtesting and live headroom)

Feeds the upstream simulator log (decoded once, repeated with shifted times) through
- a baseline: only `StateTracker.update` (what any pipeline pays to know the state);
- `RuleEngine` with rules/electrodes.yaml (one trigger);
- `RuleEngine` with rules/overnight.yaml (six triggers of every built-in kind),
- `RuleEngine` with one `missed-move` rule (against electrodes: its cost per message),
and prints events/s for each, the ratio to the baseline in the same process, and
the time to load and validate each rule file. Decoding is excluded (measured by
the info benchmark); peak RSS is printed at the end.

    .venv/bin/python benchmarks/engine_speed.py [--repeat 40] [LOG]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import resource
import time
from pathlib import Path

from autorec import events
from autorec.core.engine import RuleEngine
from autorec.core.state import StateTracker
from autorec.io.logfile import LogReader
from autorec.rules import load_rules, parse_rules

REPO = Path(__file__).resolve().parent.parent
FIXTURE = REPO.parent / "shared" / "fixtures" / "upstream-sim.bin"


def timed_events(path: Path, repeat: int) -> list[tuple[float, object]]:
    base: list[tuple[float, object]] = []
    last = None
    for _rec, ev in LogReader(path).events():
        ts = events.timestamp(ev)
        last = ts if ts is not None else last
        if last is not None:
            base.append((last, ev))
    span = base[-1][0] - base[0][0] + 0.25
    return [(t + i * span, ev) for i in range(repeat) for t, ev in base]


def rate(label: str, stream, feed, baseline: float | None = None) -> float:
    start = time.perf_counter()
    fired = 0
    for t, ev in stream:
        fired += len(feed(t, ev) or ())
    elapsed = time.perf_counter() - start
    per_s = len(stream) / elapsed
    ratio = f"  {per_s / baseline:.2f}x baseline" if baseline else ""
    print(f"{label:<34} {per_s:>10,.0f} events/s  ({len(stream)} events, {fired} firings, {elapsed:.3f} s){ratio}")
    return per_s


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("log", nargs="?", type=Path, default=FIXTURE)
    ap.add_argument("--repeat", type=int, default=40, help="times the log is run through the engine back to back")
    args = ap.parse_args()
    stream = timed_events(args.log, args.repeat)
    print(f"{args.log.name} x{args.repeat}: {len(stream)} events, {stream[-1][0] - stream[0][0]:.0f} s of stream")
    for name in ("electrodes.yaml", "overnight.yaml"):
        start = time.perf_counter()
        for _ in range(20):
            load_rules(REPO / "rules" / name)
        print(f"load_rules({name}): {(time.perf_counter() - start) / 20 * 1000:.2f} ms")
    state = StateTracker()
    base = rate("baseline: StateTracker.update", stream, lambda t, ev: state.update(t, ev) and None)
    per_s: dict[str, float] = {}
    for name in ("electrodes.yaml", "overnight.yaml"):
        engine = RuleEngine(load_rules(REPO / "rules" / name))
        per_s[name] = rate(f"RuleEngine {name}", stream, engine.feed, base)
    engine = RuleEngine(parse_rules("rules:\n  - name: mm\n    trigger: missed-move\n"))
    per_s["missed-move"] = rate("RuleEngine missed-move", stream, engine.feed, base)
    # Cost per message of one rule beyond the state tracking every engine pays. The machine may be shared:
    # best of three fresh runs each, interleaved, so that a busy moment does not land on one side only.
    best = {"base": 0.0, "electrodes.yaml": 0.0, "missed-move": 0.0}
    quiet = io.StringIO()
    with contextlib.redirect_stdout(quiet):
        for _ in range(3):
            tracker = StateTracker()
            best["base"] = max(best["base"], rate("", stream, lambda t, ev, s=tracker: s.update(t, ev) and None))
            for key, text in (("electrodes.yaml", "trigger: electrodes"), ("missed-move", "trigger: missed-move")):
                eng = RuleEngine(parse_rules(f"rules:\n  - name: r\n    {text}\n"))
                best[key] = max(best[key], rate("", stream, eng.feed))
    base = best.pop("base")
    cost = {k: (1 / v - 1 / base) * 1e6 for k, v in best.items()}
    print(
        f"best of 3: state tracking alone {1e6 / base:.1f} us/message; "
        f"electrodes rule {1e6 / best['electrodes.yaml']:.1f} us ({cost['electrodes.yaml']:+.1f}), "
        f"missed-move rule {1e6 / best['missed-move']:.1f} us"
        f" ({cost['missed-move']:+.1f}); missed-move runs at {best['missed-move'] / best['electrodes.yaml']:.2f}x"
        " the electrodes rule's rate (a difference below ~2 us is noise)"
    )
    print(f"missed-move counters: {engine.triggers['mm'].counters}")
    print(f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")


if __name__ == "__main__":
    main()
