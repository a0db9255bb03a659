"""What MQTT events and Prometheus metrics cost a recorder: CPU with them on against off, side by side.

    .venv/bin/python benchmarks/fleet_overhead.py [--seconds 60] [--rules rules/electrodes.yaml]

Serves `autorec sim` (its own process, 10 fps camera, real time) and a Mosquitto broker
(Debian's `mosquitto`, on a free 127.0.0.1 port), and records the same stream over the same
minute with two `autorec run` processes:
- off: `autorec run --rules FILE`;
- on: the same with `--mqtt mqtt://127.0.0.1:PORT --metrics PORT`, its `/metrics` scraped every
  `--scrape` seconds (15, Prometheus' usual interval) and a subscriber taking every message.
Prints each recorder's CPU seconds (user + system, all threads, from /proc) over the window,
the MQTT messages and scrapes it served, and the ratio on / off (issue 27's goal: <= 1.10).
`--rules rules/electrodes.yaml` (the default) is the cheap pipeline, where the same overhead
weighs most; `rules/motion.yaml` adds the camera analysis. `--same` runs both without MQTT and
metrics: the ratio then is the noise of the comparison itself (two equal recorders side by side).
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

from live_cpu import cpu_seconds, start_sim  # the same simulator and CPU reading as live_cpu.py

REPO = Path(__file__).resolve().parent.parent
AUTOREC = [sys.executable, "-m", "autorec"]
MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {what}")
        time.sleep(0.05)


def accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


def scrape(port: int) -> dict[str, float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        text = response.read().decode()
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#") and "{" not in line:
            name, _, value = line.rpartition(" ")
            out[name] = float(value)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=60.0, help="measured window (default 60)")
    ap.add_argument("--warmup", type=float, default=5.0, help="seconds before the window (default 5)")
    ap.add_argument("--scrape", type=float, default=15.0, help="seconds between scrapes (default 15)")
    ap.add_argument("--rules", default=str(REPO / "rules" / "electrodes.yaml"))
    ap.add_argument("--same", action="store_true", help="both without MQTT and metrics: the noise")
    args = ap.parse_args()
    if not os.path.exists(MOSQUITTO):
        raise SystemExit(f"needs mosquitto ({MOSQUITTO}): apt-get install mosquitto")
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    tmp = Path(tempfile.mkdtemp(prefix="autorec-fleet-"))
    procs: list[subprocess.Popen] = []
    try:
        port = free_port()
        (tmp / "mosquitto.conf").write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n")
        broker = subprocess.Popen(
            [MOSQUITTO, "-c", str(tmp / "mosquitto.conf")], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        procs.append(broker)
        wait_for(lambda: accepts(port), 10, "mosquitto")
        # a subscriber taking everything, as a lab's home automation would
        sub = subprocess.Popen(
            [sys.executable, "-c", SUBSCRIBER, str(port)], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
        )
        procs.append(sub)
        sim, uri = start_sim()
        procs.append(sim)
        metrics = free_port()
        base = [*AUTOREC, "run", "--rules", args.rules, "--uri", uri, "--heartbeat", "0"]
        off = subprocess.Popen(
            [*base, "--out", str(tmp / "off")], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        fleet = [] if args.same else ["--mqtt", f"mqtt://127.0.0.1:{port}", "--metrics", str(metrics)]
        on = subprocess.Popen(
            [*base, "--out", str(tmp / "on"), *fleet],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        procs += [off, on]
        if not args.same:
            wait_for(lambda: accepts(metrics), 30, "the metrics endpoint")
        time.sleep(args.warmup)  # both connected and past their imports: the window measures recording
        scrapes: list[dict[str, float]] = []
        stop = threading.Event()

        def scraper() -> None:
            while not stop.wait(0 if not scrapes else args.scrape):
                scrapes.append(scrape(metrics))

        t = threading.Thread(target=scraper, daemon=True)
        c_off, c_on, t0 = cpu_seconds(off.pid), cpu_seconds(on.pid), time.monotonic()
        if not args.same:
            t.start()
        time.sleep(args.seconds)  # the measured window (a benchmark, not a test)
        d_off, d_on = cpu_seconds(off.pid) - c_off, cpu_seconds(on.pid) - c_on
        wall = time.monotonic() - t0
        stop.set()
        if not args.same:
            t.join(15)
        last = {} if args.same else scrape(metrics)
        second = "run (the same, --same)" if args.same else "run --mqtt --metrics, scraped"
        print(f"window {wall:.1f} s, {args.rules}, 10 fps simulated rig, same stream for both")
        print(f"  run (no MQTT, no metrics)          {d_off:6.2f} CPU s  ({100 * d_off / wall:.1f} % of a core)")
        print(f"  {second:<33}  {d_on:6.2f} CPU s  ({100 * d_on / wall:.1f} % of a core)")
        if not args.same:
            print(
                f"  messages {last.get('autorec_messages_total', 0):.0f}, MQTT published "
                f"{last.get('autorec_mqtt_published_messages_total', 0):.0f}, dropped "
                f"{last.get('autorec_mqtt_dropped_messages_total', 0):.0f}, scrapes {len(scrapes) + 1}"
            )
        print(f"  ratio on / off: {d_on / d_off:.3f} (goal <= 1.10)" if d_off > 0 else "  off used no CPU")
        return 0
    finally:
        for p in reversed(procs):
            if p.poll() is None:
                p.terminate()
        for p in procs:
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                p.kill()
        shutil.rmtree(tmp, ignore_errors=True)


SUBSCRIBER = """
import sys, paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
c = mqtt.Client(CallbackAPIVersion.VERSION2)
c.on_connect = lambda c, u, f, rc, p: c.subscribe("autorec/#", qos=1)
c.connect("127.0.0.1", int(sys.argv[1]))
c.loop_forever()
"""

if __name__ == "__main__":
    raise SystemExit(main())
