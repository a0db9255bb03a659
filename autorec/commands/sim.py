"""`autorec sim`: serve a simulated PurpleDrop rig (pdserver stand-in) on a websocket."""

from __future__ import annotations

import argparse
import sys

from autorec.sim.config import add_sim_arguments


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "sim",
        help="serve a simulated rig (scripted scenarios, ground truth, faults)",
        description="Serve a simulated PurpleDrop rig like pdserver: a websocket of PurpleDropEvent frames "
        "following a scenario, with optional ground truth (--truth) and injected faults (--faults); with "
        "--rpc-port also pdserver's JSON-RPC control (set_electrode_pins moves the simulated drops).",
    )
    add_sim_arguments(p)
    p.add_argument("-v", "--verbose", action="count", default=0, help="more log output")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import asyncio

    from autorec.io.mainloop import StopRequest, run_main
    from autorec.sim.config import SimConfig
    from autorec.sim.scenario import ScenarioError
    from autorec.sim.server import SimServer

    try:
        config = SimConfig.from_args(args)
    except ValueError as exc:
        print(f"autorec sim: {exc}", file=sys.stderr, flush=True)
        return 2

    async def serve(stop: StopRequest) -> int:
        try:
            server = SimServer(config)
        except ScenarioError as exc:
            print(f"autorec sim: {exc}", file=sys.stderr, flush=True)
            return 2
        try:
            async with server:
                print(f"autorec sim: serving on {server.uri}", flush=True)
                if server.rpc_url is not None:
                    print(f"autorec sim: JSON-RPC on {server.rpc_url}", flush=True)
                finished = asyncio.ensure_future(server.wait_finished())
                stopped = asyncio.ensure_future(stop.wait())
                await asyncio.wait({finished, stopped}, return_when=asyncio.FIRST_COMPLETED)
                finished.cancel()
                stopped.cancel()
                print(f"autorec sim: {_summary(server.stats, [stop.signal] if stop.signal else [])}", flush=True)
        except OSError as exc:
            print(
                f"autorec sim: cannot serve on {config.host}:{config.port}: {exc.strerror or exc}",
                file=sys.stderr,
                flush=True,
            )
            return 1
        return 0

    return run_main(serve, interrupted=0)


def _summary(stats: dict, stopped_by: list[str]) -> str:
    """The final line, a sentence: why it ended, what went out, how fast, who lost what."""
    from autorec.units import format_duration, format_size

    how = f"stopped by {stopped_by[0]}" if stopped_by else "duration reached"
    clients = stats["clients"]
    sent_bytes = sum(c["sent_bytes"] for c in clients)
    line = (
        f"{how}; published {stats['published']} message(s), {format_duration(stats['sim_seconds'])} of simulated "
        f"time in {format_duration(stats['real_seconds'])} ({stats['speed_achieved']:.1f}x); "
        f"{len(clients)} client(s) received {format_size(sent_bytes)}"
    )
    if stats["dropped"]:
        line += f", {stats['dropped']} message(s) dropped for slow clients"
    if stats["connection_closes"]:
        line += f"; connections closed {stats['connection_closes']} time(s) (faults)"
    return line
