"""HookRunner: real subprocesses, real timeouts; never a sleep in the test itself (deadlines only)."""

from __future__ import annotations

import json
import logging
import os
import sys
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from autorec.services.hooks import HookConfigError, HookEvent, HookRunner, from_config, substitute, validate_commands
from tests.support.polling import wait_until

PY = sys.executable
DEADLINE = 30.0  # generous: 2 shared cores


def _dump_argv(out: Path) -> list[str]:
    """A command that writes its argv (after the script) and two env vars to `out` as JSON."""
    code = (
        "import json, os, sys; json.dump({'argv': sys.argv[1:], 'env': [os.environ.get('AUTOREC_PATH'),"
        " os.environ.get('AUTOREC_EVENT')]}, open(sys.argv[1], 'w'))"
    )
    return [PY, "-c", code, str(out)]


def _pid_gone(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return True
    return state in ("Z", "X")  # a zombie is dead, just not yet reaped by its new parent


def test_placeholders_are_substituted_and_never_split(tmp_path: Path) -> None:
    out = tmp_path / "argv.json"
    tricky = tmp_path / "seg with 'quotes' \"and\" $(touch pwned) ; spaces.bin"
    argv = [
        *_dump_argv(out),
        "{path}",
        "{sidecar}",
        "{rules}",
        "{start}",
        "{end}",
        "{end:%Y-%m-%dT%H:%M:%SZ}",
        "x={path}!",
        "{{literal}}",
    ]
    runner = HookRunner({"on_segment_close": argv}, timeout=20)
    try:
        assert runner.segment_closed(tricky, "side car.json", ["drops-moved", "temp"], 1700000000.25, 1700000061.5) == 1
        assert runner.wait(DEADLINE)
    finally:
        runner.close(1)
    got = json.loads(out.read_text())
    assert got["argv"][1:] == [
        str(tricky),
        "side car.json",
        "drops-moved,temp",
        "1700000000.250",
        "1700000061.500",
        "2023-11-14T22:14:21Z",
        f"x={tricky}!",
        "{literal}",
    ]
    assert got["env"] == [str(tricky), "on_segment_close"]
    assert not (tmp_path / "pwned").exists() and not Path("pwned").exists()
    assert runner.counters["ok"] == 1 and runner.results[-1].returncode == 0


def test_substitute_missing_value_is_empty_and_values_are_not_reparsed() -> None:
    assert substitute("{path}", {"path": "{rules}"}) == "{rules}"
    assert substitute("a{end}b", {}) == "ab"
    assert substitute("{rules:.5}|{path:>3}|{path:d}", {"rules": "drops-moved", "path": "p"}) == "drops|  p|p"
    assert substitute("awk '{print $1}' {path", {"path": "p"}) == "awk '{print $1}' {path"
    assert validate_commands("on_segment_close", ["awk", "{ print }", "{path}"])[0][1] == "{ print }"


@pytest.mark.parametrize(
    ("event", "commands", "complaint"),
    [
        ("on_segment_open", ["echo", "{alert}"], "unknown placeholder {alert}"),
        ("on_segment_close", ["echo", "{pth}"], "allowed here: {end}, {path}, {rules}, {sidecar}, {start}"),
        ("on_alert", ["echo", "{pat}"], "unknown placeholder {pat}"),
        ("on_segment_close", "gzip {path}", "no shell is used"),
        ("on_segment_close", ["sh", "-c", "echo ${HOME}"], "write {{HOME}} for a literal {HOME}"),
        ("on_segment_close", [], "expected an argv list"),
        ("on_segment_close", [["echo"], []], "non-empty argv list"),
        ("on_segment_close", ["echo", {"a": 1}], "argv items must be strings"),
        ("on_segment_closed", ["echo"], "unknown hook 'on_segment_closed'"),
    ],
)
def test_bad_commands_are_config_errors(event: str, commands: object, complaint: str) -> None:
    with pytest.raises(HookConfigError, match=None) as info:
        validate_commands(event, commands)
    assert complaint in str(info.value)


def test_one_command_or_a_list_of_commands() -> None:
    assert validate_commands("on_alert", ["mail", "-s", "{alert}", 3]) == [("mail", "-s", "{alert}", "3")]
    assert validate_commands("on_alert", [["a"], ["b", "{message}"]]) == [("a",), ("b", "{message}")]


def test_from_config_reads_timeout_and_rejects_bad_hooks() -> None:
    runner = from_config({"on_segment_close": ["true"], "timeout": "90s"})
    try:
        assert runner.timeout == 90.0 and runner.has_hooks("on_segment_close")
        assert not runner.has_hooks("on_alert")
    finally:
        runner.close(1)
    with pytest.raises(HookConfigError, match="unknown placeholder"):
        from_config({"on_alert": ["echo", "{paht}"]})
    # the rule loader's HookSettings: one argv list per event, None when absent
    settings = SimpleNamespace(
        on_segment_open=None, on_segment_close=None, on_alert=["logger", "{message}"], timeout=5.0
    )
    runner = from_config(settings)
    try:
        assert runner.timeout == 5.0 and runner.has_hooks("on_alert") and not runner.has_hooks("on_segment_open")
    finally:
        runner.close(1)


def test_failing_hook_is_logged_with_status_and_output(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="autorec.services.hooks")
    cmd = [PY, "-c", "import sys; print('no space left on archive'); sys.exit(3)", "{path}"]
    runner = HookRunner({"on_segment_close": cmd, "on_segment_open": ["/nonexistent/hook-binary"]}, timeout=20)
    try:
        runner.segment_closed("/data/a.bin", "/data/a.json", "r", 1.0, 2.0)
        runner.segment_opened("/data/b.bin", "/data/b.json", "r", 3.0)
        assert runner.wait(DEADLINE)
    finally:
        runner.close(1)
    by_event = {r.event: r for r in runner.results}
    assert by_event["on_segment_close"].returncode == 3 and not by_event["on_segment_close"].ok
    assert "no space left on archive" in by_event["on_segment_close"].output
    assert by_event["on_segment_open"].error.startswith("cannot start")
    assert runner.counters["failed"] == 2 and runner.counters["ok"] == 0
    text = caplog.text
    assert "failed with exit status 3" in text and "no space left on archive" in text
    assert "cannot start /nonexistent/hook-binary" in text


def test_hanging_hook_is_killed_with_its_children_and_never_delays_submit(tmp_path: Path) -> None:
    pidfile = tmp_path / "child.pid"
    # the hook starts a grandchild (as `sh -c "... &"` would) and both hang
    code = (
        "import subprocess, sys, time; p = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(300)']);"
        " open(sys.argv[1], 'w').write(str(p.pid)); time.sleep(300)"
    )
    runner = HookRunner({"on_segment_close": [PY, "-c", code, str(pidfile)]}, timeout=2.0)
    try:
        runner.segment_closed("a.bin", "a.json", "r", 1.0, 2.0)
        # more events while the first hangs (they queue behind it): each submit returns without
        # waiting for it. Shown by order, not by a wall-clock bound (a loaded machine is slow
        # anywhere): every submit returned while the hanging hook had not even timed out.
        for i in range(20):
            runner.segment_closed(f"{i}.bin", f"{i}.json", "r", 1.0, 2.0)
        assert runner.counters["timed_out"] == 0 and not runner.results, "a submit waited for the hanging hook"
        wait_until(pidfile.exists, DEADLINE, "the hook to write its pid file")
        child = int(pidfile.read_text())
        wait_until(lambda: runner.counters["timed_out"] >= 1, DEADLINE, "the hook to time out")
        wait_until(lambda: _pid_gone(child), DEADLINE, "the hook's child to be killed with it")
    finally:
        runner.close(0.1)
    first_result = runner.results[0]
    assert first_result.timed_out and not first_result.ok
    assert 0.9 <= first_result.duration < DEADLINE


def test_close_waits_for_quick_hooks_and_kills_slow_ones(tmp_path: Path) -> None:
    done = tmp_path / "done"
    quick = [PY, "-c", "import sys; open(sys.argv[1], 'w').write('ok')", str(done)]
    runner = HookRunner({"on_segment_close": quick}, timeout=60)
    runner.segment_closed("a.bin", "a.json", "r", 1.0, 2.0)
    assert runner.close(DEADLINE) is True
    assert done.read_text() == "ok"
    assert runner.submit("on_segment_close", path="x") == 0 and runner.counters["dropped"] == 1

    slow = HookRunner({"on_segment_close": [PY, "-c", "import time; time.sleep(300)"]}, timeout=60)
    slow.segment_closed("a.bin", "a.json", "r", 1.0, 2.0)
    wait_until(lambda: slow.counters["started"] == 1, DEADLINE, "the slow hook to start")
    t0 = time.monotonic()
    assert slow.close(0.3) is False
    assert time.monotonic() - t0 < 10
    wait_until(lambda: slow.pending == 0, DEADLINE, "nothing pending")


def test_python_callbacks_get_values_and_a_raising_one_is_contained(caplog: pytest.LogCaptureFixture) -> None:
    seen: list[HookEvent] = []

    def broken(event: HookEvent) -> None:
        raise RuntimeError("callback bug")

    runner = HookRunner()
    runner.add_callback("on_alert", broken)
    runner.add_callback("on_alert", seen.append)
    with pytest.raises(HookConfigError):
        runner.add_callback("on_alerts", seen.append)
    try:
        assert runner.submit("on_alert", alert="disconnected", message="gone", state="raised", time=5.0) == 2
        assert runner.wait(DEADLINE)
    finally:
        runner.close(1)
    assert [(e.event, e.values["alert"], e.values["time"]) for e in seen] == [("on_alert", "disconnected", 5.0)]
    assert runner.counters == {**runner.counters, "ok": 1, "failed": 1}
    assert "RuntimeError: callback bug" in caplog.text and "broken" in caplog.text


def test_full_queue_drops_and_counts_instead_of_blocking(tmp_path: Path) -> None:
    gate = threading.Event()
    runner = HookRunner(max_pending=2)
    runner.add_callback("on_segment_open", lambda e: gate.wait(DEADLINE))
    try:
        queued = [runner.submit("on_segment_open", path=str(i)) for i in range(5)]
        # one may already be running, so 2 or 3 fit; the rest are dropped, never waited for
        assert sum(queued) in (2, 3) and runner.counters["dropped"] == 5 - sum(queued)
    finally:
        gate.set()
        runner.close(DEADLINE)


def test_status_reports_counters_and_last_results() -> None:
    runner = HookRunner({"on_segment_open": ["true"]}, timeout=20)
    try:
        runner.segment_opened("a.bin", "a.json", "r", 1.0)
        assert runner.wait(DEADLINE)
    finally:
        runner.close(1)
    status = runner.status()
    assert status["ok"] == 1 and status["pending"] == 0
    assert status["last"][0]["hook"] == "true" and status["last"][0]["returncode"] == 0
    assert os.environ.get("AUTOREC_EVENT") is None  # hooks' environment never leaks into ours


def test_hooks_of_one_event_run_in_order_and_a_slow_event_does_not_hold_up_another(tmp_path: Path) -> None:
    out = tmp_path / "order.txt"
    append = [PY, "-c", "import sys; open(sys.argv[1], 'a').write(sys.argv[2] + '\\n')", str(out), "{alert}"]
    slow = [PY, "-c", "import time; time.sleep(300)"]
    runner = HookRunner({"on_alert": append, "on_segment_close": slow}, timeout=60)
    try:
        runner.segment_closed("a.bin", "a.json", "r", 1.0, 2.0)  # hangs for the whole test
        for i in range(8):
            runner.submit("on_alert", alert=f"a{i}", message="m", state="raised", time=float(i))
        wait_until(lambda: runner.counters["ok"] == 8, DEADLINE, "8 hooks to finish")
        assert out.read_text().splitlines() == [f"a{i}" for i in range(8)]
        assert runner.pending == 1  # only the slow close hook
    finally:
        assert runner.close(0.2) is False
    assert runner.counters["failed"] == 1  # the slow one, killed at close
