"""AlertMonitor: sans-I/O, driven with exact times; no clock, no sleeps."""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path

import pytest

from autorec.services.alerts import CAMERA_STALLED, DISCONNECTED, DISK_FLOOR, AlertAction, AlertMonitor, AlertReporter
from autorec.services.hooks import HookRunner
from tests.support.polling import wait_until_async

T0 = 1_795_516_318.0  # a rig's wall clock, as in the upstream fixture


def _summary(actions: list[AlertAction]) -> list[tuple[str, str, float]]:
    return [(a.state, a.key, a.time) for a in actions]


def _stream(mon: AlertMonitor, start: float, end: float, step: float, kinds: tuple[str, ...]) -> list[AlertAction]:
    """Feed `kinds` every `step` seconds from `start` (inclusive) to `end` (exclusive)."""
    out = []
    n = 0
    while start + n * step < end:
        t = start + n * step
        for k in kinds:
            out += mon.message(t, k)
        n += 1
    return out


def test_disconnect_alert_after_exactly_alert_after_and_cleared_once() -> None:
    mon = AlertMonitor(alert_after=60.0)
    assert mon.connected(T0) == []
    assert mon.disconnected(T0 + 5) == []
    # reconnect attempts that fail keep the first disconnect time
    assert mon.disconnected(T0 + 30) == []
    assert mon.tick(T0 + 64.999) == []
    raised = mon.tick(T0 + 65.0)
    assert _summary(raised) == [("raised", DISCONNECTED, T0 + 65.0)]
    assert raised[0].alert.since == T0 + 5
    assert raised[0].message.startswith("source disconnected for 60.0s (since ")
    # once only, however long it lasts
    assert mon.tick(T0 + 66) == [] and mon.disconnected(T0 + 200) == [] and mon.tick(T0 + 3600) == []
    assert list(mon.active) == [DISCONNECTED]
    cleared = mon.connected(T0 + 80)
    assert _summary(cleared) == [("cleared", DISCONNECTED, T0 + 80)]
    assert cleared[0].message == "source reconnected after 75.0s"
    assert mon.active == {} and mon.connected(T0 + 81) == []
    # a second outage raises again
    mon.disconnected(T0 + 100)
    assert _summary(mon.tick(T0 + 160)) == [("raised", DISCONNECTED, T0 + 160)]


def test_short_outage_never_alerts_and_a_message_counts_as_reconnected() -> None:
    mon = AlertMonitor(alert_after=60.0)
    mon.connected(T0)
    mon.disconnected(T0 + 1)
    assert mon.tick(T0 + 60.9) == []
    assert mon.message(T0 + 61, "hv_regulator") == []
    assert mon.tick(T0 + 500) == []  # connected: silence alone is not an outage


def test_camera_stall_raised_while_others_flow_and_cleared_by_next_frame() -> None:
    mon = AlertMonitor(alert_after=60.0, camera_stall=10.0)
    mon.connected(T0)
    # 4 fps camera with a sensor message after each frame, for 5 s
    assert _stream(mon, T0, T0 + 5, 0.25, ("image_transform", "image", "scan_capacitance")) == []
    last_frame = T0 + 4.75
    # frames stop; sensors go on at 4/s
    actions = _stream(mon, T0 + 5, T0 + 30, 0.25, ("scan_capacitance",))
    assert _summary(actions) == [("raised", CAMERA_STALLED, last_frame + 10.0)]
    assert actions[0].alert.since == last_frame
    assert "camera frames stopped: none for 10.0s while other messages flow" in actions[0].message
    # once only
    assert _stream(mon, T0 + 30, T0 + 40, 0.25, ("scan_capacitance",)) == []
    cleared = mon.message(T0 + 40.5, "image")
    assert _summary(cleared) == [("cleared", CAMERA_STALLED, T0 + 40.5)]
    assert cleared[0].message == "camera frames resumed after 35.8s"
    assert mon.active == {}


