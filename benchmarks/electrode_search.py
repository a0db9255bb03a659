"""Search by electrode on a 12-hour night: the index build (once) and a search (every time), through the web API.

A generated telemetry track (`tests/support/telemetrygen.py`: scans at 4 Hz, temperature, HV, group
capacitance, a protocol step every 10 minutes) of `--hours` hours goes into a fresh output directory;
`autorec.web` serves it on 127.0.0.1. Measured: the file's size and records, the first search (which
builds the index), then `--repeat` searches of other pins (the cached index): HTTP round trip and the
server's own query time.

    .venv/bin/python benchmarks/electrode_search.py [--hours 12] [--repeat 20]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from autorec.web.feed import DirectoryFeed
from autorec.web.server import WebUI, start_server
from tests.support.telemetrygen import write_telemetry


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--hours", type=float, default=12.0)
    ap.add_argument("--repeat", type=int, default=20)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="autorec-electrodes-") as tmp:
        out = Path(tmp)
        path = out / "telemetry-20261206.bin"
        began = time.perf_counter()
        steps = write_telemetry(path, 1_796_600_000.0, args.hours)
        print(
            f"generated {args.hours:g} h: {path.stat().st_size / 1e6:.0f} MB, {len(steps)} steps "
            f"in {time.perf_counter() - began:.1f} s"
        )
        (out / "index.jsonl").write_text("")
        loop = asyncio.new_event_loop()
        ready = threading.Event()
        box: dict = {}

        def serve() -> None:
            asyncio.set_event_loop(loop)

            async def start() -> None:
                ui = WebUI(out, DirectoryFeed(out), warm_night=False)
                box["runner"], box["base"] = await start_server(ui, "127.0.0.1", 0)
                ready.set()

            loop.run_until_complete(start())
            loop.run_forever()

        threading.Thread(target=serve, daemon=True).start()
        ready.wait(10)

        def search(pins: str) -> tuple[float, dict]:
            t0 = time.perf_counter()
            with urllib.request.urlopen(f"{box['base']}api/electrodes?pins={pins}", timeout=600) as r:
                data = json.loads(r.read())
            return time.perf_counter() - t0, data

        first, data = search("12,30")
        print(
            f"first search (builds the index): {first:.2f} s; index build {data['index_seconds']:.2f} s; "
            f"{len(data['moments'])} moments"
        )
        rtts, queries = [], []
        pins = [10, 11, 12, 13, 14, 30, 31, 32, 50, 51]
        for i in range(args.repeat):
            rtt, data = search(f"{pins[i % len(pins)]},{pins[(i + 3) % len(pins)]}")
            rtts.append(rtt * 1000)
            queries.append(data["query_ms"])
        print(
            f"cached searches ({args.repeat}): round trip median {statistics.median(rtts):.1f} ms, "
            f"max {max(rtts):.1f} ms; server query median {statistics.median(queries):.2f} ms"
        )
        loop.call_soon_threadsafe(loop.stop)


if __name__ == "__main__":
    main()
