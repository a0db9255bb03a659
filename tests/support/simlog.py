"""A simulated night written straight to a log file (no sockets): the pure simulation core,
the camera renderer and the stream encoder, as `autorec sim` runs them, plus its ground truth."""

from __future__ import annotations

from pathlib import Path

from autorec.io.logfile import LogWriter
from autorec.sim.camera import CameraRenderer
from autorec.sim.core import Simulation
from autorec.sim.scenario import load_scenario, parse_scenario
from autorec.sim.stream import StreamEncoder

T0 = 1_790_000_000.0


def write_sim_log(
    path: Path, scenario: str = "demo", seconds: float = 180.0, *, fps: float = 5.0, seed: int = 3, text: bool = False
) -> dict:
    """Write `seconds` of the simulated rig (`scenario`: a built-in name, or YAML when `text`) to `path`.

    Returns the ground truth (`Simulation.truth.as_dict`)."""
    sc = parse_scenario(scenario, "test-scenario") if text else load_scenario(scenario)
    sim = Simulation(sc, seed=seed, start_time=T0, duration=seconds, fps=fps, camera=fps > 0)
    enc = StreamEncoder(CameraRenderer(sc.board.cols, sc.board.rows, seed=seed) if fps > 0 else None, seed=seed)
    with LogWriter(path, mode="overwrite") as log:
        for t, item in sim.advance(T0 + seconds):
            for msg in enc.encode(t, item):
                if isinstance(msg, bytes):
                    log.write(msg)
    return sim.truth.as_dict(until=T0 + seconds)
