"""`autorec replay`: a log served as a live stream over a real websocket."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys

import pytest
from test_sim_support import DEADLINE, receive

from autorec import events
from autorec.io.logfile import LogReader, LogWriter
from autorec.io.replayserver import ReplayServer, playback_offsets
from tests.support.eventbuilder import device_info, event
from tests.support.polling import wait_until, wait_until_async


def _event(kind: str, t: float | None) -> bytes:
    """An event of `kind` with nothing set but its timestamp (none if `t` is None; device_info: connected)."""
    return (device_info(connected=True) if kind == "device_info" else event(kind, t)).SerializeToString()


def test_playback_offsets_keep_untimed_records_in_place():
    payloads = [
        _event("electrode_state", None),  # before any timestamp: due at once
        _event("hv_regulator", 100.0),
        _event("device_info", None),
        b"\xff\xff garbage",
        _event("hv_regulator", 100.5),
        _event("electrode_state", None),
        _event("hv_regulator", 99.0),  # clock stepped back: plays on at once
        _event("hv_regulator", 101.0),
        _event("hv_regulator", 200.0),
    ]
    due = [d for d, _ in playback_offsets(payloads)]
    assert due == [0.0, 0.0, 0.0, 0.0, 0.5, 0.5, 0.5, 1.0, 100.0]
    capped = [d for d, _ in playback_offsets(payloads, max_gap=2.0)]
    assert capped[-1] == 3.0
    assert [p for _, p in playback_offsets(payloads)] == payloads


def _play(path, speed: float, loop: bool = False, limit: int | None = None):
    async def main():
        async with ReplayServer(path, speed=speed, loop=loop, port=0, wait_for_clients=1) as server:
            got = asyncio.ensure_future(receive(server.uri, limit=limit))
            if limit is None:
                await asyncio.wait_for(server.wait_finished(), DEADLINE)
                await asyncio.wait_for(server.broadcaster.drain(DEADLINE), DEADLINE)
            else:
                await asyncio.wait_for(asyncio.shield(got), DEADLINE)
            stats = server.stats
        return await got, stats

    return asyncio.run(main())


def test_replay_of_upstream_log_keeps_records_and_timing(upstream_log, upstream_counts):
    records = [r.payload for r in LogReader(upstream_log).records()]
    msgs, stats = _play(upstream_log, speed=10)
    assert [m.payload for m in msgs] == records
    assert len(records) == upstream_counts["records"]
    assert stats["passes"] == 1
    # spacing: arrival times follow the timestamps / 10
    first_at, first_ts = None, None
    errors = []
    for m in msgs:
        ts = events.timestamp(events.decode(m.payload))
        if ts is None:
            continue
        if first_at is None:
            first_at, first_ts = m.at, ts
            continue
        errors.append((m.at - first_at) - (ts - first_ts) / 10)
    span = (max(events.timestamp(events.decode(p)) or 0 for p in records) - first_ts) / 10
    assert span > 2.5
    assert msgs[-1].at - first_at == pytest.approx(span, abs=0.25)
    errors.sort()
    assert abs(errors[len(errors) // 2]) < 0.05  # median
    assert errors[int(len(errors) * 0.9)] < 0.2  # late by load at most now and then, never early
    assert errors[0] > -0.02


def test_replay_loop_starts_again(tmp_path):
    path = tmp_path / "short.bin"
    payloads = [_event("hv_regulator", 1000.0 + i * 0.1) for i in range(5)] + [_event("electrode_state", None)]
    with LogWriter(path) as w:
        for p in payloads:
            w.write(p)
    msgs, stats = _play(path, speed=20, loop=True, limit=3 * len(payloads))
    assert [m.payload for m in msgs] == payloads * 3
    assert stats["passes"] >= 2


def test_replay_cli_errors_and_truncated_log(tmp_path):
    missing = tmp_path / "missing.bin"
    r = subprocess.run(
        [sys.executable, "-m", "autorec", "replay", str(missing), "--port", "0"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 1 and "no such log file" in r.stderr
    r = subprocess.run(
        [sys.executable, "-m", "autorec", "replay", str(missing), "--speed", "0"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 2 and "--speed must be above zero" in r.stderr

    cut = tmp_path / "cut.bin"
    with LogWriter(cut) as w:
        for i in range(3):
            w.write(_event("hv_regulator", 1000.0 + i * 0.01))
    with open(cut, "ab") as f:
        f.write(b"\x40\x00\x00\x00partial")
    r = subprocess.run(
        [sys.executable, "-m", "autorec", "replay", str(cut), "--port", "0"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    assert "sent 3 record(s)" in r.stdout
    assert "ends inside a record" in r.stderr


def test_long_gaps_are_announced_before_playing_with_the_way_out(tmp_path, caplog):
    """A rig clock that stepped years ahead would make even --speed 1000 wait for days: warn at start.
    A single damaged timestamp makes nobody wait: the recorder's clock rule calls it an outlier."""
    from autorec.io.replayserver import long_gaps

    t0 = 1_795_520_000.0
    years = 2 * 365 * 86400.0
    payloads = [_event("hv_regulator", t0 + i) for i in range(3)]
    payloads += [_event("hv_regulator", t0 + years)]  # one damaged record two years on
    payloads += [_event("hv_regulator", t0 + 7202 + i) for i in range(3)]  # a real two-hour pause
    payloads += [_event("hv_regulator", t0 + years + i) for i in range(3)]  # the rig's clock steps
    offsets = list(playback_offsets(payloads))
    assert offsets[3][0] == 2.0  # the damaged record is due with the one before it
    assert [round(g) for _, g in long_gaps(offsets)] == [7200, round(years - 7204)]
    assert long_gaps(playback_offsets(payloads, max_gap=10.0)) == []
    log = tmp_path / "damaged.bin"
    with LogWriter(log) as w:
        for p in payloads:
            w.write(p)

    async def main():
        async with ReplayServer(log, speed=1000.0, port=0, wait_for_clients=1):
            # the warning comes before any client is there to receive: nothing was played yet
            await wait_until_async(lambda: "quiet stretch" in caplog.text, DEADLINE, "the quiet-stretch warning")

    with caplog.at_level("WARNING", logger="autorec.io.replayserver"):
        asyncio.run(main())
    [line] = [r.getMessage() for r in caplog.records if "quiet stretch" in r.getMessage()]
    assert "2 quiet stretch(es) longer than 60.0min" in line and "--max-gap" in line


def _ignore_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # what a shell does to a background job (`cmd &`)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_replay_ends_cleanly_on_sigint_and_sigterm_even_as_a_background_job(tmp_path, sig):
    log = tmp_path / "loop.bin"
    with LogWriter(log) as w:
        for i in range(20):
            w.write(_event("hv_regulator", 1000.0 + i * 0.5))
    out = tmp_path / "out.txt"
    with open(out, "w") as stdout:
        proc = subprocess.Popen(
            [sys.executable, "-m", "autorec", "replay", str(log), "--loop", "--port", "0"],
            stdout=stdout,
            stderr=subprocess.PIPE,
            text=True,
            preexec_fn=_ignore_sigint,
        )
        try:
            # the handlers are installed before the "serving" line is printed
            wait_until(lambda: "serving" in out.read_text() or proc.poll() is not None, DEADLINE, "serving line")
            proc.send_signal(sig)
            _, err = proc.communicate(timeout=DEADLINE)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert proc.returncode == 0, err
    last = out.read_text().splitlines()[-1]
    assert last.startswith(f"autorec replay: stopped by {sig.name}; sent ")
    assert last.endswith(f"record(s) in 0 pass(es) of {log}")
