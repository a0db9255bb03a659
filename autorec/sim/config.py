"""Options of the simulated rig, shared by `autorec sim` and `autorec run --sim`.

`add_sim_arguments(parser)` registers the options on any argparse parser;
`SimConfig.from_args(args)` turns the parsed namespace into a `SimConfig`.
Both commands therefore accept exactly the same spellings.

Faults (`--faults`) are a comma-separated list of `KIND=EVERY`, e.g.
`close=30s,garbage=10s`: every EVERY seconds of simulated time the server
closes all connections (`close`) or sends one bad frame (`garbage`: bytes that
are not a protobuf, `text`: a text websocket frame, `truncated`: a protobuf
cut short, `oversized`: a valid image event over 1 MiB), or makes the next
commanded drop move fail (`stuck`: the drop refuses to move for the scenario's
`control.stuck_for`, default 3 s; the ground truth lists it under `failures`).
"""

from __future__ import annotations

import argparse
import math
from dataclasses import dataclass, field

from autorec.units import parse_duration

FAULT_KINDS: tuple[str, ...] = ("close", "garbage", "text", "truncated", "oversized", "stuck")
MAX_FPS = 100.0  # far above any lab camera; each frame is a full JPEG


def parse_faults(spec: str) -> dict[str, float]:
    """`"close=30s,garbage=10s"` -> `{"close": 30.0, "garbage": 10.0}`; ValueError with a readable message."""
    faults: dict[str, float] = {}
    for part in spec.split(","):
        part = part.strip()
        if not part:
            continue
        name, sep, every = part.partition("=")
        name = name.strip()
        if name not in FAULT_KINDS:
            raise ValueError(f"unknown fault {name!r} (faults: {', '.join(FAULT_KINDS)})")
        if not sep:
            raise ValueError(f"fault {name!r} needs an interval, e.g. {name}=30s")
        seconds = parse_duration(every.strip())
        if seconds <= 0:
            raise ValueError(f"fault {name!r}: the interval must be above zero")
        faults[name] = seconds
    return faults


@dataclass
class SimConfig:
    """Everything needed to run one simulated rig.

    `duration` None runs until stopped. `start_time` None starts the simulated
    clock at the real current time (tests fix it to compare two runs byte for
    byte). `faults` maps a fault kind to its interval in simulated seconds.
    """

    scenario: str = "demo"
    seed: int = 0
    speed: float = 1.0
    duration: float | None = None
    fps: float = 10.0
    camera: bool = True
    faults: dict[str, float] = field(default_factory=dict)
    truth: str | None = None
    host: str = "127.0.0.1"
    port: int = 7001
    start_time: float | None = None
    # Per-client send queue bound; a client further behind loses its oldest frames.
    max_queue_bytes: int = 32 * 1024 * 1024
    # Hold the simulated clock until this many clients are connected (tests, `run --sim`),
    # so that they see the stream from its first message.
    wait_for_clients: int = 0
    # pdserver's JSON-RPC (POST /rpc) on this port of `host`; None: not served, 0: any free port.
    rpc_port: int | None = None
    # Hold the simulated clock while the clients have more than `PACE_QUEUE_BYTES` queued (`run --sim`, whose
    # one client is the recorder): on a busy machine the run takes longer instead of losing messages.
    pace_to_clients: bool = False

    def __post_init__(self) -> None:
        # Written so that nan fails too: --speed nan froze the simulated clock, --fps inf or 1e9
        # scheduled frames without end until the machine ran out of memory.
        if not 0 < self.speed < math.inf:
            raise ValueError("--speed must be above zero and finite")
        if not 0 <= self.fps <= MAX_FPS:
            raise ValueError(f"--fps must be 0-{MAX_FPS:g} (0: no camera frames)")
        if self.seed < 0:  # numpy's generators take only non-negative seeds
            raise ValueError(f"--seed must be 0 or more, got {self.seed}")
        if not 0 <= self.port <= 65535:
            raise ValueError(f"--port must be 0-65535 (0: any free port), got {self.port}")
        if self.rpc_port is not None and not 0 <= self.rpc_port <= 65535:
            raise ValueError(f"--rpc-port must be 0-65535 (0: any free port), got {self.rpc_port}")
        if self.duration is not None and self.duration <= 0:
            raise ValueError("--duration must be above zero")

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> SimConfig:
        """Build from options registered by `add_sim_arguments`; ValueError on a bad value."""
        duration = getattr(args, "sim_duration", None)
        try:
            seconds = None if duration is None else parse_duration(duration)
        except ValueError as exc:
            raise ValueError(f"--duration: {exc}") from None
        try:
            faults = parse_faults(args.faults or "")
        except ValueError as exc:
            raise ValueError(f"--faults: {exc}") from None
        config = cls(
            scenario=args.scenario,
            seed=args.seed,
            speed=args.speed,
            duration=seconds,
            fps=args.fps,
            camera=args.camera,
            faults=faults,
            truth=args.truth,
            host=getattr(args, "sim_host", "127.0.0.1"),
            port=getattr(args, "sim_port", 7001),
            rpc_port=getattr(args, "rpc_port", None),
        )
        config.check_files()
        return config

    def check_files(self) -> None:
        """ValueError (a one-line message) if the scenario cannot be loaded or --truth cannot be written.

        Checked before anything is served: otherwise the scenario fails inside `autorec run`'s event
        loop, and a truth file in a missing directory fails only when the run ends.
        """
        from pathlib import Path

        from autorec.sim.scenario import load_scenario

        load_scenario(self.scenario)  # ScenarioError is a ValueError starting with FILE:LINE:
        if self.truth:
            truth = Path(self.truth)
            if truth.is_dir():
                raise ValueError(f"--truth: {truth} is a directory")
            if not truth.absolute().parent.is_dir():
                raise ValueError(f"--truth: {truth}: no such directory {truth.absolute().parent}")


