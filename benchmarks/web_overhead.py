"""What the web UI costs a recording, and how fast it is for a person.

1. Recorder CPU: the same `autorec run --rules rules/motion.yaml --sim` (camera at
   10 fps, real time unless --speed) three times in a row, same machine, same
   minute: without `--http`; with `--http` and no browser; with `--http` and
   headless Chromium on the live page. CPU = user + system of the recorder
   process (os.wait4). Ratios against the first run.
2. Event latency in the third run: the live page's browser notes, for every
   `fired` event, its arrival time minus `seen` (the computer's clock when the
   recorder processed the firing; the same clock as the browser's on this
   machine). p50 / p95 / max.
3. Night page load: `autorec serve` on a generated night of 500 segments (see
   report_speed.py) and headless Chromium: time from get() to the charts
   rendered with every card, first (cold: the server renders the page) and
   second load (the server's cached page).

    .venv/bin/python benchmarks/web_overhead.py [--seconds 60] [--speed 1]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.support.browser import chromium  # noqa: E402
from tests.support.polling import wait_until  # noqa: E402


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_recorder(seconds: float, speed: float, http: bool, browser: bool, tmp: Path) -> tuple[float, list[float]]:
    out = tmp / f"out-{http}-{browser}"
    port = free_port()
    args = [sys.executable, "-m", "autorec", "run", "--rules", str(REPO / "rules" / "motion.yaml"), "--sim"]
    args += ["--speed", str(speed), "--duration", f"{seconds * speed}s", "--out", str(out)]
    if http:
        args += ["--http", f"127.0.0.1:{port}"]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    latencies: list[float] = []
    usage = None
    if browser:
        import urllib.request

        def up() -> bool:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/api/status", timeout=2).read()
                return True
            except OSError:
                return False

        wait_until(up, 30, "the web UI")
        with chromium(1300, 1000) as driver:
            driver.get(f"http://127.0.0.1:{port}/")
            driver.execute_script(
                "window.__lat = []; const es = new EventSource('/api/events');"
                "es.addEventListener('fired', (e) => window.__lat.push(Date.now() / 1000 - JSON.parse(e.data).seen));"
            )
            while True:
                pid, _, usage = os.wait4(proc.pid, os.WNOHANG)  # reaps it with its rusage once it ends
                if pid:
                    break
                time.sleep(1)  # a benchmark paces itself; tests poll
                latencies = driver.execute_script("return window.__lat")
    if usage is None:
        _, _, usage = os.wait4(proc.pid, 0)
    proc.returncode = 0  # reaped above: keep Popen from waiting for it again
    return usage.ru_utime + usage.ru_stime, latencies


def night_load(tmp: Path) -> tuple[float, float]:
    sys.path.insert(0, str(REPO / "benchmarks"))
    from report_speed import build_night

    night = tmp / "night"
    night.mkdir()
    build_night(night, 500, 12, 20)
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "autorec", "serve", str(night), "--http", f"127.0.0.1:{port}"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    times = []
    try:
        with chromium(1300, 1000) as driver:
            for _ in range(2):
                t = time.perf_counter()
                driver.get(f"http://127.0.0.1:{port}/night")
                wait_until(
                    lambda: driver.execute_script(
                        "return !!(window.Bokeh && Bokeh.index && Object.keys(Bokeh.index).length)"
                        " && document.querySelectorAll('.card').length === 500"
                    ),
                    60,
                    "the night page",
                )
                times.append(time.perf_counter() - t)
    finally:
        server.terminate()
        server.wait(10)
    return times[0], times[1]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=60)
    ap.add_argument("--speed", type=float, default=1)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        base, _ = run_recorder(args.seconds, args.speed, False, False, tmp_path)
        idle, _ = run_recorder(args.seconds, args.speed, True, False, tmp_path)
        watched, lat = run_recorder(args.seconds, args.speed, True, True, tmp_path)
        print(f"recorder CPU over {args.seconds:g} s at {args.speed:g}x:")
        print(f"  without --http:            {base:6.2f} s")
        print(f"  --http, no browser:        {idle:6.2f} s ({idle / base:.3f}x)")
        print(f"  --http, live page open:    {watched:6.2f} s ({watched / base:.3f}x)")
        if lat:
            lat_sorted = sorted(lat)
            p95 = lat_sorted[int(0.95 * (len(lat_sorted) - 1))]
            print(
                f"firing -> browser latency over {len(lat)} firings: p50 {statistics.median(lat) * 1000:.0f} ms, "
                f"p95 {p95 * 1000:.0f} ms, max {max(lat) * 1000:.0f} ms"
            )
        else:
            print("no firings seen by the browser")
        cold, warm = night_load(tmp_path)
        print(f"night page, 500 segments, in headless Chromium: first load {cold:.2f} s, again {warm:.2f} s")
        print(json.dumps({"base": base, "idle": idle, "watched": watched}))


if __name__ == "__main__":
    main()
