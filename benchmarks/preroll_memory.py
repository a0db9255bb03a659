"""Memory of `run` at 10 fps with a 256 MB pre-roll cap: RSS after warm-up, and bytes the pre-roll holds
against bytes received (does it hold the received frames themselves, or copies?).

    .venv/bin/python benchmarks/preroll_memory.py [--seconds 60] [--live-seconds 40]

1. In process: a simulated 10 fps rig (the `idle` scenario: nothing moves, so no segment
   opens and the pre-roll stays full) is fed as received messages through a `Pipeline`
   with rules/motion.yaml (pre_roll 10 s, pre_roll_max_bytes 256 MB). At the end it prints
   the payload bytes the pre-roll holds, the bytes received in the pre-roll's window,
   how many held payloads are the very objects received (identity: no copies), and the
   Python heap growth (tracemalloc) over an empty pipeline against the bytes held.
2. Live: `autorec run --rules rules/motion.yaml` against `autorec sim --scenario idle`
   (10 fps, real time) for `--live-seconds`: RSS every 5 s (warm-up: the first pre-roll).
"""

from __future__ import annotations

import argparse
import gc
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))

from live_cpu import AUTOREC, rss_mib, stop  # noqa: E402


def in_process(seconds: float) -> None:
    from autorec import events
    from autorec.core.dryrun import DryRun
    from autorec.core.pipeline import Pipeline
    from autorec.core.streamitems import Message
    from autorec.io.logfile import LogReader
    from autorec.rules import load_rules
    from autorec.runs.dispatch import Dispatcher

    sys.path.insert(0, str(REPO))
    from tests.support.simlog import write_sim_log

    with tempfile.TemporaryDirectory(prefix="preroll-mem-") as tmp:
        log = Path(tmp) / "idle.bin"
        write_sim_log(log, "idle", seconds, fps=10.0, seed=1)
        payloads = [r.payload for r in LogReader(log).records()]
    ruleset = load_rules(REPO / "rules" / "motion.yaml")
    gc.collect()
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    dispatcher = Dispatcher(Pipeline(ruleset, offline=True, telemetry=False), DryRun(say=lambda line: None))
    received: dict[int, tuple[float, int]] = {}  # id(payload) -> (stream time, size), of what was fed
    for payload in payloads:
        event = events.decode(payload)
        t = events.timestamp(event) or 0.0
        # As the websocket source hands them on: the payload object received, and its parsed event.
        dispatcher.message(Message(payload, t, 0.0, event.WhichOneof("msg"), event=event))
        received[id(payload)] = (t, len(payload))
    gc.collect()
    heap = tracemalloc.get_traced_memory()[0] - base
    tracemalloc.stop()
    ring = dispatcher.pipeline.segmenter._ring  # the benchmark looks inside; the pipeline has no public view of it
    held = list(ring)
    held_bytes = sum(len(e.payload) for e in held)
    same = sum(1 for e in held if id(e.payload) in received and received[id(e.payload)][1] == len(e.payload))
    first = ring.first_time or 0.0
    last = max(t for t, _ in received.values())
    window_bytes = sum(n for t, n in received.values() if t >= first)
    images = sum(1 for e in held if e.kind == "image")
    print(f"in process: {seconds:g} s of a 10 fps idle rig through rules/motion.yaml ({len(payloads)} messages)")
    print(
        f"  pre-roll holds {len(held)} messages ({images} frames), {held_bytes / 1e6:.1f} MB, "
        f"spanning {last - first:.1f} s (pre_roll + onset lag), cap {ring.max_bytes / 1e6:.0f} MB"
    )
    ratio = held_bytes / window_bytes
    print(f"  bytes received in that window: {window_bytes / 1e6:.1f} MB; held / received: {ratio:.3f}")
    print(f"  held payloads that are the received objects themselves (no copy): {same} of {len(held)}")
    print(
        f"  Python heap of the pipeline after the run (tracemalloc, received payloads excluded"
        f" as they are kept by this script): {heap / 1e6:.1f} MB"
    )


def live(seconds: float) -> None:
    sim = subprocess.Popen(
        [*AUTOREC, "sim", "--port", "0", "--fps", "10", "--seed", "1", "--scenario", "idle"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        line = sim.stdout.readline() if sim.stdout else ""
        uri = line.strip().rsplit(" ", 1)[-1]
        with tempfile.TemporaryDirectory(prefix="preroll-live-") as tmp:
            rules = REPO / "rules" / "motion.yaml"
            run = subprocess.Popen(
                [*AUTOREC, "run", "--rules", str(rules), "--uri", uri, "--out", str(Path(tmp) / "out")],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                cwd=tmp,
            )
            samples = []
            try:
                start = time.monotonic()
                while time.monotonic() - start < seconds:
                    time.sleep(5.0)  # benchmark pacing, not a test
                    if run.poll() is not None:
                        raise SystemExit(f"autorec run exited early ({run.returncode})")
                    samples.append((time.monotonic() - start, rss_mib(run.pid)))
            finally:
                stop(run)
    finally:
        stop(sim)
    print("live: autorec run --rules rules/motion.yaml on a 10 fps idle sim, RSS (MiB) every 5 s:")
    print("  " + ", ".join(f"{t:.0f}s {r:.0f}" for t, r in samples))
    after = [r for t, r in samples if t >= 20]
    if after:
        print(f"  after warm-up (>= 20 s): {min(after):.0f}-{max(after):.0f} MiB")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0, help="simulated seconds fed in process")
    parser.add_argument("--live-seconds", type=float, default=40.0, help="live run length (0: skip)")
    args = parser.parse_args()
    in_process(args.seconds)
    if args.live_seconds > 0:
        live(args.live_seconds)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
