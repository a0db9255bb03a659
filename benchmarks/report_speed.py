"""`autorec report` on a big night: build time, file size, and first render in headless Chromium.

Generates (in a temp dir) an output directory shaped like a 12-hour night with
500 segments: each segment a real log of `--frames` simulated camera frames
(1024x768, ~110 KB, image_transform + image) plus telemetry, with a sidecar
(firings with motion evidence) and an index line; a telemetry log for the
whole 12 h at the rig's rates (temperature 1/s, hv 0.4/s, group capacitance
2/s, electrode_state 0.5/s, scan 4/s, active capacitance 5/s); a journal with
a start, a stats line a minute, two disconnections and a disk-floor alert.

Then it times, in this process:
- the baseline: one sequential read of every file the report reads (index,
  sidecars, telemetry) plus a header scan of every segment log;
- `build_report` (thumbnails included), and again without thumbnails;
- first render in headless Chromium (Debian's, via Selenium): from `get()` to
  Bokeh's document being idle with every card in the DOM.

    .venv/bin/python benchmarks/report_speed.py [--segments 500] [--hours 12] [--frames 40]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from autorec.io.logfile import LogWriter  # noqa: E402
from autorec.proto import PurpleDropEvent  # noqa: E402
from autorec.sim.camera import CameraRenderer  # noqa: E402


def stamp(e, kind: str, t: float) -> bytes:
    ts = getattr(e, kind).timestamp
    ts.seconds = int(t)
    ts.nanos = int((t - int(t)) * 1e9)
    return e.SerializeToString()


def build_night(out: Path, segments: int, hours: float, frames: int) -> None:
    t0 = 1_790_000_000.0
    span = hours * 3600
    cam = CameraRenderer(12, 8)
    pictures = [cam.frame([(2 + i % 5, 3, 0.4)]) for i in range(6)]
    tr = PurpleDropEvent()
    tr.image_transform.transform.extend(cam.transform)
    index = []
    for i in range(segments):
        start = t0 + (i + 0.2) * span / segments
        name = f"seg{i:04d}"
        with LogWriter(out / f"{name}.bin") as w:
            for k in range(frames):
                t = start + k * 0.1
                w.write(stamp(tr, "image_transform", t))
                img = PurpleDropEvent()
                img.image.image_data = pictures[k % len(pictures)]
                w.write(stamp(img, "image", t))
                if k % 2 == 0:
                    tc = PurpleDropEvent()
                    tc.temperature_control.temperatures.append(25.0)
                    w.write(stamp(tc, "temperature_control", t))
        end = start + frames * 0.1
        size = (out / f"{name}.bin").stat().st_size
        firings = [
            {
                "rule": "camera-motion",
                "time": start + 1 + j * 0.2,
                "evidence": {"score": 0.002, "bbox": [300, 400, 40, 60]},
            }
            for j in range(20)
        ]
        side = {
            "version": 1,
            "autorec": "0.1.0",
            "name": name,
            "path": f"{name}.bin",
            "start": start,
            "end": end,
            "rules": ["camera-motion"] + (["electrodes"] if i % 3 == 0 else []),
            "firings": firings,
            "records": frames * 2 + frames // 2,
            "bytes": size,
            "close_reason": "post_roll",
        }
        (out / f"{name}.json").write_text(json.dumps(side))
        line = {k: side[k] for k in ("name", "start", "end", "rules", "records", "bytes", "close_reason")}
        line.update(path=f"{name}.bin", sidecar=f"{name}.json", part=1, recovered=False, gaps=0, dropped=0)
        index.append(json.dumps(line))
    (out / "index.jsonl").write_text("\n".join(index) + "\n")
    # telemetry at the rig's rates
    rates = {
        "temperature_control": 1.0,
        "hv_regulator": 0.4,
        "group_capacitance": 2.0,
        "scan_capacitance": 4.0,
        "active_capacitance": 5.0,
    }
    msgs = {}
    for kind in rates:
        e = PurpleDropEvent()
        if kind == "temperature_control":
            e.temperature_control.temperatures.append(25.0)
        elif kind == "hv_regulator":
            e.hv_regulator.voltage = 100.0
        elif kind == "group_capacitance":
            e.group_capacitance.measurements.extend([1.0, 0.0, 0.0, 0.0, 0.0])
        elif kind == "scan_capacitance":
            for _ in range(128):
                e.scan_capacitance.measurements.add(capacitance=0.5)
        else:
            e.active_capacitance.measurement = 1.0
        msgs[kind] = e
    es = PurpleDropEvent()
    es.electrode_state.drive_groups.add().electrodes.extend([False] * 128)
    es_bytes = es.SerializeToString()
    tick = 0.2
    with LogWriter(out / "telemetry-20260921.bin") as w:
        n = int(span / tick)
        for k in range(n):
            t = t0 + k * tick
            for kind, rate in rates.items():
                for _ in range(int((k + 1) * tick * rate) - int(k * tick * rate)):  # `rate` a second on average
                    w.write(stamp(msgs[kind], kind, t))
            if k % 10 == 0:  # electrode_state 0.5/s, without a timestamp like pdserver's
                w.write(es_bytes)
    journal = [{"event": "start", "time": t0, "wall": t0, "disk_free": 50_000_000_000, "rules": "rules/motion.yaml"}]
    journal.append({"event": "connected", "time": t0 + 1, "wall": t0 + 1})
    for m in range(int(span / 60)):
        t = t0 + 60 * (m + 1)
        journal.append({"event": "stats", "time": t, "wall": t, "messages": m * 1000, "bytes_seen": m * 6_000_000})
    for k, frac in enumerate((0.3, 0.7)):
        t = t0 + span * frac
        journal.append({"event": "disconnected", "time": t, "wall": t})
        journal.append({"event": "connected", "time": t + 40, "wall": t + 40})
        if k == 0:
            journal.append(
                {
                    "event": "alert",
                    "time": t + 5,
                    "wall": t + 5,
                    "state": "raised",
                    "key": "disk_floor",
                    "message": "disk floor reached",
                    "since": t,
                }
            )
            journal.append(
                {
                    "event": "alert",
                    "time": t + 900,
                    "wall": t + 900,
                    "state": "cleared",
                    "key": "disk_floor",
                    "message": "disk space back",
                }
            )
    journal.sort(key=lambda e: e["time"])
    (out / "journal.jsonl").write_text("".join(json.dumps(e) + "\n" for e in journal))


def baseline_read(out: Path) -> float:
    t = time.perf_counter()
    for p in out.iterdir():
        if p.suffix in (".json", ".jsonl") or p.name.startswith("telemetry-"):
            with open(p, "rb") as f:
                while f.read(1 << 20):
                    pass
    return time.perf_counter() - t


def first_render(html: Path, cards: int) -> float | None:
    sys.path.insert(0, str(REPO))
    try:
        from tests.support.browser import chromium
    except ImportError:
        return None
    from tests.support.polling import wait_until

    with chromium(1300, 1000) as driver:
        t = time.perf_counter()
        driver.get(html.as_uri())
        wait_until(
            lambda: driver.execute_script(
                "return !!(window.Bokeh && Bokeh.documents && Bokeh.documents.length"
                " && Object.keys(Bokeh.index).length)"
                f" && document.querySelectorAll('.card').length === {cards}"
            ),
            30,
            "the report to render",
        )
        return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--segments", type=int, default=500)
    ap.add_argument("--hours", type=float, default=12)
    ap.add_argument("--frames", type=int, default=40, help="camera frames per segment (10 fps)")
    args = ap.parse_args()
    from autorec.report.page import build_report

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "night"
        out.mkdir()
        t = time.perf_counter()
        build_night(out, args.segments, args.hours, args.frames)
        total = sum(p.stat().st_size for p in out.iterdir())
        print(
            f"generated {args.segments} segments, {args.hours:g} h, {total / 1e9:.2f} GB"
            f" in {time.perf_counter() - t:.1f} s"
        )
        base = baseline_read(out)
        print(f"baseline: reading index, sidecars, journal and telemetry once: {base:.2f} s")
        r0 = build_report(out, Path(tmp) / "nothumbs.html", thumbnails=False)
        print(
            f"report without thumbnails: {r0.seconds:.2f} s, {r0.bytes / 1e6:.2f} MB"
            f" ({r0.seconds / base:.1f}x baseline)"
        )
        r = build_report(out, Path(tmp) / "report.html")
        print(
            f"report with thumbnails:    {r.seconds:.2f} s, {r.bytes / 1e6:.2f} MB ({r.seconds / base:.1f}x baseline)"
        )
        print(
            f"problems: {len(r.problems)}; peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB"
        )
        render = first_render(r.path, args.segments)
        if render is None:
            print("first render: skipped (selenium / Chromium not available)")
        else:
            print(f"first render in headless Chromium: {render:.2f} s")
        if os.environ.get("KEEP_REPORT"):
            import shutil

            shutil.copy(r.path, os.environ["KEEP_REPORT"])


if __name__ == "__main__":
    main()
