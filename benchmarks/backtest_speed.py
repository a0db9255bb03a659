"""How fast does `autorec run --log` backtest rules over a long log?

Generates a long log from the built-in simulator (sans-I/O, no sockets: the
same events `autorec sim` would send, camera frames included), then times,
in this one process on the same file (the OS page cache warmed by the first pass):

- baseline: a plain `LogReader` pass over the records (what any reader pays);
- baseline + decode: `LogReader` plus `events.decode` of every record;
- backtest --dry-run: `FileSource` -> `Pipeline` (timeline, rule engine,
  segmenter) -> `DryRun`, i.e. `autorec run --log LOG --dry-run`;
- backtest writing: the same into a `SegmentWriter` in a temporary directory.

For each: wall seconds, MB/s, records/s, and x real time (the log's own time
span / wall time), plus the ratio to the plain LogReader baseline.

With a motion rule (`--rules rules/motion.yaml`), also the decode floor (issue 31, target 3):
- decode floor: a dry run whose motion triggers decode their own frames (one thread), with
  each `GrayDecoder.decode` of an analysed frame timed: the decode any motion backtest must
  do, divided over `--jobs` cores (default: the cores this process may use);
- backtest --dry-run --jobs N: as `run --log --dry-run --jobs N` (frames decoded ahead);
and the backtest's rate as a fraction of the floor's (target >= 0.8). Both run in this process
within the same minutes, so the ratio holds on a loaded machine where the seconds do not.

    .venv/bin/python benchmarks/backtest_speed.py [--minutes 20] [--fps 10] [--rules rules/electrodes.yaml]
    .venv/bin/python benchmarks/backtest_speed.py --minutes 2 --rules rules/motion.yaml [--jobs 2]
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
from pathlib import Path

from decodefloor import decode_floor

from autorec import events
from autorec.core.dryrun import DryRun
from autorec.core.pipeline import Pipeline
from autorec.io.logfile import LogReader, LogWriter
from autorec.io.writer import SegmentWriter
from autorec.rules import load_rules
from autorec.runs.backtest import BACKTEST_QUEUE_BYTES
from autorec.runs.dispatch import Dispatcher
from autorec.runs.filesource import FileSource, run_file
from autorec.runs.predecode import default_jobs, predecoded

REPO = Path(__file__).resolve().parent.parent


def generate(path: Path, minutes: float, fps: float, seed: int) -> tuple[int, float]:
    """Write `minutes` of simulated stream to `path`; returns (records, time span in s)."""
    from autorec.sim.core import Simulation
    from autorec.sim.scenario import load_scenario
    from autorec.sim.server import make_renderer
    from autorec.sim.stream import CLOSE, StreamEncoder

    scenario = load_scenario("demo")
    start = 1_700_000_000.0
    duration = minutes * 60
    sim = Simulation(scenario, seed=seed, start_time=start, duration=duration, fps=fps, camera=fps > 0)
    renderer = make_renderer(scenario.board.cols, scenario.board.rows, seed) if fps > 0 else None
    encoder = StreamEncoder(renderer, seed=seed)
    n = 0
    with LogWriter(path, mode="overwrite") as w:
        until = start
        while not sim.finished:
            until += 10.0
            for t, item in sim.advance(until):
                for m in encoder.encode(t, item):
                    if m is CLOSE or isinstance(m, str):
                        continue
                    w.write(m)
                    n += 1
    return n, duration


def timed(label: str, size: int, span: float, fn, baseline: float | None = None) -> float:
    t0 = time.perf_counter()
    records, extra = fn()
    wall = time.perf_counter() - t0
    mbs = size / wall / 1e6
    ratio = f"  {wall / baseline:5.2f}x baseline time" if baseline else ""
    print(
        f"{label:<26} {wall:7.2f} s  {mbs:8.1f} MB/s  {records / wall:10,.0f} rec/s  "
        f"{span / wall:8.0f}x real time{ratio}{extra}"
    )
    return wall


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=20.0, help="simulated minutes in the generated log")
    ap.add_argument("--fps", type=float, default=10.0, help="camera frames per second (0: no camera)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--rules", type=Path, default=REPO / "rules" / "electrodes.yaml")
    ap.add_argument("--log", type=Path, default=None, help="use this log instead of generating one")
    ap.add_argument("--jobs", type=int, default=None, help="cores for the decode (default: this process's)")
    args = ap.parse_args()
    ruleset = load_rules(args.rules)

    with tempfile.TemporaryDirectory(prefix="autorec-backtest-") as tmp:
        tmpdir = Path(tmp)
        if args.log is None:
            log_path = tmpdir / "long.bin"
            t0 = time.perf_counter()
            records, span = generate(log_path, args.minutes, args.fps, args.seed)
            print(
                f"generated {records} records, {log_path.stat().st_size / 1e6:.1f} MB, {span:.0f} s of stream "
                f"({args.fps:g} fps camera) in {time.perf_counter() - t0:.1f} s"
            )
        else:
            log_path = args.log
            times = [events.timestamp(ev) for _r, ev in LogReader(log_path).events()]
            times = [t for t in times if t is not None]
            span = times[-1] - times[0]
        size = log_path.stat().st_size
        print(f"rules: {args.rules.name} ({len(ruleset.rules)} rule(s))")

        def read_only():
            n = 0
            for _ in LogReader(log_path).records():
                n += 1
            return n, ""

        def read_decode():
            n = 0
            decode = events.decode
            for r in LogReader(log_path).records():
                decode(r.payload)
                n += 1
            return n, ""

        def dry_run():
            source = FileSource(log_path)
            sink = DryRun()
            pipe = Dispatcher(Pipeline(ruleset, offline=True, telemetry=False), sink)
            run_file(pipe, source)
            return source.records, f"  ({len(sink.segments)} segments, kept {100 * sink.kept_bytes / size:.1f} %)"

        def write_segments():
            out = tmpdir / "segments"
            source = FileSource(log_path)
            writer = SegmentWriter(
                out, ruleset.output.name, fsync=False, telemetry=False, block=True, queue_max_bytes=BACKTEST_QUEUE_BYTES
            ).start()
            pipe = Dispatcher(Pipeline(ruleset, offline=True, telemetry=False), writer)
            run_file(pipe, source)
            writer.close()
            return source.records, f"  ({writer.stats.segments} segments, {writer.stats.bytes / 1e6:.1f} MB written)"

        jobs = args.jobs if args.jobs is not None else default_jobs()
        decode_cpu = [0.0]

        def dry_run_floor():
            """A one-thread dry run whose motion triggers' decodes of their analysed frames are timed."""
            frames, cpu, records = decode_floor(ruleset, log_path)
            decode_cpu[0] = cpu
            floor = cpu / jobs
            return records, (
                f"  ({frames} analysed frames decoded in {cpu:.2f} CPU s: floor {floor:.2f} s "
                f"on {jobs} core(s), {span / floor:.0f}x real time)"
            )

        def dry_run_jobs():
            source = FileSource(log_path)
            sink = DryRun()
            core = Pipeline(ruleset, offline=True, telemetry=False)
            run_file(Dispatcher(core, sink), predecoded(source, core.engine, jobs))
            return source.records, f"  ({len(sink.segments)} segments)"

        read_only()  # warm the page cache so every pass reads from memory
        base = timed("LogReader pass (baseline)", size, span, read_only)
        timed("LogReader + decode", size, span, read_decode, base)
        timed("backtest --dry-run", size, span, dry_run, base)
        motion = any(r.trigger_name == "motion" for r in ruleset.rules)
        if motion:
            timed("dry run, decodes timed", size, span, dry_run_floor, base)
            wall = timed(f"backtest --dry-run --jobs {jobs}", size, span, dry_run_jobs, base)
            floor = decode_cpu[0] / jobs
            print(
                f"backtest rate / decode floor on {jobs} core(s): {floor / wall:.2f} (target >= 0.8; "
                f"{span / wall:.0f}x real time against {span / floor:.0f}x)"
            )
        timed("backtest writing segments", size, span, write_segments, base)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak RSS {rss:.0f} MB")


if __name__ == "__main__":
    main()
