"""`autorec record` against a real websockets server, as a real subprocess where signals matter."""

from __future__ import annotations

import os
import select
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from autorec.cli import main
from autorec.io.logfile import LogReader
from autorec.proto import PurpleDropEvent
from tests.support.eventbuilder import image
from tests.support.upstreamreader import upstream_read
from tests.support.wsfixtures import EventServer, fixture_payloads, wait_until

REPO = Path(__file__).resolve().parent.parent


def records(path: Path) -> list[bytes]:
    return [r.payload for r in LogReader(path)] if path.exists() else []


def big_image_event(size: int) -> bytes:
    return image(1_700_000_000.0, os.urandom(size)).SerializeToString()


def wait_for_line(stream, text: str, timeout: float) -> str:
    deadline = time.monotonic() + timeout
    while True:
        remaining = deadline - time.monotonic()
        assert remaining > 0, f"no line with {text!r} within {timeout}s"
        ready, _, _ = select.select([stream], [], [], remaining)
        if ready:
            line = stream.readline()
            assert line, f"stream ended before a line with {text!r}"
            if text in line:
                return line


def start_record(uri: str, out: Path, *extra: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "autorec", "record", "--uri", uri, str(out), *extra],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_record_survives_dropped_connection_and_stops_on_signal(
    sig: signal.Signals, stream_log: Path, tmp_path: Path
) -> None:
    payloads = fixture_payloads(stream_log)
    big = big_image_event(2 * 1024 * 1024)  # > websockets' 1 MiB default
    first, second = [*payloads[:120], big], payloads[120:]
    out = tmp_path / "rec.bin"
    with EventServer() as server:
        proc = start_record(server.uri, out)
        try:
            server.wait_for_clients(1, timeout=30)
            server.broadcast([*first[:50], "a text frame", b"\x07garbage", b"", *first[50:]])
            # the recorder flushes at least once a second: poll the file, no sleeping
            wait_until(lambda: len(records(out)) == len(first), 30, "first half on disk")
            server.drop_connections()
            wait_until(lambda: server.connects == 2 and server.clients == 1, 30, "the recorder to reconnect")
            server.broadcast(second)
            wait_until(lambda: len(records(out)) == len(payloads) + 1, 30, "second half on disk")
            proc.send_signal(sig)
            stdout, stderr = proc.communicate(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
    assert proc.returncode == 0, stderr
    assert records(out) == [*first, *second]
    assert upstream_read(out) == [*first, *second]  # upstream's reader parses every record
    assert records(Path(f"{out}.rejected")) == [b"\x07garbage", b""]
    assert f"{sig.name} received" in stdout
    assert f"messages: {len(payloads) + 1}" in stdout
    assert stdout.strip().splitlines()[-1].startswith(f"  next: autorec info {out}, autorec video {out}, ")
    assert "gaps: 1 " in stdout and "reconnects: 1" in stdout
    assert "rejected: 2" in stdout and "text frames skipped: 1" in stdout
    assert "connection lost (no close frame)" in stdout
    assert "no connection to" in stderr  # the gap was reported while it happened


def test_existing_out_is_refused_then_appended_or_replaced(stream_log: Path, tmp_path: Path, capsys) -> None:
    payloads = fixture_payloads(stream_log)
    out = tmp_path / "rec.bin"
    out.write_bytes(b"")
    assert main(["record", "--uri", "ws://127.0.0.1:9", str(out)]) == 2
    assert "exists; use --append" in capsys.readouterr().err
    with EventServer(greeting=payloads[:5]) as server:
        # --duration: the greeting arrives right after connecting, well within it
        assert main(["record", "--uri", server.uri, "--duration", "1s", "--force", str(out)]) == 0
        assert records(out) == payloads[:5]
        assert main(["record", "--uri", server.uri, "--duration", "1s", "--append", "-v", str(out)]) == 0
        assert records(out) == payloads[:5] * 2
    stdout = capsys.readouterr().out
    assert "duration reached" in stdout
    kinds = [line for line in stdout.splitlines() if line and not line.startswith((" ", "autorec"))]
    assert kinds == [PurpleDropEvent.FromString(p).WhichOneof("msg") for p in payloads[:5]]


def test_existing_rejected_sidecar_is_refused_too(tmp_path: Path, capsys) -> None:
    out = tmp_path / "rec.bin"
    Path(f"{out}.rejected").write_bytes(b"")
    assert main(["record", "--uri", "ws://127.0.0.1:9", str(out)]) == 2
    assert "rec.bin.rejected exists" in capsys.readouterr().err
    assert not out.exists()


def test_a_stale_sidecar_that_cannot_be_replaced_is_named_and_the_log_left_alone(tmp_path: Path, capsys) -> None:
    """--force replaces OUT and its stale OUT.rejected: when the sidecar cannot be removed (here a
    directory), the error names it, not OUT, and OUT is not truncated for a recording that never starts."""
    out = tmp_path / "rec.bin"
    out.write_bytes(b"\x00\x00\x00\x00")  # one empty record
    Path(f"{out}.rejected").mkdir()
    assert main(["record", "--uri", "ws://127.0.0.1:9", "--force", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"autorec record: cannot open {out}.rejected: ") and err.count("\n") == 1, err
    assert out.read_bytes() == b"\x00\x00\x00\x00"


@pytest.mark.parametrize(
    ("args", "message"),
    [(["--duration", "ten minutes"], "--duration"), (["--uri", "http://x"], "not a websocket URI")],
)
def test_usage_errors_exit_2(args: list[str], message: str, tmp_path: Path, capsys) -> None:
    assert main(["record", *args, str(tmp_path / "x.bin")]) == 2
    assert message in capsys.readouterr().err


def test_disk_full_keeps_recording_counts_losses_and_exits_1(stream_log: Path, full_disk: Path, capsys) -> None:
    payloads = fixture_payloads(stream_log)[:5]
    with EventServer(greeting=payloads) as server:
        assert main(["record", "--uri", server.uri, "--duration", "1s", "--force", str(full_disk)]) == 1
    captured = capsys.readouterr()
    assert "NOT WRITTEN (disk/I-O errors): 5 records" in captured.out
    assert "No space left on device" in captured.err or "No space left on device" in captured.out


def test_sigterm_while_no_server_is_reachable(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = tmp_path / "rec.bin"
    proc = start_record(f"ws://127.0.0.1:{port}", out)
    try:
        # signal handlers are installed before this first log line: a SIGTERM earlier would just kill it
        wait_for_line(proc.stderr, "recording ws://", 30)
        proc.send_signal(signal.SIGTERM)
        stdout, stderr = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 1, stderr  # nothing was ever recorded: not a quiet rig
    assert "SIGTERM received" in stdout and "messages: 0" in stdout
    assert f"autorec record: never connected to ws://127.0.0.1:{port} (connection refused)" in stderr
    assert out.read_bytes() == b""


def test_disk_trouble_is_reported_once_then_rate_limited(caplog) -> None:
    from autorec.io.capture import DiskTrouble

    def lines() -> list[str]:
        return [f"{r.levelname} {r.getMessage()}" for r in caplog.records if r.name == "autorec.io.capture"]

    now = [0.0]
    trouble = DiskTrouble(Path("out.bin"), repeat=60.0, clock=lambda: now[0])
    full = OSError(28, "No space left on device")
    with caplog.at_level("INFO", logger="autorec.io.capture"):
        for second in range(120):  # a disk that fails and recovers every second for two minutes
            now[0] = float(second)
            trouble.failed(full, lost=second)
            trouble.failed(full, lost=second)  # repeats while failing wait for the next report
            trouble.wrote(lost=second)
        assert [line.split(" ")[0] for line in lines()] == ["ERROR", "INFO", "ERROR", "INFO"]
        assert lines()[2].endswith("; 119 more failure(s) since the last line")  # every failed write counts
        caplog.clear()
        trouble = DiskTrouble(Path("out.bin"), repeat=60.0, clock=lambda: now[0])
        for second in range(200, 330):  # a disk that stays full: a reminder a minute, with the count so far
            now[0] = float(second)
            trouble.failed(full, lost=second)
        assert lines() == [
            "ERROR cannot write out.bin: No space left on device; recording continues, 200 records lost so far",
            "ERROR still cannot write out.bin: No space left on device; 260 records lost so far",
            "ERROR still cannot write out.bin: No space left on device; 320 records lost so far",
        ]
        caplog.clear()
        # Each file fails and recovers on its own: a sidecar that cannot be opened is not cured by the
        # log's writes, and a full disk that the log recovers from is said to be over for the log.
        trouble = DiskTrouble(Path("out.bin"), repeat=0.0, clock=lambda: now[0])
        sidecar = (Path("out.bin.rejected"), "not appending: bad record header")
        trouble.failed(OSError(84, "x"), lost=1, failure=sidecar)
        trouble.wrote(lost=1)  # the log took records
        trouble.failed(full, lost=2)
        trouble.wrote(lost=2)
        assert trouble.failing == (Path("out.bin.rejected"),)
        trouble.wrote(lost=2, path=Path("out.bin.rejected"))
        assert trouble.failing == ()
        assert lines() == [
            "ERROR cannot write out.bin.rejected: not appending: bad record header; recording continues, 1 records"
            " lost so far",
            "ERROR cannot write out.bin: No space left on device; recording continues, 2 records lost so far",
            "INFO writing to out.bin works again (2 records lost so far)",
            "INFO writing to out.bin.rejected works again (2 records lost so far)",
        ]


def test_disk_full_never_claims_writes_work_again(upstream_log: Path, full_disk: Path, capsys) -> None:
    """A full disk fails every write; the flushes of an empty buffer in between are no recovery."""
    payloads = fixture_payloads(upstream_log)[:5]
    with EventServer(greeting=payloads) as server:
        assert main(["record", "--uri", server.uri, "--duration", "2.5s", "--force", str(full_disk)]) == 1
    err = capsys.readouterr().err
    assert err.count("No space left on device") == 1 and "works again" not in err, err


def test_a_sidecar_that_cannot_be_appended_to_is_named_with_its_cause(stream_log: Path, tmp_path: Path, capsys) -> None:
    """A rejected frame whose sidecar is not a log: the line names the sidecar (the log is fine) and says why."""
    payloads = fixture_payloads(stream_log)[:3]
    out = tmp_path / "rec.bin"
    out.write_bytes(b"")
    Path(f"{out}.rejected").write_bytes(b"\xff\xff\xff\xff not a log")
    with EventServer(greeting=[*payloads, b"\x07garbage"]) as server:
        assert main(["record", "--uri", server.uri, "--duration", "1s", "--append", str(out)]) == 1
    assert records(out) == payloads  # the log itself was written
    err = capsys.readouterr().err
    line = next(line for line in err.splitlines() if "cannot write" in line)
    assert f"cannot write {out}.rejected: not appending: bad record header" in line, err
    assert "works again" not in err, err  # the log's flushes say nothing of the sidecar


def test_a_closed_stdout_under_verbose_stops_the_printing_not_the_recording(stream_log: Path, tmp_path: Path) -> None:
    """`autorec record -v OUT | head -1`: once the reader is gone, the kinds are no longer printed;
    every frame still reaches OUT, the summary does not fail on the closed pipe, exit 0."""
    payloads = fixture_payloads(stream_log)[:60]
    out = tmp_path / "rec.bin"
    with EventServer() as server:
        proc = start_record(server.uri, out, "-v")
        try:
            server.wait_for_clients(1, timeout=30)
            server.broadcast(payloads[:1])
            assert proc.stdout is not None
            assert proc.stdout.readline().strip()  # the first kind, then the reader goes away
            proc.stdout.close()
            server.broadcast(payloads[1:])
            wait_until(lambda: len(records(out)) == len(payloads), 30, "every frame on disk")
            proc.send_signal(signal.SIGTERM)
            _, stderr = proc.communicate(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
    assert proc.returncode == 0, stderr
    assert records(out) == payloads
    assert "message kinds are no longer printed; the recording goes on" in stderr
    assert "Traceback" not in stderr and "BrokenPipeError" not in stderr, stderr
