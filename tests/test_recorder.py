"""EventRecorder / AsyncEventRecorder against a real websockets server on 127.0.0.1."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

# The errors from `autorec` itself, as a script imports them (they are the stable surface too).
from autorec import (
    AsyncEventRecorder,
    EventRecorder,
    RecorderConnectError,
    RecorderDiskError,
    RecorderError,
    RecorderTimeout,
)
from autorec.io.logfile import LogReader
from tests.support.polling import wait_until_async
from tests.support.upstreamreader import upstream_read
from tests.support.wsfixtures import EventServer, fixture_payloads, wait_until

REPO = Path(__file__).resolve().parent.parent


def recorder_threads() -> list[str]:
    """The names of autorec's own recorder threads still alive (`autorec-EventRecorder`)."""
    return [t.name for t in threading.enumerate() if t.name == "autorec-EventRecorder"]


def records(path: Path) -> list[bytes]:
    return [r.payload for r in LogReader(path)]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd")) if os.path.isdir("/proc/self/fd") else 0


@pytest.fixture
def payloads(stream_log: Path) -> list[bytes]:
    return fixture_payloads(stream_log)


def test_three_captures_every_record_checked(payloads: list[bytes], tmp_path: Path) -> None:
    chunks = [payloads[0:80], payloads[80:160], payloads[160:]]
    greeting = payloads[:3]  # sent the instant a client connects: start() must not miss them
    with EventServer(greeting=greeting) as server:
        rec = EventRecorder(server.uri)
        for i, chunk in enumerate(chunks):
            path = tmp_path / f"log{i}.bin"
            rec.start(path)
            assert rec.recording
            with pytest.raises(RecorderError, match="already recording"):
                rec.start(tmp_path / "other.bin")
            server.wait_for_clients(1)
            server.broadcast(chunk)
            expected = len(greeting) + len(chunk)
            wait_until(lambda n=expected: rec.count == n, 20, "the capture to catch up")
            assert rec.stop() == expected
            assert not rec.recording
            wait_until(lambda: server.clients == 0, 10, "the recorder to disconnect")
            server.broadcast(payloads[:5])  # between captures: nobody listening, goes nowhere
        rec.close()
    for i, chunk in enumerate(chunks):
        assert records(tmp_path / f"log{i}.bin") == [*greeting, *chunk]
        assert upstream_read(tmp_path / f"log{i}.bin") == [*greeting, *chunk]
    assert not (tmp_path / "other.bin").exists()


def test_rejected_frames_go_beside_the_log(payloads: list[bytes], tmp_path: Path) -> None:
    with EventServer(greeting=[payloads[0], b"\x00junk", "text", payloads[1]]) as server:
        with EventRecorder(server.uri) as rec:
            rec.start(tmp_path / "x.bin")
            wait_until(lambda: rec.count == 2 and rec.rejected == 1, 20, "the greeting")
            assert rec.stop() == 2
    assert records(tmp_path / "x.bin") == payloads[:2]
    assert records(tmp_path / "x.bin.rejected") == [b"\x00junk"]


def test_start_against_nothing_listening(tmp_path: Path) -> None:
    rec = EventRecorder(f"ws://127.0.0.1:{free_port()}", connect_timeout=0.5)
    started = time.monotonic()
    with pytest.raises(RecorderConnectError, match="connection refused"):
        rec.start(tmp_path / "never.bin")
    assert time.monotonic() - started < 10
    assert not (tmp_path / "never.bin").exists()  # nothing created or truncated
    assert not rec.recording
    with pytest.raises(RecorderError, match="not recording"):
        rec.stop()


def test_start_refuses_existing_file_in_new_mode(payloads: list[bytes], tmp_path: Path) -> None:
    path = tmp_path / "kept.bin"
    path.write_bytes(b"precious")
    with EventServer() as server:
        rec = EventRecorder(server.uri, mode="new")
        with pytest.raises(FileExistsError):
            rec.start(path)
        assert path.read_bytes() == b"precious"
        rec.start(tmp_path / "fresh.bin")  # the recorder is usable afterwards
        assert rec.stop() == 0