def add_sim_arguments(parser: argparse.ArgumentParser, *, network: bool = True) -> None:
    """Register the simulator options. `network=False` leaves out --host/--port (for `run --sim`)."""
    from autorec.sim.scenario import builtin_names

    g = parser.add_argument_group("simulated rig")
    g.add_argument(
        "--scenario",
        default="demo",
        metavar="NAME|FILE",
        help=f"built-in scenario ({', '.join(builtin_names())}) or a scenario YAML file (default: demo)",
    )
    g.add_argument("--seed", type=int, default=0, help="random seed: the same seed gives the same stream (default 0)")
    g.add_argument("--speed", type=float, default=1.0, help="simulated seconds per real second (default 1.0)")
    g.add_argument(
        "--duration",
        dest="sim_duration",
        default=None,
        metavar="DURATION",
        help="stop after this much simulated time, e.g. 10min (default: run until stopped)",
    )
    g.add_argument("--fps", type=float, default=10.0, help="camera frames per simulated second (default 10)")
    g.add_argument("--no-camera", dest="camera", action="store_false", help="send no camera frames")
    g.add_argument(
        "--faults",
        default="",
        metavar="KIND=EVERY,...",
        help=f"inject faults every EVERY simulated seconds; kinds: {', '.join(FAULT_KINDS)}",
    )
    g.add_argument("--truth", default=None, metavar="FILE", help="write the ground truth (JSON) to FILE")
    if network:
        g.add_argument(
            "--host",
            dest="sim_host",
            metavar="HOST",
            default="127.0.0.1",
            help="address to serve on (default 127.0.0.1)",
        )
        g.add_argument(
            "--port", dest="sim_port", metavar="PORT", type=int, default=7001, help="port to serve on (default 7001)"
        )
        g.add_argument(
            "--rpc-port",
            dest="rpc_port",
            metavar="PORT",
            type=int,
            default=None,
            help="also serve pdserver's JSON-RPC control (POST /rpc) on this port, e.g. 7000 as pdserver "
            "(0: any free port; default: not served)",
        )
