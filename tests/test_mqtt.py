"""MQTT events against a real Mosquitto broker started by the tests (Debian's `mosquitto`).

A recorder (a `run` subprocess) publishes `available` (online, then the last will on kill -9),
a segment's `new` and `end`, a disconnect alert raised and cleared, and the retained `status`;
a broker restarted mid-run is reconnected to while recording goes on; while the broker is down
or stalls, publishing never blocks and what waits is bounded and counted.
"""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from autorec.cli import main
from autorec.rig import default_rig_name
from autorec.rules import ConfigError, parse_rules
from autorec.services.mqtt import MqttPublisher, check_topic, parse_url
from autorec.sim.config import SimConfig
from autorec.sim.server import SimServerThread
from tests.support.mosquitto import Broker, Subscriber, free_port, make_tls_files
from tests.support.polling import wait_until

pytest.importorskip("paho.mqtt", reason="the mqtt extra (paho-mqtt) is part of the test extra")

RULES = """
rules:
  - {{name: moved, trigger: electrodes, pre_roll: 1s, post_roll: 2s}}
alerts: {{alert_after: 1s}}
output: {{video: off}}
mqtt:
  url: {url}
  topic: lab/autorec
  status_every: 1s
"""


def autorec(*args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "autorec", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def start_sim(cfg: SimConfig, port: int) -> SimServerThread:
    """A simulated rig on `port` (the same port again after a stop: the rig comes back)."""
    sim = SimServerThread(cfg, "127.0.0.1", port)
    sim.__enter__()
    return sim


def read_status(out: Path) -> dict:
    try:
        return json.loads((out / "status.json").read_text())
    except (OSError, ValueError):
        return {}


# -- configuration -------------------------------------------------------------------------------


def test_urls_and_topics_are_checked_and_a_password_is_never_echoed() -> None:
    assert parse_url("mqtt://broker.lab").port == 1883
    a = parse_url("mqtts://broker.lab:9883")
    assert (a.host, a.port, a.tls) == ("broker.lab", 9883, True)
    for bad in ("http://x", "mqtt://", "mqtt://x:99999", "mqtt://x/topic"):
        with pytest.raises(ValueError):
            parse_url(bad)
    with pytest.raises(ValueError) as err:
        parse_url("mqt://lab:s3cret@broker")
    assert "s3cret" not in str(err.value) and "AUTOREC_MQTT_PASSWORD" in str(err.value)
    assert check_topic("lab/autorec") == "lab/autorec"
    for bad in ("", "a/#", "a/+/b", "/a", "a/", "a//b"):
        with pytest.raises(ValueError):
            check_topic(bad)


def test_rule_file_errors_name_file_and_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    text = "rules:\n  - {name: a, trigger: electrodes}\nmqtt:\n  url: mqtt://u:pw@b\n  topic: 'x/#'\n  qos: 2\n"
    with pytest.raises(ConfigError) as err:
        parse_rules(text, tmp_path / "r.yaml")
    lines = [e.line_text() for e in err.value.errors]
    assert lines[0].startswith(f"{tmp_path / 'r.yaml'}:4: mqtt.url: no user or password")
    assert lines[1].startswith(f"{tmp_path / 'r.yaml'}:5: mqtt.topic:")
    assert lines[2].startswith(f"{tmp_path / 'r.yaml'}:6: mqtt.qos: unknown key")
    assert "pw" not in str(err.value)
    ok = parse_rules("rules:\n  - {name: a, trigger: electrodes}\nmqtt: {url: 'mqtt://b', max_queued: 5}\n")
    assert (ok.mqtt.url, ok.mqtt.topic, ok.mqtt.max_queued, ok.mqtt.status_every) == ("mqtt://b", "autorec", 5, 60.0)
    assert parse_rules("rules:\n  - {name: a, trigger: electrodes}\n").mqtt.url is None
    path = tmp_path / "ok.yaml"
    path.write_text("rules:\n  - {name: a, trigger: electrodes}\nmqtt: {url: 'mqtts://b', topic: lab/x}\n")
    assert main(["check", str(path)]) == 0
    assert "mqtt      mqtts://b -> lab/x/RIG/  (status every 60.0s, max_queued 1000)" in capsys.readouterr().out


# -- a recorder's events -------------------------------------------------------------------------


def test_available_segments_alerts_status_and_the_last_will(tmp_path: Path) -> None:
    """One run against a simulator we control: online, a segment's new and end, the simulator stopped
    (disconnect alert raised) and started again (cleared), the retained status, then kill -9: offline."""
    with Broker(tmp_path) as broker, Subscriber(broker.port, "lab/autorec/#") as sub:
        rules = tmp_path / "rules.yaml"
        rules.write_text(RULES.format(url=broker.url))
        out = tmp_path / "out"
        sim_port = free_port()
        cfg = SimConfig(speed=20.0, seed=1, fps=2.0)
        sim = start_sim(cfg, sim_port)
        run = autorec("run", "--rules", str(rules), "--uri", f"ws://127.0.0.1:{sim_port}", "--out", str(out))
        try:
            base = "lab/autorec/"
            online = sub.wait_for(lambda m: m.topic.endswith("/available") and m.payload == "online", 20, "online")
            rig = default_rig_name()  # no --rig: the host name (the next test names one)
            assert online.topic == f"{base}{rig}/available"

            new = sub.wait_for(lambda m: m.topic.endswith("/segments") and m.json()["type"] == "new", 30, "a new")
            opened = new.json()
            assert opened["before"] == opened["after"]
            seg_id = opened["after"]["id"]
            assert opened["after"]["rules"] == ["moved"] and opened["after"]["end"] is None
            assert opened["after"]["evidence"] and opened["after"]["evidence"][0].startswith("moved: pin")
            assert opened["after"]["files"] == {"log": f"{seg_id}.bin.partial"}
            end = sub.wait_for(
                lambda m: (
                    m.topic.endswith("/segments") and m.json()["type"] == "end" and m.json()["after"]["id"] == seg_id
                ),
                30,
                "the segment's end",
            ).json()
            after = end["after"]
            assert end["before"]["id"] == seg_id and after["end"] >= after["start"]
            assert after["files"] == {"log": f"{seg_id}.bin", "sidecar": f"{seg_id}.json"}
            sidecar = json.loads((out / after["files"]["sidecar"]).read_text())
            assert after["size"] == sidecar["bytes"] == (out / after["files"]["log"]).stat().st_size > 0
            assert after["records"] == sidecar["records"] and after["close_reason"] == sidecar["close_reason"]

            sim.__exit__(None, None, None)  # the rig goes away: after alert_after, an alert
            raised = sub.wait_for(
                lambda m: m.topic == f"{base}{rig}/alerts" and m.json()["type"] == "raised", 15, "the alert raised"
            ).json()
            assert raised["key"] == "disconnected" and raised["message"].startswith("source disconnected")
            sim = start_sim(cfg, sim_port)
            cleared = sub.wait_for(
                lambda m: m.topic == f"{base}{rig}/alerts" and m.json()["type"] == "cleared", 20, "the alert cleared"
            ).json()
            assert cleared["key"] == "disconnected" and "reconnected" in cleared["message"]

            # a newcomer gets the retained status and availability at once
            with Subscriber(broker.port, f"{base}{rig}/#") as late:
                status = late.wait_for(lambda m: m.topic.endswith("/status") and m.retain, 5, "the retained status")
                assert late.wait_for(lambda m: m.topic.endswith("/available"), 5, "availability").payload == "online"
            s = status.json()
            assert s["rig"] == rig and s["counters"]["messages"] > 0 and s["counters"]["segments_closed"] >= 1
            assert s["counters"]["mqtt_published"] >= 4

            run.send_signal(signal.SIGKILL)  # no goodbye: the broker sends the last will
            run.wait(10)
            offline = sub.wait_for(
                lambda m: m.topic == f"{base}{rig}/available" and m.payload == "offline", 10, "the last will"
            )
            assert offline.payload == "offline"
            with Subscriber(broker.port, f"{base}{rig}/available") as late:
                kept = late.wait_for(lambda m: m.retain, 5, "the retained availability")
                assert kept.payload == "offline"
        finally:
            if run.poll() is None:
                run.kill()
            run.communicate(timeout=10)
            sim.__exit__(None, None, None)


def test_broker_restarted_mid_run(tmp_path: Path) -> None:
    """The broker goes away and comes back: recording goes on meanwhile, the recorder reconnects, says
    `online` again and the status resumes; a clean stop says `offline`."""
    broker = Broker(tmp_path).start()
    sub = Subscriber(broker.port, "autorec/lab-rig-2/#")
    rules = tmp_path / "rules.yaml"
    rules.write_text(RULES.format(url="mqtt://127.0.0.1:1").replace("  topic: lab/autorec\n", ""))
    out = tmp_path / "out"
    args = ["--sim", "--speed", "10", "--fps", "2", "--rig", "lab-rig-2", "--mqtt", broker.url]
    run = autorec("run", "--rules", str(rules), "--out", str(out), *args)
    try:
        sub.wait_for(lambda m: m.topic.endswith("/status"), 20, "a first status")
        broker.stop()
        down_at = read_status(out).get("counters", {}).get("messages", 0)
        wait_until(lambda: read_status(out)["counters"]["messages"] > down_at + 50, 15, "recording to go on")
        assert run.poll() is None
        restarted = time.time()
        broker.start()
        back = sub.wait_for(
            lambda m: m.topic.endswith("/status") and m.json()["updated"] > restarted, 20, "a status after the restart"
        ).json()
        onlines = [m for m in sub.received("/available") if m.payload == "online"]
        assert len(onlines) >= 2  # once at start, once after the restart
        assert back["counters"]["messages"] > down_at + 50
        run.send_signal(signal.SIGTERM)
        _, err = run.communicate(timeout=30)
        assert run.returncode == 0, err
        assert f"MQTT: connected to mqtt://127.0.0.1:{broker.port} again" in err
        assert sub.received("/available")[-1].payload == "offline"
        last = sub.received("/status")[-1].json()  # the last word: stopped, and what was kept
        final = read_status(out)["counters"]
        assert last["connected"] is False and last["counters"]["segments_closed"] == final["segments_closed"]
        assert last["counters"]["messages"] == final["messages"] and last["counters"]["mqtt_dropped"] == 0
    finally:
        if run.poll() is None:
            run.kill()
            run.communicate(timeout=10)
        sub.close()
        broker.stop()


# -- the publisher's bound ------------------------------------------------------------------------


def test_while_the_broker_is_down_events_queue_up_to_the_bound_and_are_delivered_after(tmp_path: Path) -> None:
    broker = Broker(tmp_path, persistence=True).start()
    # a subscriber with a session the broker keeps: it gets what was published while it was away
    with Subscriber(broker.port, "autorec/q/segments", client_id="keeper", clean=False):
        pass
    broker.stop()
    publisher = MqttPublisher(parse_url(broker.url), "autorec", "q", max_queued=3).start()
    try:
        t0 = time.monotonic()
        results = [publisher.publish("segments", {"n": i}) for i in range(10)]
        assert time.monotonic() - t0 < 0.5  # never waits for the broker
        assert results == [True] * 3 + [False] * 7
        assert publisher.counters() == {"mqtt_published": 0, "mqtt_queued": 3, "mqtt_dropped": 7}
        broker.start()
        wait_until(lambda: publisher.counters()["mqtt_queued"] == 0, 40, "the queue to drain after the restart")
        with Subscriber(broker.port, "autorec/q/segments", client_id="keeper", clean=False) as sub:
            sub.wait_for(lambda m: m.json() == {"n": 2}, 10, "the queued events")
            assert [m.json() for m in sub.received("/segments")] == [{"n": 0}, {"n": 1}, {"n": 2}]
        assert publisher.counters()["mqtt_dropped"] == 7
    finally:
        publisher.close(1.0)
        broker.stop()


def test_a_broker_that_accepts_and_never_answers_blocks_nothing() -> None:
    with socket.socket() as stalled:  # takes the TCP connection, never speaks MQTT
        stalled.bind(("127.0.0.1", 0))
        stalled.listen(5)
        port = stalled.getsockname()[1]
        publisher = MqttPublisher(parse_url(f"mqtt://127.0.0.1:{port}"), "autorec", "slow", max_queued=50).start()
        stalled.settimeout(10)
        conn, _ = stalled.accept()  # paho's thread is connected over TCP and waits for an answer
        conn.settimeout(10)
        assert conn.recv(1)[0] >> 4 == 1  # its CONNECT packet arrived
        t0 = time.monotonic()
        for i in range(500):
            publisher.publish("segments", {"n": i})
        assert publisher.publish("status", {}, retain=True, queue=False) is False  # a status is never queued
        took = time.monotonic() - t0
        assert took < 0.5, took
        assert publisher.counters() == {"mqtt_published": 0, "mqtt_queued": 50, "mqtt_dropped": 450}
        t0 = time.monotonic()
        assert publisher.close(0.5) is False  # 50 left undelivered, said so
        assert time.monotonic() - t0 < 3.0
        conn.close()


def test_a_rule_that_fires_into_the_open_segment_is_an_update(tmp_path: Path) -> None:
    """The writer's observer calls and the stream's firings, as the pipeline delivers them, through a real broker."""
    from autorec.io.writer import SegmentFile
    from autorec.services.mqtt import MqttEvents
    from autorec.triggers.base import Firing

    with Broker(tmp_path) as broker, Subscriber(broker.port, "autorec/u/segments") as sub:
        publisher = MqttPublisher(parse_url(broker.url), "autorec", "u").start()
        wait_until(lambda: publisher.is_connected, 10, "the publisher to connect")
        events = MqttEvents(publisher, lambda: {})
        t0 = 1_800_000_000.0
        seg = SegmentFile(
            1, 1, "S", tmp_path / "S.bin", tmp_path / "S.bin.partial", tmp_path / "S.json", t0, ("moved",)
        )
        events.fired(t0, [Firing("moved", t0, {"pins": [3]})])
        events.segment_opened(seg)
        events.fired(t0 + 1, [Firing("moved", t0 + 1, {"pins": [4]})])  # the same rule again: no update
        events.fired(t0 + 2, [Firing("bench-cam", t0 + 2, {"bbox": [10, 20, 30, 40], "score": 0.004})])
        seg.end, seg.close_reason, seg.rules = t0 + 9, "post_roll", ("moved", "bench-cam")
        seg.bytes, seg.records = 99, 3
        events.segment_closed(seg)
        sub.wait_for(lambda m: m.json()["type"] == "end", 10, "the end")
        new, update, end = (m.json() for m in sub.received("/segments"))
        publisher.close(2.0)
    assert new["type"] == "new" and new["after"]["evidence"] == ["moved: pins 3"]
    assert update["type"] == "update" and update["before"] == new["after"]
    assert update["after"]["rules"] == ["moved", "bench-cam"]
    assert update["after"]["evidence"] == [
        "moved: pins 4",
        "bench-cam: camera: 0.4 % of the picture changed around (25, 40), 30x40 px",
    ]
    assert end["before"] == update["after"] and end["after"]["rules"] == ["moved", "bench-cam"]
    assert (end["after"]["end"], end["after"]["size"], end["after"]["records"]) == (t0 + 9, 99, 3)
    assert end["after"]["files"] == {"log": "S.bin", "sidecar": "S.json"}


def test_mqtts_with_the_labs_own_certificate_authority(tmp_path: Path) -> None:
    tls = make_tls_files(tmp_path)
    with Broker(tmp_path, tls=tls) as broker:
        url = parse_url(f"mqtts://127.0.0.1:{broker.port}")
        publisher = MqttPublisher(url, "autorec", "tls", ca_file=str(tls.ca)).start()
        try:
            wait_until(lambda: publisher.is_connected, 10, "a TLS connection")
            publisher.publish("segments", {"n": 1})
            wait_until(lambda: publisher.counters()["mqtt_published"] >= 2, 10, "online and the event acknowledged")
        finally:
            publisher.close(2.0)
        # without that authority the broker's certificate is not trusted: no connection, said once
        stranger = MqttPublisher(url, "autorec", "tls").start()
        try:
            wait_until(lambda: stranger._reported_down, 10, "the failed connection")
            assert not stranger.is_connected
        finally:
            stranger.close(0.5)


def test_user_and_password_come_from_the_environment_and_a_refusal_is_one_clear_error(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with Broker(tmp_path, users={"rig": "s3cret"}) as broker:
        url = parse_url(broker.url)
        env = {"AUTOREC_MQTT_USERNAME": "rig", "AUTOREC_MQTT_PASSWORD": "s3cret"}
        good = MqttPublisher(url, "autorec", "auth", environ=env).start()
        bad = MqttPublisher(url, "autorec", "auth", environ={**env, "AUTOREC_MQTT_PASSWORD": "wrong"}).start()
        try:
            wait_until(lambda: good.is_connected, 10, "the login with the right password")
            wait_until(lambda: bad.refused is not None, 10, "the refusal")
            assert not bad.is_connected and bad.publish("segments", {"n": 1})  # queued, not lost, not blocking
        finally:
            good.close(1.0)
            bad.close(0.5)
    refusals = [r.getMessage() for r in caplog.records if "refused the connection" in r.getMessage()]
    assert len(refusals) == 1 and "Not authorized" in refusals[0], refusals
    assert not any("s3cret" in r.getMessage() or "wrong" in r.getMessage() for r in caplog.records)
