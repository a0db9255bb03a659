"""`autorec run` end to end: against the simulator (live and --sim), and --log / --dry-run on real logs."""

from __future__ import annotations

import io
import json
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from autorec import events
from autorec.io.logfile import LogReader
from autorec.readable import local_and_utc
from autorec.sim.config import SimConfig
from autorec.sim.server import SimServerThread
from autorec.units import format_size
from tests.support.polling import wait_until

REPO = Path(__file__).resolve().parent.parent
RULES = REPO / "rules" / "electrodes.yaml"
PRE_ROLL, POST_ROLL = 10.0, 20.0  # as in rules/electrodes.yaml


def autorec(*args: str, **kw) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "autorec", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=kw.pop("cwd", None),
        **kw,
    )


def stop(proc: subprocess.Popen, timeout: float = 20) -> tuple[int, str, str]:
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=timeout)
    return proc.returncode, out, err


def stream_times(payloads: list[bytes]) -> list[float]:
    """Each record's time: its own timestamp, or the last one carried forward."""
    times, last = [], 0.0
    for p in payloads:
        t = events.timestamp(events.decode(p))
        last = t if t is not None else last
        times.append(last)
    return times


def find_slice(full: list[bytes], part: list[bytes]) -> int | None:
    for i, p in enumerate(full):
        if p == part[0] and full[i : i + len(part)] == part:
            return i
    return None


def test_run_against_the_simulator_keeps_every_activity_window(tmp_path: Path):
    cfg = SimConfig(speed=20.0, duration=150.0, seed=3, fps=2.0, truth=str(tmp_path / "truth.json"), wait_for_clients=2)
    out = tmp_path / "segments"
    full = tmp_path / "full.bin"
    with SimServerThread(cfg) as server:
        rec = autorec("record", str(full), "--uri", server.uri)
        run = autorec("run", "--rules", str(RULES), "--uri", server.uri, "--out", str(out))
        try:
            wait_until(lambda: server.finished, 60, "the simulator to finish")
            published = server.broadcaster.published

            def delivered() -> bool:
                clients = server.broadcaster.stats()["clients"]
                return len(clients) == 2 and all(c["sent"] + c["dropped"] >= published for c in clients)

            wait_until(delivered, 20, "both clients to receive everything")
        finally:
            rc_run, _, err_run = stop(run)
            rc_rec, _, err_rec = stop(rec)
    assert rc_run == 0, err_run
    assert rc_rec == 0, err_rec
    assert all(c["dropped"] == 0 for c in server.broadcaster.stats()["clients"])

    truth = json.loads(Path(cfg.truth).read_text())
    full_payloads = [r.payload for r in LogReader(full)]
    full_times = stream_times(full_payloads)
    index = [json.loads(line) for line in (out / "index.jsonl").read_text().splitlines()]
    assert index, err_run
    kept = 0
    spans = []
    for entry in index:
        side = json.loads((out / entry["sidecar"]).read_text())
        payloads = [r.payload for r in LogReader(out / entry["path"])]
        assert len(payloads) == side["records"] == entry["records"]
        nsnap = side["snapshot"]["records"]
        assert nsnap >= 3  # state kinds and sensors that predate the pre-roll
        for p in payloads[:nsnap]:  # the snapshot is re-stamped to the segment's start
            t = events.timestamp(events.decode(p))
            assert t is None or t == pytest.approx(side["segment_start"], abs=1e-6)
        body = payloads[nsnap:]
        # no message missing inside the segment's span: its records are a contiguous run of the full log
        i = find_slice(full_payloads, body)
        assert i is not None, f"{entry['path']} is not a contiguous part of the full recording"
        spans.append((full_times[i], full_times[i + len(body) - 1]))
        kept += sum(len(p) + 4 for p in body)
    # every activity window lies inside a segment from pre_roll before its start to its end
    first = full_times[0]
    for a in truth["activity"]:
        want = max(a["start"] - PRE_ROLL, first)
        assert any(s <= want + 0.5 and e >= a["end"] for s, e in spans), (a, spans)
    # kept bytes close to the ideal: the union of [start - pre_roll, end + post_roll]
    windows = sorted((a["start"] - PRE_ROLL, a["end"] + POST_ROLL) for a in truth["activity"])
    ideal = sum(len(p) + 4 for p, t in zip(full_payloads, full_times) if any(s <= t <= e for s, e in windows))
    print(f"kept {kept} bytes, ideal {ideal} ({kept / ideal:.3f}x), {len(index)} segment(s)")
    assert 0.95 * ideal <= kept <= 1.1 * ideal
    # the telemetry track holds every non-image message, in order
    tele = [r.payload for f in sorted(out.glob("telemetry-*.bin")) for r in LogReader(f)]  # a run may span midnight
    assert tele == [p for p in full_payloads if events.peek_kind(p) != "image"]


