"""Benchmark: `autorec export --mcap` against reading the segment's `.bin` alone, and the size against it.

Builds a segment like a real one: the simulator's telemetry (demo scenario: capacitance scans,
group capacitance, high voltage, temperatures, electrode states) with a 1024x768 camera at 10 fps
whose frames are distinct JPEGs of the real board photo (a moving drop and sensor noise, as in
`video_export.py`, ~100-160 kB each: they do not compress), each after its `image_transform`.
Also a telemetry-only segment (a camera-less rig). In one process it measures, best of `--rounds`:
- a `LogReader` pass over the `.bin` (records only: the floor of any export),
- the same pass decoding each record (what every reader of events pays),
- the MCAP export (zstd chunks, CRCs, indexes, plot topics, annotations, fsync),
and prints MB/s of log, the export's time against the plain read, and the MCAP's size against
the `.bin` (goal: at most 1.05x).

Run:
    .venv/bin/python benchmarks/mcap_export.py [--seconds 30] [--rounds 3]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from autorec import events
from autorec.io.logfile import LogReader, LogWriter
from autorec.proto import PurpleDropEvent
from autorec.report import mcapexport
from autorec.sim.core import Simulation
from autorec.sim.scenario import load_scenario
from autorec.sim.stream import StreamEncoder

sys.path.insert(0, str(Path(__file__).resolve().parent))
from video_export import DEFAULT_PHOTO, make_frames  # the same camera frames as the video benchmark)

T0 = 1_790_000_000.0


def write_segment(path: Path, seconds: float, jpegs: list[bytes], fps: float = 10.0) -> int:
    """Telemetry of `seconds` of the simulator, with `jpegs` at `fps` interleaved by time. Records written."""
    sim = Simulation(load_scenario("demo"), seed=5, start_time=T0, duration=seconds, camera=False)
    encoder = StreamEncoder()
    telemetry = [
        (t, m) for t, item in sim.advance(T0 + seconds) for m in encoder.encode(t, item) if isinstance(m, bytes)
    ]
    frames: list[tuple[float, bytes]] = []
    for i, jpeg in enumerate(jpegs):
        t = T0 + i / fps
        tr = PurpleDropEvent()
        tr.image_transform.transform.extend([40.0, 0, 100, 0, 40.0, 80, 0, 0, 1])
        tr.image_transform.image_width, tr.image_transform.image_height = 1024, 768
        events.set_timestamp(tr, t)
        ev = PurpleDropEvent()
        ev.image.image_data = jpeg
        events.set_timestamp(ev, t)
        frames += [(t, tr.SerializeToString()), (t, ev.SerializeToString())]
    records = sorted(telemetry + frames, key=lambda r: r[0])
    with LogWriter(path, mode="overwrite") as w:
        for _, payload in records:
            w.write(payload)
    return len(records)


def best(fn, rounds: int) -> float:
    times = []
    for _ in range(rounds):
        began = time.perf_counter()
        fn()
        times.append(time.perf_counter() - began)
    return min(times)


def read_only(log: Path) -> None:
    for _ in LogReader(log).records():
        pass


def read_and_decode(log: Path) -> None:
    for record in LogReader(log).records():
        try:
            events.decode(record.payload)
        except events.DecodeError:
            pass


def measure(name: str, log: Path, records: int, rounds: int) -> None:
    size = log.stat().st_size
    out = log.with_suffix(".mcap")
    t_read = best(lambda: read_only(log), rounds)
    t_decode = best(lambda: read_and_decode(log), rounds)
    t_export = best(lambda: mcapexport.export(log, out), rounds)
    mb = size / 1e6
    ratio = out.stat().st_size / size
    print(f"{name}: {records} records, {mb:.1f} MB .bin")
    print(f"  LogReader pass           {t_read * 1000:8.1f} ms  {mb / t_read:8.1f} MB/s")
    print(f"  LogReader + decode       {t_decode * 1000:8.1f} ms  {mb / t_decode:8.1f} MB/s")
    print(
        f"  MCAP export              {t_export * 1000:8.1f} ms  {mb / t_export:8.1f} MB/s"
        f"  ({t_export / t_read:.1f}x the LogReader pass, {records / t_export:,.0f} records/s)"
    )
    print(f"  MCAP size                {out.stat().st_size / 1e6:8.2f} MB   {ratio:.3f}x the .bin (goal <= 1.05x)")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=30.0, help="segment length (camera at 10 fps)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--photo", type=Path, default=DEFAULT_PHOTO)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        jpegs = make_frames(args.photo, int(args.seconds * 10))
        n = write_segment(d / "camera.bin", args.seconds, jpegs)
        measure("camera segment (1024x768 JPEGs at 10 fps + telemetry)", d / "camera.bin", n, args.rounds)
        n = write_segment(d / "telemetry.bin", args.seconds * 10, [])
        measure("telemetry-only segment", d / "telemetry.bin", n, args.rounds)
    return 0


if __name__ == "__main__":
    sys.exit(main())
