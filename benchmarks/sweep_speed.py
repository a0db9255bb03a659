"""What does `autorec tune` cost: a sweep of 10 thresholds against one dry run?

Generates a simulated log (the demo scenario, camera frames included; sans-I/O, no
sockets), then times in this one process, on the same file (the page cache warmed by
a first plain read):

- baseline: one `run --log LOG --dry-run` (FileSource -> Pipeline -> DryRun) with the
  motion rule of rules/motion.yaml;
- sweep: `autorec.core.sweep.sweep` over the same log with 10 thresholds of that rule
  (the rule engine once, 10 segmenter lanes).

Each is run `--repeat` times, interleaved, and the best time counts (the machine is shared:
single runs vary by tens of percent). Prints both and the ratio sweep / dry run (the
issue's target: at most 1.2x).

    .venv/bin/python benchmarks/sweep_speed.py [--minutes 3] [--fps 10] [--lanes 10] [--repeat 3]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from autorec.core.dryrun import DryRun  # noqa: E402
from autorec.core.pipeline import Pipeline  # noqa: E402
from autorec.core.sweep import sweep  # noqa: E402
from autorec.io.logfile import LogReader  # noqa: E402
from autorec.rules import load_rules  # noqa: E402
from autorec.runs.dispatch import Dispatcher  # noqa: E402
from autorec.runs.filesource import FileSource, run_file  # noqa: E402
from tests.support.simlog import write_sim_log  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=3.0)
    ap.add_argument("--fps", type=float, default=10.0)
    ap.add_argument("--lanes", type=int, default=10)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    ruleset = load_rules(REPO / "rules" / "motion.yaml")
    thresholds = [0.0001 * (i + 1) for i in range(args.lanes)]
    with tempfile.TemporaryDirectory() as tmp:
        log = Path(tmp) / "night.bin"
        write_sim_log(log, "demo", args.minutes * 60, fps=args.fps)
        size = log.stat().st_size
        sum(1 for _ in LogReader(log))  # warm the page cache
        dry = swept = float("inf")
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            sink = DryRun()
            run_file(
                Dispatcher(Pipeline(ruleset, offline=True, telemetry=False), sink, score_sinks=[sink]), FileSource(log)
            )
            dry = min(dry, time.perf_counter() - t0)
            t0 = time.perf_counter()
            rows = sweep(ruleset, "camera-motion", thresholds, FileSource(log), size)
            swept = min(swept, time.perf_counter() - t0)
    print(f"log: {args.minutes:g} simulated min, {size / 1e6:.1f} MB, camera {args.fps:g} fps")
    print(f"best of {args.repeat} runs each")
    print(f"dry run (1 threshold):   {dry:6.2f} s  ({len(sink.segments)} segment(s))")
    print(f"sweep ({args.lanes} thresholds):   {swept:6.2f} s  ({[r.segments for r in rows]} segment(s))")
    print(f"ratio sweep / dry run:   {swept / dry:6.2f}x")


if __name__ == "__main__":
    main()
