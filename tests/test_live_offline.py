"""Live and offline give the same segments for the same stream.

One simulated log (camera at 5 fps, so the stream is never quiet for long) is run through
`autorec run` twice: offline (`--log LOG`) and live, with `autorec replay` serving the same log
on a local websocket and `autorec run --uri` recording it. Both must write the same segments:
the same records, byte for byte, with the same boundaries.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from autorec.io.logfile import LogReader
from tests.support.polling import wait_until
from tests.support.simlog import write_sim_log

RULES = """
output:
  telemetry: false
segments:
  pre_roll: 3s
  post_roll: 4s
rules:
  - name: electrodes
    trigger: electrodes
  - name: moved
    trigger: movement
"""


def segments(directory: Path) -> list[tuple[str, list[bytes]]]:
    index = [json.loads(line) for line in (directory / "index.jsonl").read_text().splitlines()]
    return [(e["close_reason"], [r.payload for r in LogReader(directory / e["path"])]) for e in index]


def test_live_and_offline_write_the_same_segments(tmp_path: Path):
    log = tmp_path / "stream.bin"
    write_sim_log(log, seconds=60.0, fps=5.0, seed=5)
    rules = tmp_path / "rules.yaml"
    rules.write_text(RULES)
    offline, live = tmp_path / "offline", tmp_path / "live"
    run = [sys.executable, "-m", "autorec", "run", "--rules", str(rules)]
    proc = subprocess.run([*run, "--log", str(log), "--out", str(offline)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr

    port_file = tmp_path / "replay.out"
    with open(port_file, "w") as out:
        server = subprocess.Popen(
            [sys.executable, "-m", "autorec", "replay", str(log), "--port", "0", "--speed", "16", "--wait"],
            stdout=out,
            stderr=subprocess.PIPE,
            text=True,
        )
    try:
        wait_until(lambda: "ws://" in port_file.read_text(), 20, "the replay server's address")
        uri = next(w for w in port_file.read_text().split() if w.startswith("ws://"))
        recorder = subprocess.Popen([*run, "--uri", uri, "--out", str(live)], stderr=subprocess.PIPE, text=True)
        try:
            wait_until(lambda: server.poll() is not None, 60, "the replay to finish")
            # every record the server sent has reached a segment or was outside one: wait for the
            # recorder to have seen the last one, then stop it (it closes the open segment)
            wait_until(lambda: (live / "index.jsonl").exists(), 20, "a live segment")
        finally:
            recorder.terminate()
            _, err = recorder.communicate(timeout=30)
        assert recorder.returncode == 0, err
    finally:
        if server.poll() is None:
            server.kill()
        server.communicate(timeout=10)

    a, b = segments(offline), segments(live)
    assert len(a) >= 2, [s[0] for s in a]
    assert len(a) == len(b)
    for (reason_a, records_a), (reason_b, records_b) in zip(a[:-1], b[:-1]):
        assert reason_a == reason_b == "post_roll"
        assert records_a == records_b
    # the last segment: offline it ends with the log, live when the recorder is stopped; the same records
    assert a[-1][1] == b[-1][1]