def test_server_dies_mid_capture_error_raised_on_stop(payloads: list[bytes], tmp_path: Path) -> None:
    with EventServer() as server:
        rec = EventRecorder(server.uri, reconnect_timeout=0.5, min_backoff=0.05, max_backoff=0.1)
        rec.start(tmp_path / "a.bin")
        server.wait_for_clients(1)
        server.broadcast(payloads[:30])
        wait_until(lambda: rec.count == 30, 20, "30 events")
        server.stop()
        wait_until(lambda: not rec.recording, 20, "the capture to give up")
        with pytest.raises(RecorderError, match=r"did not come back within 0\.5s") as err:
            rec.stop()
        assert err.value.count == 30
        # raised once: the recorder can start again when the server is back
        server.start()
        rec.start(tmp_path / "b.bin")
        assert rec.stop() == 0
    assert records(tmp_path / "a.bin") == payloads[:30]


def test_background_error_raised_on_next_start(payloads: list[bytes], tmp_path: Path) -> None:
    with EventServer() as server:
        rec = EventRecorder(server.uri, reconnect_timeout=0.3, min_backoff=0.05, max_backoff=0.1)
        rec.start(tmp_path / "a.bin")
        server.stop()
        wait_until(lambda: not rec.recording, 20, "the capture to give up")
        with pytest.raises(RecorderError, match="did not come back"):
            rec.start(tmp_path / "b.bin")
        server.start()
        rec.start(tmp_path / "b.bin")
        rec.close()


def test_server_comes_back_in_time_leaves_a_gap(payloads: list[bytes], tmp_path: Path) -> None:
    with EventServer() as server:
        rec = EventRecorder(server.uri, reconnect_timeout=30, min_backoff=0.02, max_backoff=0.1)
        rec.start(tmp_path / "g.bin")
        server.wait_for_clients(1)
        server.broadcast(payloads[:10])
        wait_until(lambda: rec.count == 10, 20, "first events")
        server.drop_connections()
        wait_until(lambda: server.connects == 2 and server.clients == 1, 20, "the reconnect")
        server.broadcast(payloads[10:20])
        wait_until(lambda: rec.count == 20, 20, "events after the gap")
        assert rec.stop() == 20
        (gap,) = rec.gaps
        assert gap.cause == "connection lost (no close frame)" and gap.end is not None
    assert records(tmp_path / "g.bin") == payloads[:20]


def test_stop_timeout_then_stop_again(payloads: list[bytes], tmp_path: Path) -> None:
    with EventServer() as server:
        rec = EventRecorder(server.uri, close_timeout=1.5)
        rec.start(tmp_path / "t.bin")
        server.wait_for_clients(1)
        server.broadcast(payloads[:40])
        wait_until(lambda: rec.count == 40, 20, "40 events")
        server.pause_reading()  # the server no longer answers our close frame
        with pytest.raises(RecorderTimeout, match=r"did not finish within 0\.2s") as err:
            rec.stop(timeout=0.2)
        assert err.value.count == 40
        with pytest.raises(RecorderError, match="already stopping"):
            rec.start(tmp_path / "u.bin")
        assert rec.stop(timeout=20) == 40  # the websocket close gives up after close_timeout
    assert records(tmp_path / "t.bin") == payloads[:40]


def test_disk_error_is_raised_not_lost(payloads: list[bytes], full_disk: Path) -> None:
    # Since the capture loop is shared with `autorec record`, a disk error no longer ends the capture:
    # the records are counted as lost while it goes on, and stop() raises (tests/test_capture.py has more).
    with EventServer(greeting=payloads[:5]) as server:
        rec = EventRecorder(server.uri)
        rec.start(full_disk)
        wait_until(lambda: rec.lost == 5, 20, "5 records lost")
        assert rec.recording and rec.count == 0
        with pytest.raises(RecorderDiskError, match="No space left on device") as err:
            rec.stop()
        assert (err.value.lost, err.value.count) == (5, 0)