def test_silent_stream_is_not_a_camera_stall_and_no_camera_means_no_alert() -> None:
    mon = AlertMonitor(camera_stall=10.0)
    mon.connected(T0)
    mon.message(T0, "image")
    mon.message(T0 + 0.1, "scan_capacitance")
    # everything stops (pdserver hung): ticks only, no camera alert
    assert mon.tick(T0 + 100) == []
    # a rig without a camera: sensors only, never a camera alert
    no_cam = AlertMonitor(camera_stall=10.0)
    no_cam.connected(T0)
    assert _stream(no_cam, T0, T0 + 60, 0.5, ("group_capacitance",)) == []
    # camera alerts off
    off = AlertMonitor(camera_stall=None)
    off.connected(T0)
    off.message(T0, "image")
    assert _stream(off, T0 + 1, T0 + 60, 0.5, ("group_capacitance",)) == []


def test_camera_window_restarts_after_reconnect() -> None:
    mon = AlertMonitor(alert_after=60.0, camera_stall=10.0)
    mon.connected(T0)
    mon.message(T0, "image")
    mon.disconnected(T0 + 1)
    assert mon.connected(T0 + 40) == []
    # others flow after the reconnect; the camera gets a fresh 10 s
    assert _stream(mon, T0 + 40, T0 + 50, 0.5, ("hv_regulator",)) == []
    assert _summary(mon.message(T0 + 50, "hv_regulator")) == [("raised", CAMERA_STALLED, T0 + 50)]


def test_a_clock_jump_back_gives_no_negative_durations_or_spurious_alerts() -> None:
    mon = AlertMonitor(alert_after=60.0, camera_stall=10.0)
    mon.connected(T0)
    mon.message(T0, "image")
    mon.disconnected(T0 + 10)
    # the rig's clock is set back an hour while we wait
    assert mon.tick(T0 - 3600) == []
    assert mon.tick(T0 - 3600 + 59) == []
    raised = mon.tick(T0 - 3600 + 60)
    assert _summary(raised) == [("raised", DISCONNECTED, T0 - 3600 + 60)]
    assert raised[0].alert.since == T0 - 3600


def test_plugin_disabled_once_per_rule_until_enabled() -> None:
    mon = AlertMonitor()
    a = mon.plugin_disabled(T0 + 3, "bubbles", "ZeroDivisionError: float division by zero", errors=10)
    assert _summary(a) == [("raised", "plugin_disabled:bubbles", T0 + 3)]
    assert a[0].message == "rule 'bubbles' disabled after 10 errors (ZeroDivisionError: float division by zero)"
    assert a[0].hook_values()["rules"] == "bubbles"
    assert mon.plugin_disabled(T0 + 4, "bubbles", "again") == []
    assert _summary(mon.plugin_disabled(T0 + 5, "splits")) == [("raised", "plugin_disabled:splits", T0 + 5)]
    assert _summary(mon.plugin_enabled(T0 + 9, "bubbles")) == [("cleared", "plugin_disabled:bubbles", T0 + 9)]
    assert mon.plugin_enabled(T0 + 9, "bubbles") == []
    assert list(mon.active) == ["plugin_disabled:splits"]


def test_disk_floor_raised_and_cleared_with_sizes() -> None:
    mon = AlertMonitor()
    a = mon.disk_floor_reached(T0 + 1, free=800_000_000, floor=1_000_000_000)
    assert _summary(a) == [("raised", DISK_FLOOR, T0 + 1)]
    assert a[0].message == "disk floor reached: 800.0MB free, floor 1.0GB; no new segments"
    assert mon.disk_floor_reached(T0 + 2, free=700_000_000, floor=1_000_000_000) == []
    c = mon.disk_floor_cleared(T0 + 30, free=2_100_000_000)
    assert _summary(c) == [("cleared", DISK_FLOOR, T0 + 30)]
    assert c[0].message == "disk space back: 2.1GB free, recording resumes"
    assert mon.disk_floor_cleared(T0 + 31, free=2_100_000_000) == []


def test_hook_values_and_status_for_the_status_file() -> None:
    mon = AlertMonitor(alert_after=1.0)
    mon.disconnected(T0)
    [raised] = mon.tick(T0 + 2)
    values = raised.hook_values()
    assert values == {
        "alert": DISCONNECTED,
        "message": raised.message,
        "state": "raised",
        "time": T0 + 2,
        "since": T0,
        "start": T0,
        "end": T0 + 2,
        "rules": None,
    }
    [status] = mon.status()
    assert status["key"] == DISCONNECTED and status["since"] == T0 and status["time"] == T0 + 2
    [cleared] = mon.connected(T0 + 5)
    assert cleared.hook_values()["state"] == "cleared" and cleared.hook_values()["end"] == T0 + 5
    assert cleared.as_dict()["alert"]["key"] == DISCONNECTED


