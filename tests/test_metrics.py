"""Prometheus metrics: scraped from a running recorder (`run --http` and `run --metrics`) and from
`serve DIR`, parsed with prometheus-client's own parser, and held against the status file."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from autorec.cli import main
from autorec.services.metrics import COUNTERS, StatusCollector, make_registry
from tests.support.mosquitto import free_port
from tests.support.polling import wait_until

parser = pytest.importorskip("prometheus_client.parser", reason="the metrics extra is part of the test extra")

RULES = """
rules:
  - {name: moved, trigger: electrodes, pre_roll: 1s, post_roll: 2s}
output: {video: off}
"""


def scrape(port: int) -> dict[str, dict[tuple, float]]:
    """`/metrics` at 127.0.0.1:port as {sample name: {sorted labels: value}}, via prometheus-client's parser."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        assert response.headers["Content-Type"].startswith("text/plain; version=")  # the text exposition format
        text = response.read().decode()
    out: dict[str, dict[tuple, float]] = {}
    for family in parser.text_string_to_metric_families(text):
        assert family.name.startswith("autorec_"), family.name
        for sample in family.samples:
            if family.type == "counter" and sample.name.endswith("_created"):
                continue
            out.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = sample.value
    return out


def value(metrics: dict, name: str, **labels: str) -> float:
    return metrics[name][tuple(sorted(labels.items()))]


def read_status(out: Path) -> dict:
    try:
        return json.loads((out / "status.json").read_text())
    except (OSError, ValueError):
        return {}


def counter_metrics() -> list[tuple[str, str]]:
    """(status counter key, exposed sample name) of every counter in the table."""
    return [(key, f"{name}_total") for key, (name, kind, _) in COUNTERS.items() if kind == "counter"]


