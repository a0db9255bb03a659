"""`autorec sim` end to end: a real SimServer on 127.0.0.1 and real websocket clients."""

from __future__ import annotations

import asyncio
import collections
import json
import subprocess
import sys
import time

import pytest
from test_sim_support import DEADLINE, decoded, electrode_changes, receive, stream_run
from websockets.asyncio.client import connect

from autorec import events
from autorec.sim.config import SimConfig
from autorec.sim.scenario import DEFAULT_RATES
from autorec.sim.server import SimServer, SimServerThread

T0 = 1_700_000_000.0


def test_stream_decodes_at_the_configured_rates_and_matches_truth():
    cfg = SimConfig(scenario="demo", seed=3, speed=200, duration=120, camera=False, start_time=T0)
    msgs, truth, stats = stream_run(cfg)
    evs = [ev for _, ev in decoded(msgs)]
    assert stats["dropped"] == 0 and len(msgs) == stats["published"]

    # rates, measured on the messages' own timestamps
    stamps = collections.defaultdict(list)
    for ev in evs:
        t = events.timestamp(ev)
        if t is not None:
            stamps[events.kind(ev)].append(t)
    for kind, rate in DEFAULT_RATES.items():
        ts = stamps[kind]
        assert len(ts) >= 5, kind
        measured = (len(ts) - 1) / (ts[-1] - ts[0])
        assert measured == pytest.approx(rate, rel=0.2), kind
    assert min(min(ts) for ts in stamps.values()) >= T0
    assert max(max(ts) for ts in stamps.values()) <= T0 + 120

    # every electrode change lies in a truth activity window, every window holds changes
    changes = [t for t, _ in electrode_changes(evs)]
    windows = truth["activity"]
    assert len(windows) >= 2 and len(changes) >= 10
    slack = 0.3  # electrode_state has no timestamp: it carries the previous message's time
    for t in changes:
        assert any(w["start"] - slack <= t <= w["end"] for w in windows), t
    for w in windows:
        assert any(w["start"] - slack <= t <= w["end"] for t in changes), w
    # unchanged electrode_state keeps coming between bursts
    n_states = sum(1 for ev in evs if events.kind(ev) == "electrode_state")
    assert n_states > len(changes) + 30


def test_same_seed_same_stream_over_the_wire():
    def run(seed: int) -> list[bytes]:
        cfg = SimConfig(scenario="demo", seed=seed, speed=400, duration=40, camera=False, start_time=T0)
        return [m.payload for m in stream_run(cfg)[0]]

    a, b, c = run(5), run(5), run(6)
    assert a == b
    assert len(a) > 200
    assert a != c


def test_faults_arrive_as_asked():
    cfg = SimConfig(
        scenario="idle",
        speed=50,
        duration=12,
        camera=False,
        faults={"garbage": 2.0, "text": 3.0, "truncated": 4.0, "oversized": 5.0},
        start_time=T0,
    )
    msgs, truth, _ = stream_run(cfg)
    texts = [m for m in msgs if isinstance(m.payload, str)]
    assert len(texts) == 4  # at 3, 6, 9, 12 s
    bad, big = 0, 0
    for m in msgs:
        if isinstance(m.payload, bytes):
            try:
                ev = events.decode(m.payload)
            except events.DecodeError:
                bad += 1
                continue
            if len(m.payload) > 1 << 20:
                big += 1
                assert events.kind(ev) == "image"
    assert bad == 6 + 3  # garbage at 2..12 s, truncated at 4, 8, 12 s
    assert big == 2
    assert sorted({f["what"] for f in truth["faults"]}) == ["garbage", "oversized", "text", "truncated"]


def test_close_fault_closes_every_connection_and_clients_can_reconnect():
    cfg = SimConfig(scenario="idle", speed=20, duration=3, camera=False, faults={"close": 1.0}, wait_for_clients=2)

    async def main() -> None:
        async with SimServer(cfg, port=0) as server:
            a = asyncio.ensure_future(receive(server.uri))
            b = asyncio.ensure_future(receive(server.uri))
            first = await asyncio.wait_for(asyncio.gather(a, b), DEADLINE)
            assert all(len(got) > 0 for got in first)  # closed after the first second, not at the end
            again = await asyncio.wait_for(receive(server.uri, limit=5), DEADLINE)
            assert len(again) == 5
            await asyncio.wait_for(server.wait_finished(), DEADLINE)
            assert server.stats["connection_closes"] >= 2
            assert [d["what"] for d in server.truth["disconnects"]][:1] == ["connections closed"]

    asyncio.run(main())


