"""Shared test fixtures.

`../shared/fixtures` (beside the repo) holds real upstream data: a 30 s log recorded by upstream
pdrecord from upstream pdserver --sim, its counts, and two photos of a real board. Tests about
upstream's own bytes use it and are skipped without it. Tests that only need a realistic stream
use `stream_log`, generated here from the built-in simulator, and always run.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SHARED_FIXTURES = REPO.parent / "shared" / "fixtures"


@pytest.fixture(autouse=True)
def restore_logging() -> Iterator[None]:
    """Put the root logger back after each test: `autorec.cli.main` configures logging for a command
    line (a stderr handler, `force=True`), and a later test must not log to an earlier test's closed
    stderr. Autouse for every test file, here, so no file can forget it."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.fixture
def full_disk(tmp_path: Path) -> Iterator[Path]:
    """A path on a tmpfs that is already full: every write to it fails with ENOSPC."""
    from tests.support.tmpfs import full

    yield from full(tmp_path)


def _shared(name: str) -> Path:
    path = SHARED_FIXTURES / name
    if not path.exists():
        pytest.skip(f"shared fixture {path} not present (../shared beside the repo)")
    return path


@pytest.fixture
def upstream_log() -> Path:
    """30 s recorded by upstream pdrecord from upstream pdserver --sim."""
    return _shared("upstream-sim.bin")


@pytest.fixture
def upstream_counts() -> dict:
    return json.loads(_shared("upstream-sim.counts.json").read_text())


@pytest.fixture
def board_photo_1() -> Path:
    return _shared("board-photo-1.jpg")


@pytest.fixture
def board_photo_2() -> Path:
    return _shared("board-photo-2.jpg")


@pytest.fixture(scope="session")
def stream_log(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """30 s of the built-in simulator's stream (demo scenario, seed 1, no camera) as a log: ~300 records of
    every periodic kind, timeless electrode_state and device_info among them. Generated, never skipped."""
    from autorec.io.logfile import LogWriter
    from autorec.sim.core import Simulation
    from autorec.sim.scenario import load_scenario
    from autorec.sim.stream import StreamEncoder

    start = 1_795_516_318.9
    sim = Simulation(load_scenario("demo"), seed=1, start_time=start, duration=30.0, camera=False)
    encoder = StreamEncoder()
    path = tmp_path_factory.mktemp("stream") / "sim-30s.bin"
    with LogWriter(path) as writer:
        for t, item in sim.advance(start + 30.0):
            for message in encoder.encode(t, item):
                if isinstance(message, bytes):
                    writer.write(message)
    return path


NIGHT_RULES = """
output:
  telemetry: true
segments:
  pre_roll: 5s
  post_roll: 8s
rules:
  - name: camera-motion
    trigger: motion
    threshold: 0.0003
    detect_fps: 5
  - name: electrodes
    trigger: electrodes
  - name: too-hot
    trigger: threshold
    field: temperature_control.temperatures[0]
    above: 40
"""


@pytest.fixture(scope="session")
def night(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A simulated night: demo scenario (bursts, a temperature ramp, lighting steps and a flicker, a board
    disconnect), camera at 5 fps, the websocket closed by the server every 70 s (reconnects)."""
    base = tmp_path_factory.mktemp("night")
    rules = base / "rules.yaml"
    rules.write_text(NIGHT_RULES)
    out = base / "out"
    proc = subprocess.run(
        [
            *(sys.executable, "-m", "autorec", "run", "--rules", str(rules), "--sim", "--speed", "20"),
            *("--duration", "200s", "--fps", "5", "--seed", "4", "--faults", "close=70s", "--out", str(out)),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    return out
