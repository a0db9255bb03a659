"""Can `autorec sim` hold its --speed with camera frames on, on one core?

Runs, in this one process:

- baseline: the sans-I/O core plus stream encoding (JPEG rendering through the
  renderer's cache) with no sockets, as fast as it goes: the ceiling;
- served: a real SimServer on 127.0.0.1 at --speed, in this process (one
  Python thread: one core), with a real websocket client in another process
  receiving everything, as a recorder would; with --same-process also with
  the client in the server's own event loop (both on one core).

For the served run it prints the sustained speed factor measured the way a
recorder sees it (span of frame timestamps / span of their arrival times),
the server's own achieved factor, frames/s, MB/s, dropped messages and peak
RSS; plus the ratio of the served factor to the baseline's.

    .venv/bin/python benchmarks/sim_speed.py [--speed 100] [--duration 10min] [--fps 10] [--scenario demo]
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import multiprocessing as mp
import resource
import time

from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from autorec import events
from autorec.sim.config import SimConfig
from autorec.sim.core import Simulation
from autorec.sim.scenario import load_scenario
from autorec.sim.server import SimServer, make_renderer
from autorec.sim.stream import StreamEncoder
from autorec.units import parse_duration


def baseline(scenario: str, seconds: float, fps: float, seed: int) -> tuple[float, int, int]:
    """(wall seconds, messages, bytes) to generate and encode `seconds` of stream without sockets."""
    sc = load_scenario(scenario)
    renderer = make_renderer(sc.board.cols, sc.board.rows, seed)
    encoder = StreamEncoder(renderer, seed=seed)
    sim = Simulation(sc, seed=seed, start_time=time.time(), duration=seconds, fps=fps)
    n = size = 0
    t0 = time.perf_counter()
    for t, item in sim.advance(sim.start_time + seconds):
        for m in encoder.encode(t, item):
            n += 1
            size += len(m)
    return time.perf_counter() - t0, n, size


async def _receive(uri: str) -> tuple[list[tuple[float, float]], int, int]:
    """A recorder-like client: receives everything, notes (arrival, timestamp) of each image."""
    frames: list[tuple[float, float]] = []
    n = size = 0
    async with connect(uri, max_size=None, compression=None) as ws:
        try:
            while True:
                m = await ws.recv()
                n += 1
                size += len(m)
                if isinstance(m, bytes) and events.peek_kind(m) == "image":
                    frames.append((time.monotonic(), events.timestamp(events.decode(m))))
        except ConnectionClosed:
            pass
    return frames, n, size


def _client_process(uri: str, out) -> None:
    out.send(asyncio.run(_receive(uri)))


async def served(config: SimConfig, separate: bool) -> dict:
    """Serve `config` to one client (in another process if `separate`, else in this event loop)."""
    async with SimServer(config, port=0) as server:
        if separate:
            parent, child = mp.Pipe(duplex=False)
            proc = mp.get_context("spawn").Process(target=_client_process, args=(server.uri, child))
            proc.start()
        else:
            task = asyncio.ensure_future(_receive(server.uri))
        await server.broadcaster.wait_for_clients(1)
        t0 = time.monotonic()
        await server.wait_finished()
        await server.broadcaster.drain(60)
        wall = time.monotonic() - t0
        stats = server.stats
    if separate:
        frames, n, size = await asyncio.to_thread(parent.recv)
        proc.join(30)
    else:
        frames, n, size = await task
    return {"frames": frames, "messages": n, "bytes": size, "wall": wall, "stats": stats}


def report(label: str, r: dict, seconds: float, base_factor: float) -> None:
    frames = r["frames"]
    factor = (frames[-1][1] - frames[0][1]) / (frames[-1][0] - frames[0][0]) if len(frames) > 1 else 0.0
    stats = r["stats"]
    print(f"{label}: {seconds:.0f} simulated s in {r['wall']:.2f} s")
    print(f"  sustained factor on frame timestamps: {factor:.1f}x  (server's own: {stats['speed_achieved']:.1f}x)")
    print(
        f"  {len(frames)} frames received = {len(frames) / r['wall']:.0f} frames/s, {r['messages']} messages, "
        f"{r['bytes'] / r['wall'] / 1e6:.1f} MB/s, dropped {stats['dropped']}"
    )
    print(f"  served factor / baseline factor: {factor / base_factor:.2f}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--speed", type=float, default=100.0)
    p.add_argument("--duration", default="10min", help="simulated time (default 10min)")
    p.add_argument("--fps", type=float, default=10.0)
    p.add_argument("--scenario", default="demo")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--same-process", action="store_true", help="also run the client in the server's event loop")
    args = p.parse_args()
    logging.basicConfig(level=logging.WARNING)
    seconds = parse_duration(args.duration)

    wall, n, size = baseline(args.scenario, seconds, args.fps, args.seed)
    base_factor = seconds / wall
    print(
        f"baseline (no sockets): {seconds:.0f} simulated s in {wall:.2f} s = {base_factor:.0f}x, "
        f"{n} messages, {size / wall / 1e6:.0f} MB/s"
    )
    cfg = SimConfig(
        scenario=args.scenario, seed=args.seed, speed=args.speed, duration=seconds, fps=args.fps, wait_for_clients=1
    )
    r = asyncio.run(served(cfg, separate=True))
    report(f"served at --speed {args.speed:g}, client in another process", r, seconds, base_factor)
    if args.same_process:
        r = asyncio.run(served(cfg, separate=False))
        report(f"served at --speed {args.speed:g}, client in the server's event loop", r, seconds, base_factor)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak RSS of the server process: {rss:.0f} MB")


if __name__ == "__main__":
    main()