def test_a_running_recorder_on_http_and_metrics_and_serve_agree_with_the_status_file(tmp_path: Path) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text(RULES)
    out = tmp_path / "out"
    http, metrics = free_port(), free_port()
    sim = ["--sim", "--speed", "10", "--fps", "2"]
    served = ["--rig", "metrics-rig", "--http", str(http), "--metrics", str(metrics)]
    run = subprocess.Popen(
        [sys.executable, "-m", "autorec", "run", "--rules", str(rules), "--out", str(out), *sim, *served],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_until(lambda: read_status(out).get("counters", {}).get("segments_closed", 0) >= 1, 30, "a segment")
        # Counters only grow: what a scrape says lies between the status written before and after it.
        before = read_status(out)
        scraped = [scrape(metrics), scrape(http)]
        taken = time.time()
        wait_until(lambda: read_status(out)["updated"] > taken, 10, "the status file written after the scrapes")
        after = read_status(out)
        for m in scraped:
            assert value(m, "autorec_info", version="0.1.0", rig="metrics-rig") == 1
            assert value(m, "autorec_status_up") == 1 and value(m, "autorec_connected") == 1
            checked = 0
            for key, sample in counter_metrics():
                if key in before["counters"]:
                    assert before["counters"][key] <= value(m, sample) <= after["counters"][key], key
                    checked += 1
            assert checked >= 20
            assert before["counters"]["messages"] < value(m, "autorec_messages_total")  # live, not a stale file
            reasons = {k: v for k, v in before["counters"].items() if k.startswith("moved.segments_")}
            assert reasons, before["counters"]
            for key, n in reasons.items():
                reason = key.removeprefix("moved.segments_")
                assert n <= value(m, "autorec_rule_segments_closed_total", rule="moved", reason=reason)
            assert value(m, "autorec_disk_total_bytes") == before["disk_total"]
            assert value(m, "autorec_alerts_active") == len(before["alerts"]) == 0
            assert "autorec_pre_roll_bytes" in m and "autorec_mqtt_queued_messages" not in m  # no MQTT configured
        run.send_signal(signal.SIGTERM)
        _, err = run.communicate(timeout=30)
        assert run.returncode == 0, err
        assert f"metrics at http://127.0.0.1:{metrics}/metrics" in err
    finally:
        if run.poll() is None:
            run.kill()
            run.communicate(timeout=10)

    # `serve DIR` reads the status file the run left: every value equals it.
    port = free_port()
    serve = subprocess.Popen(
        [sys.executable, "-m", "autorec", "serve", str(out), "--http", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_until(lambda: _answers(port), 20, "serve to answer")
        m = scrape(port)
        final = read_status(out)
        for key, sample in counter_metrics():
            if key in final["counters"]:
                assert value(m, sample) == final["counters"][key], key
        assert value(m, "autorec_pre_roll_bytes") == final["counters"]["pre_roll_bytes"]
        assert value(m, "autorec_status_updated_timestamp_seconds") == final["updated"]
        assert value(m, "autorec_disk_free_bytes") == final["disk_free"]
        assert value(m, "autorec_connected") == 0  # the run said so as it stopped
        closed = sum(v for k, v in final["counters"].items() if k.startswith("moved.segments_"))
        assert sum(m["autorec_rule_segments_closed_total"].values()) == closed == final["counters"]["segments_closed"]
    finally:
        serve.send_signal(signal.SIGTERM)
        serve.communicate(timeout=20)


def _answers(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2):
            return True
    except OSError:
        return False


def test_per_rule_counters_become_labels_and_nothing_is_hidden() -> None:
    from prometheus_client import generate_latest

    status = {
        "updated": 1_800_000_000.0,
        "connected": True,
        "open_segment": {"bytes": 1234},
        "disk_free": 10,
        "disk_total": 100,
        "alerts": [{"key": "disconnected"}, {"key": "budget_exhausted:moved"}],
        "counters": {
            "messages": 7,
            "a.b.segments_post_roll": 2,  # a rule name with a dot
            "a.b.segments_split": 1,
            "moved.budget_blocked": 3,
            "moved.missed": 4,
            "frobs_pending": 5,  # a service's counter the table does not name yet
            "uploads_pending": 8,
            "mqtt_queued": 6,
        },
    }
    text = generate_latest(make_registry(StatusCollector(lambda: status, rig="r"))).decode()
    m = {}
    for family in parser.text_string_to_metric_families(text):
        for s in family.samples:
            m[(s.name, tuple(sorted(s.labels.items())))] = (family.type, s.value)
    assert m[("autorec_messages_total", ())] == ("counter", 7)
    assert m[("autorec_rule_segments_closed_total", (("reason", "post_roll"), ("rule", "a.b")))] == ("counter", 2)
    assert m[("autorec_rule_segments_closed_total", (("reason", "split"), ("rule", "a.b")))] == ("counter", 1)
    assert m[("autorec_rule_budget_blocked_firings_total", (("rule", "moved"),))] == ("counter", 3)
    assert m[("autorec_trigger_counter_total", (("counter", "missed"), ("rule", "moved")))] == ("counter", 4)
    assert m[("autorec_status_counter", (("key", "frobs_pending"),))] == ("gauge", 5)
    assert m[("autorec_uploads_pending_files", ())] == ("gauge", 8)
    assert m[("autorec_mqtt_queued_messages", ())] == ("gauge", 6)
    assert m[("autorec_alerts_active", ())] == ("gauge", 2)
    assert m[("autorec_alert_active", (("alert", "budget_exhausted:moved"),))] == ("gauge", 1)
    assert m[("autorec_open_segment_bytes", ())] == ("gauge", 1234)
    # base units, and a counter's name says so
    for key, (name, _kind, _) in COUNTERS.items():
        assert name.startswith("autorec_") and not name.endswith("_total"), key
        assert "byte" not in name or name.endswith("_bytes"), name
    nothing = generate_latest(make_registry(StatusCollector(lambda: None))).decode()
    assert "autorec_status_up 0.0" in nothing and "autorec_messages_total" not in nothing


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--log", "x.bin", "--metrics", "9100"], "--metrics applies to live runs and --sim"),
        (["--sim", "--metrics", "nine"], "--metrics 'nine': expected PORT or HOST:PORT"),
        (["--sim", "--rig", "a/b"], "--rig: bad rig name 'a/b'"),
        (["--sim", "--mqtt", "http://x"], "--mqtt: expected a URL like mqtt://"),
    ],
)
def test_usage_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], message: str) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text(RULES)
    assert main(["run", "--rules", str(rules), "--out", str(tmp_path / "out"), *args]) == 2
    assert message in capsys.readouterr().err


def test_the_grafana_example_uses_only_metrics_autorec_serves() -> None:
    import re

    from prometheus_client import generate_latest

    status = {
        "updated": 1.0,
        "connected": True,
        "open_segment": {"bytes": 1},
        "disk_free": 1,
        "disk_total": 2,
        "alerts": [{"key": "disconnected"}],
        "counters": {**dict.fromkeys(COUNTERS, 1), "r.segments_end": 1, "r.budget_blocked": 1, "r.missed": 1},
    }
    text = generate_latest(make_registry(StatusCollector(lambda: status, rig="r"))).decode()
    served = {s.name for f in parser.text_string_to_metric_families(text) for s in f.samples}
    dashboard = json.loads((Path(__file__).parent.parent / "examples" / "grafana-autorec.json").read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    used = {name for e in exprs for name in re.findall(r"\bautorec_[a-z_]+", e)}
    assert len(used) >= 12 and used <= served, used - served