def test_run_sim_in_process_stops_by_itself(tmp_path: Path):
    out = tmp_path / "out"
    proc = autorec(
        "run",
        "--rules",
        str(RULES),
        "--sim",
        "--speed",
        "20",
        "--duration",
        "60s",
        "--no-camera",
        "--seed",
        "3",
        "--out",
        str(out),
    )
    stdout, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    index = [json.loads(line) for line in (out / "index.jsonl").read_text().splitlines()]
    assert index and all(e["rules"] == ["electrodes-changed"] for e in index)
    assert not list(out.glob("*.partial"))
    # the last word: why it ended, what was kept of what was seen (human sizes), where, what next
    summary = stdout.strip().splitlines()[-1]
    where = re.escape(f"{out}/")
    size = r"[0-9.]+[kMG]?B"
    pattern = rf"autorec run: simulator finished; {len(index)} segment\(s\) \({size}\) kept of {size} seen "
    assert re.match(pattern + rf"\([0-9.]+ %\) in {where} - autorec ls {where}, autorec video {where}$", summary)


def test_sigterm_closes_the_open_segment_and_exits_0(tmp_path: Path):
    out = tmp_path / "out"
    # slow enough that a segment is surely open when the signal comes
    proc = autorec(
        "run", "--rules", str(RULES), "--sim", "--speed", "10", "--no-camera", "--seed", "3", "--out", str(out)
    )
    try:
        wait_until(lambda: bool(list(out.glob("*.bin.partial"))), 60, "a segment to open")
    finally:
        t0 = time.monotonic()
        rc, _out, err = stop(proc)
    assert rc == 0, err
    assert time.monotonic() - t0 < 10
    assert "autorec run: SIGTERM received; " in _out, _out
    assert not list(out.glob("*.partial"))
    last = json.loads((out / "index.jsonl").read_text().splitlines()[-1])
    assert last["close_reason"] == "shutdown"
    assert len(list(LogReader(out / last["path"]))) == last["records"]


def test_backtest_writes_the_segments_it_would_have_written(tmp_path: Path, upstream_log: Path):
    proc = autorec("run", "--rules", str(RULES), "--log", str(upstream_log), "--out", str(tmp_path))
    _out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    [entry] = [json.loads(line) for line in (tmp_path / "index.jsonl").read_text().splitlines()]
    # a drop moved every 0.5 s for the whole 30 s: the segment is the whole log, byte for byte
    assert (tmp_path / entry["path"]).read_bytes() == upstream_log.read_bytes()
    assert entry["close_reason"] == "end_of_log"
    assert not list(tmp_path.glob("telemetry-*"))  # the log itself is the full record
    size = format_size(upstream_log.stat().st_size)
    assert f"end of log; 1 segment(s) ({size}) kept of {size} seen (100.0 %) in {tmp_path}/ - " in _out


