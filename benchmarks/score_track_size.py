"""Bytes of the score track per rule per simulated hour (scores-YYYYMMDD.csv.gz).

Runs 3 simulated minutes of the demo scenario (camera at 10 fps) through the motion,
movement and threshold rules, takes each rule's real per-second maxima, repeats them to one
hour, and writes them as a live recorder does (one gzip member per minute). Prints bytes per
rule per hour, and for comparison the same rows as plain CSV and as JSON lines.

    .venv/bin/python benchmarks/score_track_size.py
"""

from __future__ import annotations

import gzip
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from autorec.core.dryrun import DryRun
from autorec.core.pipeline import Pipeline
from autorec.io.scorelog import HEADER
from autorec.rules import parse_rules
from autorec.runs.dispatch import Dispatcher
from autorec.runs.filesource import FileSource, run_file
from tests.support.simlog import write_sim_log

RULES = """rules:
  - {name: camera-motion, trigger: motion}
  - {name: drops-moved, trigger: movement}
  - {name: too-hot, trigger: threshold, field: "temperature_control.temperatures[0]", above: 45}
"""


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        log = Path(tmp) / "demo.bin"
        write_sim_log(log, "demo", 180.0, fps=10.0)
        sink = DryRun()
        run_file(
            Dispatcher(Pipeline(parse_rules(RULES, "bench.yaml"), offline=True), sink, score_sinks=[sink]),
            FileSource(log),
        )
    hour = 3600
    for rule, maxima in sink.score_maxima.items():
        th = sink.thresholds[rule]
        values = (maxima * (hour // len(maxima) + 1))[:hour]
        lines = [f"{1_790_000_000 + i},{rule},{v:.4g},{th:.6g}\n" for i, v in enumerate(values)]
        gz = sum(len(gzip.compress("".join(lines[i : i + 60]).encode(), mtime=0)) for i in range(0, hour, 60))
        plain = len(HEADER) + sum(map(len, lines))
        jsonl = sum(
            len(json.dumps({"time": 1_790_000_000 + i, "rule": rule, "score": float(f"{v:.4g}"), "threshold": th})) + 1
            for i, v in enumerate(values)
        )
        print(
            f"{rule:14s} {gz / 1000:6.1f} kB/h gzip CSV (one member a minute)   "
            f"{plain / 1000:6.1f} kB/h plain CSV   {jsonl / 1000:6.1f} kB/h JSON lines   "
            f"ratio plain/gzip {plain / gz:.1f}x"
        )


if __name__ == "__main__":
    main()