def test_many_quick_cycles_leak_no_threads_or_sockets(payloads: list[bytes], tmp_path: Path) -> None:
    with EventServer(greeting=payloads[:2]) as server:
        rec = EventRecorder(server.uri)
        rec.start(tmp_path / "warmup.bin")
        rec.stop()
        fds = open_fds()
        for i in range(25):
            path = tmp_path / f"c{i}.bin"
            rec.start(path)
            wait_until(lambda: rec.count == 2, 20, "the greeting")
            assert rec.stop() == 2
        # server-side sockets close asynchronously: poll, don't sleep
        wait_until(lambda: server.clients == 0, 10, "server-side connections to close")
        # Thread counts of the whole process vary with what else runs in it (xdist, executors):
        # count the recorder's own threads, which end shortly after stop() returns.
        wait_until(lambda: not recorder_threads(), 10, f"recorder threads to end ({recorder_threads()})")
        wait_until(lambda: open_fds() <= fds, 10, f"open fds back to {fds} (now {open_fds()})")
    assert all(records(tmp_path / f"c{i}.bin") == payloads[:2] for i in range(25))


def test_async_recorder_on_the_callers_loop(payloads: list[bytes], tmp_path: Path) -> None:
    async def main(uri: str, server: EventServer) -> None:
        async with AsyncEventRecorder(uri) as rec:
            for i in range(2):
                await rec.start(tmp_path / f"a{i}.bin")
                with pytest.raises(RecorderError, match="already recording"):
                    await rec.start(tmp_path / "other.bin")
                await asyncio.to_thread(server.wait_for_clients, 1)
                await asyncio.to_thread(server.broadcast, payloads[:7])
                await wait_until_async(lambda: rec.count >= 7, 20, "7 events recorded")
                assert await rec.stop() == 7
                await asyncio.to_thread(wait_until, lambda: server.clients == 0, 10, "disconnect")
        await wait_until_async(lambda: not recorder_threads(), 10, "no recorder threads")
        nothing = AsyncEventRecorder(f"ws://127.0.0.1:{free_port()}", connect_timeout=0.3)
        with pytest.raises(RecorderConnectError):
            await nothing.start(tmp_path / "n.bin")

    with EventServer() as server:
        asyncio.run(main(server.uri, server))
    assert records(tmp_path / "a0.bin") == records(tmp_path / "a1.bin") == payloads[:7]
    assert not (tmp_path / "n.bin").exists()


def test_cookbook_demo_runs(payloads: list[bytes], tmp_path: Path) -> None:
    with EventServer(greeting=payloads[:4]) as server:
        env = dict(
            os.environ,
            PURPLEDROP_URI=server.uri,
            DEMO_CAPTURE_SECONDS="0.3",
            DEMO_PAUSE_SECONDS="0",
            PYTHONPATH=str(REPO),
        )
        done = subprocess.run(
            [sys.executable, str(REPO / "examples" / "event_recorder_demo.py")],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [f"log{i}.bin: 4 events" for i in range(3)]
    assert all(records(tmp_path / f"log{i}.bin") == payloads[:4] for i in range(3))


def test_script_that_forgets_stop_still_saves_its_log(payloads: list[bytes], tmp_path: Path) -> None:
    script = (
        "import sys, time\n"
        "from autorec import EventRecorder\n"
        "rec = EventRecorder(sys.argv[1])\n"
        "rec.start(sys.argv[2])\n"
        "deadline = time.monotonic() + 30\n"
        "while rec.count < 6 and time.monotonic() < deadline:\n"
        "    time.sleep(0.01)\n"
        "print(rec.count)\n"  # and exit without stop(): the interpreter must neither hang nor lose the buffer
    )
    with EventServer(greeting=payloads[:6]) as server:
        done = subprocess.run(
            [sys.executable, "-c", script, server.uri, str(tmp_path / "f.bin")],
            env=dict(os.environ, PYTHONPATH=str(REPO)),
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "6"
    assert records(tmp_path / "f.bin") == payloads[:6]
