"""One capture loop, one disk-error policy: `autorec record` and `EventRecorder` on a real tmpfs
that fills up and frees up again, fed by a real websockets server on 127.0.0.1.

Both paths run the same scenario and must end the same way (autorec.io.capture's docstring):
the recording goes on through the full disk, every frame the server sent is either in the files
or counted as lost, the log ends on a whole record that upstream's reader reads, the records sent
once there is room again are all written (also while the stream is quiet: the flush tick), the
trouble is said once and its end once; the command exits 1 and prints the count, the library's
`stop()` raises RecorderDiskError with the same count.
"""

from __future__ import annotations

import logging
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from autorec import EventRecorder
from autorec.io.logfile import LogReader
from autorec.io.recorder import RecorderDiskError, RecorderError
from tests.support.polling import wait_until
from tests.support.upstreamreader import upstream_read
from tests.support.wsfixtures import EventServer, fixture_payloads

REPO = Path(__file__).resolve().parent.parent


def records(path: Path) -> list[bytes]:
    return [r.payload for r in LogReader(path)] if path.exists() else []


class Lines:
    """The lines of a subprocess's stream, read in a thread (a test polls them, never sleeps)."""

    def __init__(self, stream) -> None:
        self.lines: list[str] = []
        self._thread = threading.Thread(target=self._read, args=(stream,), daemon=True)
        self._thread.start()

    def _read(self, stream) -> None:
        for line in stream:
            self.lines.append(line)

    def count(self, text: str) -> int:
        return sum(text in line for line in self.lines)

    def join(self) -> str:
        self._thread.join(30)
        return "".join(self.lines)


def record_command(uri: str, out: Path, fill_phase: Callable[[], None], free_phase: Callable[[], None]):
    """`autorec record` as a real process: (lost, log lines, exit code)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "autorec", "record", "--uri", uri, str(out)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    err = Lines(proc.stderr)
    try:
        fill_phase()
        wait_until(lambda: err.count("No space left on device"), 30, "the command to report the full disk")
        free_phase()
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
        stdout = proc.stdout.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    stderr = err.join()
    lost = [int(line.split(":")[1].split()[0]) for line in stdout.splitlines() if "NOT WRITTEN" in line]
    assert lost, stdout + stderr
    return lost[0], stderr, proc.returncode


def record_library(uri: str, out: Path, fill_phase, free_phase, caplog):
    """`EventRecorder` in this process: (lost, log lines, the error stop() raised)."""
    caplog.set_level(logging.INFO, logger="autorec.io.capture")
    rec = EventRecorder(uri, mode="new")
    rec.start(out)
    fill_phase()
    wait_until(lambda: rec.lost > 0, 30, "the recorder to count lost records")
    assert rec.recording  # the disk error did not end the capture
    free_phase()
    with pytest.raises(RecorderDiskError, match="No space left on device") as raised:
        rec.stop()
    assert isinstance(raised.value, RecorderError)  # what scripts already catch
    assert raised.value.lost == rec.lost and raised.value.count == rec.count == len(records(out))
    lines = "".join(f"{r.levelname} {r.getMessage()}\n" for r in caplog.records if r.name == "autorec.io.capture")
    return rec.lost, lines, raised.value


@pytest.mark.parametrize("path", ["autorec record", "EventRecorder"])
def test_a_disk_that_fills_and_frees_up_is_handled_alike(path: str, stream_log: Path, full_disk: Path, caplog) -> None:
    payloads = fixture_payloads(stream_log)
    during, after = payloads[:5], payloads[5:25]  # events sent while the disk is full, then once it has room
    out = full_disk
    sent: list[bytes] = []

    with EventServer() as server:

        def fill_phase() -> None:
            server.wait_for_clients(1, timeout=30)
            frames = [*during, b"\x07garbage"]
            server.broadcast(frames)
            sent.extend(frames)

        def free_phase() -> None:
            (full_disk.parent / "filler").unlink()  # room again
            frames = [*after, b"\x07junk"]
            server.broadcast(frames)
            sent.extend(frames)
            # No stop, no more frames: the flush tick must put them on disk (a quiet stream is kept current).
            wait_until(lambda: records(out)[-len(after) :] == after, 30, "the records sent after the disk freed up")
            wait_until(lambda: records(Path(f"{out}.rejected"))[-1:] == [b"\x07junk"], 30, "the rejected frame")

        if path == "autorec record":
            lost, lines, code = record_command(server.uri, out, fill_phase, free_phase)
            assert code == 1
        else:
            lost, lines, _ = record_library(server.uri, out, fill_phase, free_phase, caplog)

    log, rejected = records(out), records(Path(f"{out}.rejected"))
    # Nothing silently lost: every frame sent is in the files or counted. (Normally all six sent while
    # the disk was full are lost; a flush tick falling inside that burst could save the last few.)
    assert lost >= 1 and len(log) + len(rejected) + lost == len(sent)
    assert log[-len(after) :] == after and during[len(during) - (len(log) - len(after)) :] == log[: -len(after)]
    reader = LogReader(out)
    assert len(list(reader)) == len(log) and reader.truncated is None and reader.corrupt is None
    assert upstream_read(out) == log  # the log ends on a whole record that upstream reads
    # Said once when it began (with the count so far), once when it ended: no flood, no false recovery.
    assert lines.count("No space left on device") == 1 and "records lost so far" in lines, lines
    assert lines.count("works again") == 1, lines