@pytest.mark.parametrize(("kwargs", "message"), [({"alert_after": -1}, "alert_after"), ({"camera_stall": 0}, "camera")])
def test_bad_settings(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        AlertMonitor(**kwargs)


# -- end to end: a real simulator that stops, comes back without its camera, then with it ---------------------------


def test_alerts_and_on_alert_hook_against_the_simulator(tmp_path: Path) -> None:
    """Disconnected and camera_stalled alerts raised and cleared from a real websocket stream, announced by hook."""
    from autorec.io.source import Connected, Disconnected, WebsocketSource
    from autorec.sim import config as config_mod
    from autorec.sim import server as server_mod

    out = tmp_path / "alerts log.txt"
    append = "import sys; open(sys.argv[1], 'a').write(' '.join(sys.argv[2:]) + '\\n')"
    # on_alert hooks run one at a time in submission order, so the file lists the alerts in order
    hooks = HookRunner({"on_alert": [sys.executable, "-c", append, str(out), "{state}", "{alert}"]}, timeout=30)
    reporter = AlertReporter(AlertMonitor(alert_after=0.5, camera_stall=1.0), hooks)
    seen = {"image": 0, "other": 0}

    def sim(camera: bool, port: int) -> object:
        return server_mod.SimServerThread(config_mod.SimConfig(scenario="demo", camera=camera, fps=10), port=port)

    async def until(predicate, what: str) -> None:
        await wait_until_async(predicate, 30.0, lambda: f"{what}; alerts: {_summary(list(reporter.announced))}", 0.02)

    async def main() -> None:
        first = sim(True, 0)
        server = await asyncio.to_thread(first.__enter__)
        port = server.port
        source = WebsocketSource(server.uri, min_backoff=0.05, max_backoff=0.2)

        async def consume() -> None:
            async for item in source:
                now = time.monotonic()  # the test's stream clock: the monitor only needs consistency
                if isinstance(item, Connected):
                    reporter.connected(now)
                elif isinstance(item, Disconnected):
                    reporter.disconnected(now)
                elif item.rejected is None:
                    seen["image" if item.kind == "image" else "other"] += 1
                    reporter.message(now, item.kind)

        async def ticker() -> None:
            while True:
                await asyncio.sleep(0.02)  # the pipeline's tick, as feed_live does
                reporter.tick(time.monotonic())

        tasks = [asyncio.ensure_future(consume()), asyncio.ensure_future(ticker())]
        try:
            await until(lambda: seen["image"] >= 3 and seen["other"] >= 3, "camera frames and sensor messages")
            await asyncio.to_thread(first.__exit__, None, None, None)
            await until(lambda: DISCONNECTED in reporter.monitor.active, "the disconnected alert")
            second = sim(False, port)  # pdserver back, pdcam not
            await asyncio.to_thread(second.__enter__)
            await until(lambda: DISCONNECTED not in reporter.monitor.active, "the reconnect")
            await until(lambda: CAMERA_STALLED in reporter.monitor.active, "the camera alert")
            await asyncio.to_thread(second.__exit__, None, None, None)
            third = sim(True, port)
            await asyncio.to_thread(third.__enter__)
            try:
                await until(lambda: not reporter.monitor.active, "all alerts to clear")
            finally:
                source.stop()
                await asyncio.wait_for(tasks[0], 30)
                await asyncio.to_thread(third.__exit__, None, None, None)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    asyncio.run(main())
    assert hooks.close(30)
    announced = [(a.state, a.key) for a in reporter.announced]
    # per alert: raised, cleared, raised, cleared... (a restart may add a short outage of its own)
    for key in (DISCONNECTED, CAMERA_STALLED):
        states = [s for s, k in announced if k == key]
        assert states and states == ["raised", "cleared"] * (len(states) // 2), (key, announced)
    assert [s for s, k in announced if k == CAMERA_STALLED] == ["raised", "cleared"]
    assert out.read_text().splitlines() == [f"{s} {k}" for s, k in announced]
    assert hooks.counters["ok"] == len(announced)
