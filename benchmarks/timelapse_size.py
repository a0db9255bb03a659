"""How big is the timelapse track? Bytes per simulated hour, against the telemetry track.

Runs the built-in demo scenario (1024x768 camera frames like the reference rig's,
~110 KB each) for `--hours` of simulated time through the real pipeline and segment
writer, offline, with `output.timelapse` at its default (30 s) and telemetry on, and
prints the bytes each daily track got per simulated hour and the frames kept.

    .venv/bin/python benchmarks/timelapse_size.py [--hours 1] [--fps 1] [--every 30s]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from autorec import events
from autorec.core.pipeline import Pipeline
from autorec.io.source import Message
from autorec.io.writer import SegmentWriter
from autorec.rules import parse_rules
from autorec.runs.dispatch import Dispatcher
from autorec.sim.camera import CameraRenderer
from autorec.sim.core import Simulation
from autorec.sim.scenario import load_scenario
from autorec.sim.stream import StreamEncoder
from autorec.units import format_size

START = 1_764_547_200.0  # 2025-12-01T00:00:00Z: one daily file per track


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--hours", type=float, default=1.0)
    ap.add_argument("--fps", type=float, default=1.0, help="camera rate of the simulated rig (the track keeps 1/30 s)")
    ap.add_argument("--every", default="30s", help="output.timelapse")
    args = ap.parse_args()
    scenario = load_scenario("demo")
    seconds = args.hours * 3600
    sim = Simulation(scenario, seed=1, start_time=START, duration=seconds, fps=args.fps)
    encoder = StreamEncoder(CameraRenderer(scenario.board.cols, scenario.board.rows, seed=1), seed=1)
    rules = parse_rules(
        f"output:\n  timelapse: {args.every}\nrules:\n  - name: e\n    trigger: interval\n    every: 1d\n"
    )
    began = time.perf_counter()
    camera_bytes = 0
    with tempfile.TemporaryDirectory() as tmp:
        writer = SegmentWriter(tmp, telemetry=True, timelapse=True, block=True, fsync=False).start()
        dispatcher = Dispatcher(Pipeline(rules, offline=True), writer)
        step = 60.0
        t = START
        while t < START + seconds:
            t += step
            for when, item in sim.advance(t):
                for payload in encoder.encode(when, item):
                    if isinstance(payload, bytes):
                        kind = events.peek_kind(payload)
                        if kind == "image":
                            camera_bytes += len(payload) + 4
                        dispatcher.message(Message(payload, 0.0, 0.0, kind))
        dispatcher.finish()
        writer.close(60)
        tl = sum(p.stat().st_size for p in Path(tmp).glob("timelapse-*.bin"))
        tm = sum(p.stat().st_size for p in Path(tmp).glob("telemetry-*.bin"))
    per_hour = 1 / args.hours
    print(f"demo scenario, {args.hours:g} simulated h, camera {args.fps:g} fps, timelapse every {args.every}")
    print(
        f"timelapse: {dispatcher.pipeline.timelapse.frames} frames, {format_size(tl)} ({format_size(tl * per_hour)}/h)"
    )
    print(f"telemetry: {format_size(tm)} ({format_size(tm * per_hour)}/h)")
    print(f"all camera frames: {format_size(camera_bytes * per_hour)}/h at {args.fps:g} fps")
    print(f"({time.perf_counter() - began:.1f} s)")


if __name__ == "__main__":
    main()