def test_stalled_client_does_not_hold_up_the_other():
    # Camera on: big frames (~40 MB in all) fill a stalled client's socket buffers and queue quickly.
    # The queue bound must stay well above what a live client on a slow machine falls behind by
    # (at 50x it lost frames once with the load average ~5; at 20x with an 8 MB bound, once on a
    # host running at two thirds of its usual speed), and well below the ~40 MB the stalled one misses.
    cfg = SimConfig(scenario="demo", speed=20, duration=40, fps=10, max_queue_bytes=16_000_000, wait_for_clients=2)

    async def main() -> None:
        async with SimServer(cfg, port=0) as server:
            async with connect(server.uri, max_size=None, max_queue=4) as stalled:
                got = asyncio.ensure_future(receive(server.uri))
                await asyncio.wait_for(server.wait_finished(), DEADLINE)
                published = server.broadcaster.published
                deadline = time.monotonic() + DEADLINE
                while max(c["sent"] for c in server.stats["clients"]) < published:
                    assert time.monotonic() < deadline, "the live client never got everything"
                    await asyncio.sleep(0.01)
                stats = server.stats
                stalled.transport.abort()  # a stalled peer cannot complete a closing handshake
        msgs = await got  # the live client's connection closes with the server
        live, stuck = sorted(stats["clients"], key=lambda c: c["dropped"])
        assert live["dropped"] == 0
        assert live["sent"] == published == len(msgs)
        assert stuck["dropped"] > 0
        # the live client kept pace: the stream took about duration / speed
        assert msgs[-1].at - msgs[0].at < 40 / 20 * 5

    asyncio.run(main())


def test_pace_to_clients_holds_the_clock_for_a_slow_client_and_loses_nothing():
    # run --sim: the one client is the recorder. A client that stops reading for a while (a busy machine)
    # holds the simulated clock once 8 MB are queued for it, and gets every message when it reads again.
    cfg = SimConfig(scenario="demo", speed=200, duration=40, fps=10, max_queue_bytes=16_000_000, wait_for_clients=1)
    cfg.pace_to_clients = True

    async def main() -> None:
        async with SimServer(cfg, port=0) as server:
            async with connect(server.uri, max_size=None, max_queue=4) as slow:
                await asyncio.sleep(1.0)  # not reading: 40 s at 200x is 0.2 s, the camera alone ~40 MB
                held_at = server.sent_until
                queued = server.broadcaster.queued_bytes()
                assert not server.finished, "the clock did not wait for the client"
                assert queued <= 8 * 1024 * 1024 + 4_000_000, queued  # the pacing bound plus one batch
                got = 0
                while not (server.finished and got >= server.broadcaster.published):
                    await asyncio.wait_for(slow.recv(), DEADLINE)
                    got += 1
                stats = server.stats
                [client] = stats["clients"]
                assert client["dropped"] == 0 and got == client["sent"] == server.broadcaster.published
                assert held_at < server.sent_until  # it stood still, then went on to the end

    asyncio.run(main())


def _frames(msgs) -> list[tuple[float, float]]:
    """(arrival, timestamp) of every image event."""
    out = []
    for at, ev in decoded(msgs):
        if events.kind(ev) == "image":
            out.append((at, events.timestamp(ev)))
    return out


def test_camera_frames_pair_up_and_hold_speed():
    # The queue holds the whole run (~30 MB), so a loaded machine slows the client but loses nothing.
    cfg = SimConfig(scenario="demo", speed=100, duration=30, fps=10, max_queue_bytes=200_000_000)
    msgs, _, stats = stream_run(cfg)
    evs = [ev for _, ev in decoded(msgs)]
    kinds = [events.kind(ev) for ev in evs]
    n_images = kinds.count("image")
    assert n_images == pytest.approx(300, abs=2)
    for i, k in enumerate(kinds):
        if k == "image":
            assert kinds[i - 1] == "image_transform"
            assert events.timestamp(evs[i]) == events.timestamp(evs[i - 1])
    it = next(ev.image_transform for ev in evs if events.kind(ev) == "image_transform")
    assert (it.image_width, it.image_height) == (1024, 768) and len(it.transform) == 9
    frames = _frames(msgs)
    factor = (frames[-1][1] - frames[0][1]) / (frames[-1][0] - frames[0][0])
    assert factor > 20, f"{factor:.1f}x"
    assert stats["dropped"] == 0


def test_sim_server_thread_and_truth_file(tmp_path):
    truth_path = tmp_path / "truth.json"
    cfg = SimConfig(scenario="demo", speed=400, duration=60, camera=False, truth=str(truth_path))
    handle = SimServerThread(cfg)
    with handle as server:
        assert server.uri.startswith("ws://127.0.0.1:")
        assert handle.wait_finished(DEADLINE)
        assert server.finished
    truth = json.loads(truth_path.read_text())
    assert set(truth) >= {"activity", "lighting", "disconnects"}
    assert truth["activity"] and truth["activity"][0]["end"] > truth["activity"][0]["start"] > time.time() - 3600


def test_cli_sim_runs_and_reports_bad_scenario(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("timeline:\n  - jump: 1\n")
    r = subprocess.run(
        [sys.executable, "-m", "autorec", "sim", "--scenario", str(bad), "--port", "0"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 2
    assert f"{bad}:2: timeline: unknown step 'jump'" in r.stderr
    truth = tmp_path / "t.json"
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "autorec",
            "sim",
            "--port",
            "0",
            "--speed",
            "500",
            "--duration",
            "30s",
            "--no-camera",
            "--truth",
            str(truth),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    assert "serving on ws://127.0.0.1:" in r.stdout
    # the last line is a sentence, not a dict
    last = r.stdout.splitlines()[-1]
    assert last.startswith("autorec sim: duration reached; published ") and "{" not in last
    assert "30.0s of simulated time" in last and "0 client(s) received 0B" in last
    assert json.loads(truth.read_text())["activity"][0]["what"].startswith("burst")