def test_backtest_dry_run_prints_segments_and_writes_nothing(tmp_path: Path, upstream_log: Path):
    cut = tmp_path / "cut.bin"
    cut.write_bytes(upstream_log.read_bytes()[:-100])  # a log cut off mid-record is still backtested
    proc = autorec("run", "--rules", str(RULES), "--log", str(cut), "--dry-run", cwd=tmp_path)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    lines = out.strip().splitlines()
    assert "electrodes-changed" in lines[0] and "(end_of_log)" in lines[0]
    assert lines[-1].startswith("1 segment(s)") and "(100.0 %)" in lines[-1]
    assert "cut off" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cut.bin"]


def test_bad_rule_file_and_usage_exit_2(tmp_path: Path, upstream_log: Path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("rules:\n  - name: x\n    trigger: no-such-trigger\n")
    proc = autorec("run", "--rules", str(bad), "--log", str(upstream_log), "--dry-run")
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 2 and f"{bad}:3" in err
    proc = autorec("run", "--rules", str(RULES), "--dry-run")
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 2 and "--log" in err
    proc = autorec("run", "--rules", str(RULES), "--log", str(tmp_path / "missing.bin"))
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 1 and "no such log" in err


# -- the pipeline in process, with hand-made messages ---------------------------------------


def _pipeline(tmp_path: Path, **kw):
    from autorec.core.dryrun import DryRun
    from autorec.core.pipeline import Pipeline
    from autorec.rules import load_rules
    from autorec.runs.dispatch import Dispatcher

    sink = DryRun()
    return Dispatcher(Pipeline(load_rules(RULES), **kw), sink), sink


def _msg(kind: str, t: float | None, value: float, mono: float = 0.0):
    from tests.support.eventbuilder import message, payload

    return message(events.decode(payload(kind, t, value)), monotonic=mono)


def test_pipeline_counts_rejects_and_holds_untimed_messages_until_a_time(tmp_path: Path):
    from autorec.io.source import Message

    pipe, sink = _pipeline(tmp_path, offline=True)
    pipe.message(Message(b"\xff\x00garbage", 0.0, 0.0, None, rejected="not a PurpleDropEvent"))
    pipe.message(_msg("electrode_state", None, 1))  # no time known yet: held
    assert pipe.stats.messages == 0 and pipe.stats.rejected == 1
    pipe.message(_msg("hv_regulator", 1000.0, 1))
    assert pipe.stats.messages == 2 and pipe.stats.first_time == 1000.0
    pipe.message(_msg("electrode_state", None, 2))  # a change of driven pins: fires
    pipe.message(_msg("hv_regulator", 1001.0, 2))
    pipe.finish()
    [seg] = sink.segments
    assert seg.rules == ("electrodes-changed",) and seg.reason == "end_of_log"


def test_live_ticks_close_the_post_roll_on_the_monotonic_clock(tmp_path: Path):
    pipe, sink = _pipeline(tmp_path, rate=1.0, tick_lag=0.25)
    pipe.message(_msg("electrode_state", 1000.0, 1, mono=50.0))
    pipe.message(_msg("electrode_state", 1000.5, 2, mono=50.5))  # fires: post_roll 20 s -> ends at 1020.5
    assert pipe.pipeline.segmenter.is_open
    pipe.tick(monotonic=50.5 + 20.0)  # 1020.25 after the lag: still open
    assert pipe.pipeline.segmenter.is_open and not sink.segments
    pipe.tick(monotonic=50.5 + 20.5)
    assert not pipe.pipeline.segmenter.is_open
    [seg] = sink.segments
    assert seg.end == 1020.5 and seg.reason == "post_roll"


def test_sighup_reloads_good_rules_and_keeps_the_old_ones_on_bad(tmp_path: Path):
    rules = tmp_path / "rules.yaml"
    rules.write_text(RULES.read_text())
    logf = tmp_path / "run.log"
    out = tmp_path / "out"
    proc = autorec(
        "run", "--rules", str(rules), "--sim", "--speed", "5", "--no-camera", "--out", str(out), "--log-file", str(logf)
    )
    try:
        wait_until(lambda: logf.exists() and "recording the simulator" in logf.read_text(), 30, "the recorder to start")
        rules.write_text("rules:\n  - name: x\n    trigger: electrodes\n    bogus: 1\n")
        proc.send_signal(signal.SIGHUP)
        wait_until(lambda: "reload rejected" in logf.read_text(), 10, "the bad reload to be reported")
        assert f"{rules}:4" in logf.read_text()
        # absurd values are rejected the same way, never a traceback from the signal callback
        minimal = "rules:\n  - name: x\n    trigger: electrodes\n"
        for absurd, line in (('output:\n  name: "{seq:100000000000000}"\n', 2), ("x: " + "[" * 5000 + "\n", 1)):
            rules.write_text(absurd + minimal)
            proc.send_signal(signal.SIGHUP)
            wait_until(lambda line=line: f"reload rejected: {rules}:{line}: " in logf.read_text(), 10, "rejection")
        assert "Traceback" not in logf.read_text()
        rules.write_text(RULES.read_text().replace("electrodes-changed", "renamed-rule"))
        proc.send_signal(signal.SIGHUP)
        wait_until(lambda: "renamed-rule" in logf.read_text(), 10, "the good reload")
    finally:
        rc, _, err = stop(proc)
    assert rc == 0, err


def test_trigger_counters_reach_the_status_file(tmp_path):
    """A corrupt camera frame is skipped by the motion trigger, and the count is visible in status.json."""
    import json
    import signal
    import subprocess
    import sys

    from tests.support.polling import wait_until
    from tests.support.videolog import T0, frames_log, make_jpeg
    from tests.support.wsfixtures import EventServer, fixture_payloads

    jpegs = [make_jpeg(i % 3, 64, 48) for i in range(10)]
    jpegs[4] = jpegs[4][: len(jpegs[4]) // 2]  # cut off mid-scan, as a dropped packet would
    log = frames_log(tmp_path / "cam.bin", [T0 + i * 0.2 for i in range(10)], jpegs)
    rules = tmp_path / "cam.yaml"
    rules.write_text("rules:\n  - name: cam\n    trigger: motion\n    detect_fps: 0\n")
    out = tmp_path / "out"
    status = out / "status.json"

    def counters() -> dict:
        try:
            return json.loads(status.read_text())["counters"]
        except (OSError, ValueError, KeyError):
            return {}

    with EventServer(greeting=fixture_payloads(log)) as server:
        proc = subprocess.Popen(
            [sys.executable, "-m", "autorec", "run", "--rules", str(rules), "--uri", server.uri, "--out", str(out)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            wait_until(lambda: counters().get("cam.frames") == 10, timeout=30, what="status.json counting 10 frames")
            assert counters()["cam.corrupt"] == 1
            assert counters()["trigger_errors"] == 0
            # each rule's latest score against its threshold
            wait_until(lambda: "cam" in json.loads(status.read_text())["scores"], 30, "a score in status.json")
            latest = json.loads(status.read_text())["scores"]["cam"]
            assert latest["threshold"] == 0.0003 and latest["time"] == pytest.approx(T0 + 9 * 0.2)
            assert latest["ratio"] == pytest.approx(latest["score"] / 0.0003, rel=1e-3)
        finally:
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=30) == 0
    # the score track beside the telemetry log: one row per second with an analysed frame
    import gzip

    [track] = out.glob("scores-*.csv.gz")
    rows = gzip.open(track, "rt").read().splitlines()
    seconds = sorted({int(T0 + i * 0.2) for i in range(10) if i != 4})  # frame 4 is corrupt: no score
    assert rows[0] == "time,rule,score,threshold"
    assert [(int(r.split(",")[0]), r.split(",")[1]) for r in rows[1:]] == [(s, "cam") for s in seconds]


SIM_RUN = (sys.executable, "-m", "autorec", "run", "--rules", str(RULES), "--sim", "--no-camera")


def test_heartbeat_lines_when_stderr_is_not_a_terminal(tmp_path: Path):
    out = tmp_path / "out"
    log = tmp_path / "stderr.log"
    with open(log, "w") as err:
        proc = subprocess.Popen(
            [*SIM_RUN, "--speed", "20", "--heartbeat", "200ms", "--out", str(out)],
            stdout=subprocess.DEVNULL,
            stderr=err,
        )
        try:
            wait_until(lambda: log.read_text().count("heartbeat:") >= 3, 30, "three heartbeat lines")
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=30)
    assert proc.returncode == 0
    beats = [line for line in log.read_text().splitlines() if "heartbeat:" in line]
    last = beats[-1]
    assert " INFO heartbeat: connected  " in last
    for part in (" msg/s  ", " segment(s) ", " kept of ", " seen  ", " free"):
        assert part in last, last
    # --heartbeat 0: none
    proc = subprocess.run(
        [*SIM_RUN, "--speed", "50", "--duration", "20s", "--heartbeat", "0", "--out", str(tmp_path / "quiet")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0 and "heartbeat:" not in proc.stderr, proc.stderr


def test_dry_run_prints_each_segment_as_soon_as_it_closes(tmp_path: Path):
    from autorec.core.dryrun import DryRun
    from autorec.core.pipeline import Pipeline
    from autorec.rules import load_rules
    from autorec.runs.dispatch import Dispatcher

    shown = io.StringIO()
    sink = DryRun(out=shown)
    pipe = Dispatcher(Pipeline(load_rules(RULES), offline=True), sink)
    pipe.message(_msg("electrode_state", 1000.0, 1))
    pipe.message(_msg("electrode_state", 1000.5, 2))  # fires: post_roll 20 s
    pipe.message(_msg("hv_regulator", 1030.0, 1))  # past the post-roll: the segment closes here
    [line] = shown.getvalue().splitlines()
    start = local_and_utc(1000.0, 1)  # local time, UTC beside: the one style a person reads
    assert line.startswith(f"{start}      20.5 s") and line.endswith("electrodes-changed (post_roll)")
    pipe.message(_msg("electrode_state", 1031.0, 3))
    pipe.finish()
    assert len(shown.getvalue().splitlines()) == 2
    total = io.StringIO()
    sink.report(10_000, total)  # only the total: the segment lines are out already
    assert total.getvalue().startswith("2 segment(s), ") and total.getvalue().count("\n") == 1


def test_dry_run_shows_a_progress_bar_on_a_terminal_only(tmp_path: Path, stream_log: Path):
    import fcntl
    import os
    import pty
    import struct
    import termios

    cmd = [sys.executable, "-m", "autorec", "run", "--rules", str(RULES), "--log", str(stream_log), "--dry-run"]
    primary, secondary = pty.openpty()
    fcntl.ioctl(secondary, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))  # a terminal has a width
    try:
        proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=secondary, text=True, timeout=60)
        os.close(secondary)
        terminal = b""
        while True:
            try:
                chunk = os.read(primary, 65536)
            except OSError:  # EIO: the child side is closed and everything was read
                break
            if not chunk:
                break
            terminal += chunk
    finally:
        os.close(primary)
    assert proc.returncode == 0
    assert b"%|" in terminal and b"B/s]" in terminal, terminal  # tqdm's bar (bytes of the log), on stderr
    lines = proc.stdout.strip().splitlines()
    assert "electrodes-changed" in lines[0] and lines[-1].startswith(f"{len(lines) - 1} segment(s), ")
    # not a terminal: no bar, the same lines
    plain = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert plain.returncode == 0 and "%|" not in plain.stderr and plain.stdout == proc.stdout
