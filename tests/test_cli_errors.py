"""Bad input through the real command line: one clear line, the right exit code, never a traceback.

Each test here was found by attacking a verb with input a lab user (or a broken disk) can produce;
the commands run in process through `autorec.cli.main` so the whole file stays fast.
"""

from __future__ import annotations

import pytest

from autorec.cli import main
from autorec.units import parse_duration, parse_size
from tests.support.rulefiles import write_rules


@pytest.mark.parametrize(
    "line",
    [
        "segments: {pre_roll_max_bytes: .inf}",
        "segments: {pre_roll_max_bytes: 1e400GB}",
        "output: {max_total: .nan}",
        "segments: {pre_roll: .nan}",
        "segments: {max_length: 1e400s}",
    ],
)
def test_check_rejects_non_finite_numbers_with_file_line(tmp_path, capsys, line):
    # int(inf) used to escape as an OverflowError traceback; nan/inf durations passed as valid.
    path = write_rules(tmp_path, f"{line}\nrules:\n  - {{name: a, trigger: electrodes}}\n")
    assert main(["check", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"{path}:1: ") and "must be a finite number" in err
    assert "Traceback" not in err


def test_units_reject_non_finite():
    for bad in (float("inf"), float("nan"), "1e400s"):
        with pytest.raises(ValueError, match="finite"):
            parse_duration(bad)
    for bad in (float("inf"), float("nan"), "1e400TB"):
        with pytest.raises(ValueError, match="finite"):
            parse_size(bad)
    assert parse_duration("1e3s") == 1000.0 and parse_size("1e3kB") == 10**6


def test_video_empty_jpeg_costs_only_its_own_frame(tmp_path, capsys):
    from tests.support.videolog import T0, frames_log, make_jpeg

    # Frame 1 is an image event with no data (a camera hiccup). It used to reach FFmpeg as an
    # empty packet, which ends the decoder's stream, and frame 2 was then lost as "corrupt" too.
    jpegs = [make_jpeg(0, 64, 48), b"", make_jpeg(2, 64, 48), make_jpeg(3, 64, 48)]
    log = frames_log(tmp_path / "cam.bin", [T0 + i * 0.1 for i in range(4)], jpegs)
    assert main(["video", str(log), "--threads", "0"]) == 0
    out = capsys.readouterr().out
    assert "3 frames" in out and "1 corrupt frames skipped" in out, out


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--speed", "nan"], "--speed must be above zero"),
        (["--speed", "inf"], "--speed must be above zero"),
        (["--fps", "inf"], "--fps must be 0-100"),
        (["--fps", "1e9"], "--fps must be 0-100"),
        (["--fps", "nan"], "--fps must be 0-100"),
        (["--port", "99999"], "--port must be 0-65535"),
        (["--port", "-1"], "--port must be 0-65535"),
    ],
)
def test_sim_rejects_absurd_numbers(capsys, argv, message):
    # --speed nan froze the simulated clock for ever, --fps inf ate all memory (OOM kill),
    # --port 99999 escaped as an OverflowError traceback from bind().
    assert main(["sim", "--duration", "1s", *argv]) == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--speed", "nan", "--port", "0"], "--speed must be above zero"),
        (["--port", "99999"], "--port must be 0-65535"),
        (["--port", "-1"], "--port must be 0-65535"),
    ],
)
def test_replay_rejects_absurd_numbers(tmp_path, capsys, argv, message):
    from tests.support.videolog import T0, sensor_event, write_log

    log = write_log(tmp_path / "one.bin", [sensor_event(T0)])
    assert main(["replay", str(log), *argv]) == 2
    assert message in capsys.readouterr().err


def test_sim_negative_seed_and_binary_scenario_are_usage_errors(tmp_path, capsys):
    # Both escaped as tracebacks (numpy's ValueError, UnicodeDecodeError).
    assert main(["sim", "--seed", "-5", "--duration", "1s"]) == 2
    assert "--seed must be 0 or more, got -5" in capsys.readouterr().err
    scenario = tmp_path / "scenario.yaml"
    scenario.write_bytes(b"\x7fELF\x02\x01\x01\x00\xf0\x9f\x00\xff binary")
    assert main(["sim", "--scenario", str(scenario), "--duration", "1s"]) == 2
    assert f"{scenario}:0: cannot read scenario: not UTF-8 text" in capsys.readouterr().err


def _electrode_rules(tmp_path):
    return write_rules(tmp_path, "rules:\n  - {name: a, trigger: electrodes}\n")


def test_run_log_into_an_uncreatable_out_dir_is_a_usage_error(tmp_path, capsys):
    from tests.support.videolog import T0, sensor_event, write_log

    log = write_log(tmp_path / "one.bin", [sensor_event(T0)])
    # --out names a file: SegmentWriter's mkdir used to escape as a FileExistsError traceback.
    assert main(["run", "--rules", str(_electrode_rules(tmp_path)), "--log", str(log), "--out", str(log)]) == 2
    assert f"autorec run: cannot create {log}: File exists" in capsys.readouterr().err


@pytest.mark.parametrize("dry_run", [[], ["--dry-run"]])
def test_run_log_of_a_file_that_is_not_a_log_fails(tmp_path, capsys, dry_run):
    photo = tmp_path / "photo.jpg"
    photo.write_bytes(b"\xff\xd8\xff\xe0\x00\x10JFIF" + bytes(100))
    argv = ["run", "--rules", str(_electrode_rules(tmp_path)), "--log", str(photo), "--out", str(tmp_path / "o")]
    assert main(argv + dry_run) == 1
    assert f"autorec run: {photo} is not an upstream log: record length" in capsys.readouterr().err


def test_the_backtest_flag_is_log_and_replay_is_only_the_command(tmp_path, capsys):
    # `replay` named two things: the command serving a log as a live stream, and run's backtest flag.
    # The flag is --log now (tune and calibrate too), with no alias, and it does not swallow --log-file.
    from autorec.cli import build_parser

    args = build_parser().parse_args(["run", "--rules", "r.yaml", "--log", "n.bin", "--log-file", "m.txt"])
    assert (args.log, args.log_file) == ("n.bin", "m.txt")
    assert build_parser().parse_args(["tune", "r", "--rules", "r.yaml", "--log", "n.bin", "--range", "1:2:2"]).log
    assert build_parser().parse_args(["calibrate", "--rules", "r.yaml", "--log", "n.bin"]).log == "n.bin"
    with pytest.raises(SystemExit) as exit_:
        main(["run", "--rules", "r.yaml", "--replay", "n.bin"])
    assert exit_.value.code == 2 and "unrecognized arguments: --replay" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_:
        main(["tune", "r", "--rules", "r.yaml", "--range", "1:2:2", "--replay", "n.bin"])
    assert exit_.value.code == 2 and "required: --log" in capsys.readouterr().err


def test_replay_of_a_file_that_is_not_a_log_fails(tmp_path, capsys):
    text = tmp_path / "notes.txt"
    text.write_text("this is not a log\n")
    assert main(["replay", str(text), "--port", "0"]) == 1
    assert f"autorec replay: {text} is not an upstream log: record length" in capsys.readouterr().err


@pytest.mark.parametrize("uri", ["http://localhost:7001", "garbage", "ws://127.0.0.1:99999"])
def test_run_bad_uri_is_a_usage_error(tmp_path, capsys, uri):
    # The URI was first parsed inside the event loop: a ValueError traceback, exit 1.
    argv = ["run", "--rules", str(_electrode_rules(tmp_path)), "--uri", uri, "--out", str(tmp_path / "o")]
    assert main(argv) == 2
    assert f"autorec run: --uri: not a websocket URI: '{uri}'" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()  # nothing started


def test_check_rule_source_port_out_of_range(tmp_path, capsys):
    path = write_rules(tmp_path, "source: ws://rig:99999\nrules:\n  - {name: a, trigger: electrodes}\n")
    assert main(["check", str(path)]) == 2
    assert capsys.readouterr().err.strip() == f"{path}:1: source: Port out of range 0-65535 in 'ws://rig:99999'"


@pytest.mark.parametrize("verb", ["sim", "run"])
def test_sim_bad_truth_or_scenario_fails_before_serving(tmp_path, capsys, verb):
    # run --sim: a bad scenario was a ScenarioError traceback from inside the event loop; a --truth
    # in a missing directory was a traceback at the end of the run (sim: "cannot serve on ...").
    argv = ["sim", "--port", "0"] if verb == "sim" else ["run", "--rules", str(_electrode_rules(tmp_path)), "--sim"]
    argv += ["--out", str(tmp_path / "o")] if verb == "run" else []
    cases = [
        (["--truth", str(tmp_path / "missing" / "t.json")], "--truth: "),
        (["--truth", str(tmp_path)], f"--truth: {tmp_path} is a directory"),
        (["--scenario", "no-such-scenario"], "no-such-scenario:0: no such scenario file or built-in"),
    ]
    for extra, message in cases:
        assert main([*argv, "--duration", "1s", *extra]) == 2
        captured = capsys.readouterr()
        assert f"autorec {verb}: {message}" in captured.out + captured.err
    assert not (tmp_path / "o").exists() and not (tmp_path / "missing").exists()


def test_run_unopenable_log_file_is_a_usage_error(tmp_path, capsys):
    # logging.FileHandler's IsADirectoryError used to escape as a traceback.
    argv = ["run", "--rules", str(_electrode_rules(tmp_path)), "--sim", "--log-file", str(tmp_path)]
    assert main(argv) == 2
    assert f"autorec run: cannot open --log-file {tmp_path}: Is a directory" in capsys.readouterr().err


def test_check_refuses_a_huge_rule_file_without_reading_it_all(tmp_path, capsys):
    # `autorec check /dev/zero` read until memory ran out (MemoryError traceback at best).
    path = tmp_path / "huge.yaml"
    path.write_text("# padding\n" * 120_000)  # 1.2 MB of valid YAML comments
    assert main(["check", str(path)]) == 2
    assert capsys.readouterr().err.strip() == f"{path}: (file): larger than 1 MiB: not a rule file"


def test_record_append_never_cuts_a_corrupt_file(tmp_path, capsys):
    from tests.support.videolog import T0, sensor_event, write_log

    # --append cut the file back to its last whole record before a bad header: the whole of a
    # non-log file, or everything after a damaged length prefix in a long log, was destroyed.
    notes = tmp_path / "notes.txt"
    notes.write_text("a lab notebook, not a log\n")
    log = write_log(tmp_path / "night.bin", [sensor_event(T0 + i) for i in range(3)])
    damaged = bytearray(log.read_bytes())
    second = 4 + int.from_bytes(damaged[:4], "little")  # the second record's length prefix
    damaged[second : second + 4] = b"\xff\xff\xff\x7f"
    log.write_bytes(bytes(damaged))
    for path, before in ((notes, notes.read_bytes()), (log, bytes(damaged))):
        assert main(["record", str(path), "--append", "--uri", "ws://127.0.0.1:1", "--duration", "1s"]) == 2
        err = capsys.readouterr().err
        assert f"autorec record: cannot open {path}: not appending: bad record header at offset" in err
        assert path.read_bytes() == before


@pytest.mark.parametrize("copy", [[], ["--copy"]])
def test_video_first_frame_with_a_damaged_size_does_not_fail_the_export(tmp_path, capsys, copy):
    from tests.support.videolog import T0, frames_log, make_jpeg

    # The first frame's header set the video's size: 60000x60000 failed the whole export
    # ("Invalid argument"), and the three good frames after it were lost.
    bad = bytearray(make_jpeg(0, 64, 48))
    sof = bad.find(b"\xff\xc0")
    bad[sof + 5 : sof + 9] = (60000).to_bytes(2, "big") * 2
    jpegs = [bytes(bad)] + [make_jpeg(i, 64, 48) for i in (1, 2, 3)]
    log = frames_log(tmp_path / "cam.bin", [T0 + i * 0.1 for i in range(4)], jpegs)
    assert main(["video", str(log), "--threads", "0", *copy]) == 0
    assert "3 frames" in capsys.readouterr().out


def test_video_out_dir_that_is_a_file_says_which_path(tmp_path, capsys):
    from tests.support.videolog import T0, frames_log

    log = frames_log(tmp_path / "cam.bin", [T0, T0 + 0.1], width=32, height=32)
    blocker = tmp_path / "exports"
    blocker.write_text("a file where the output directory should go")
    assert main(["video", str(log), "--out-dir", str(blocker)]) == 1
    err = capsys.readouterr().err
    assert f"autorec video: {log}: cannot write {blocker / 'cam.mp4'}: {blocker}: File exists" in err
    assert "[Errno" not in err


def test_run_help_says_what_duration_means_live(capsys):
    # The only --duration help was the simulator's ("simulated time"), yet it also ends a live run.
    with pytest.raises(SystemExit) as exit_:
        main(["run", "--help"])
    assert exit_.value.code == 0
    assert "--duration ends a live run after that much real time" in " ".join(capsys.readouterr().out.split())


def test_uri_without_port_is_named_once(tmp_path, capsys):
    # ws://rig means port 80; the user only ever saw "connection refused", retried for ever.
    note = "ws://127.0.0.1 names no port: connecting to port 80 (pdserver listens on 7001)"
    assert (
        main(["record", str(tmp_path / "r.bin"), "--uri", "ws://127.0.0.1", "--duration", "0"]) == 1
    )  # never connected
    assert capsys.readouterr().err.count(note) == 1
    argv = ["run", "--rules", str(_electrode_rules(tmp_path)), "--uri", "ws://127.0.0.1", "--duration", "0"]
    assert main([*argv, "--out", str(tmp_path / "o"), "--no-telemetry"]) == 0
    assert capsys.readouterr().err.count(note) == 1


def test_sim_keeps_streaming_when_the_truth_file_cannot_be_written(tmp_path):
    import asyncio

    from autorec.sim.config import SimConfig
    from autorec.sim.server import SimServer

    # A write error (disk full; here: the path became a directory) used to kill the play task.
    truth = tmp_path / "truth.json"
    truth.mkdir()
    config = SimConfig(speed=1000, duration=20, camera=False, truth=str(truth), start_time=1_790_000_000.0)

    async def play() -> SimServer:
        async with SimServer(config, port=0) as server:
            await asyncio.wait_for(server.wait_finished(), 30)
        return server

    server = asyncio.run(play())
    assert server.sent_until == 1_790_000_020.0 and server.truth_errors >= 1


def test_a_damaged_timestamp_is_ignored_not_a_crash(tmp_path, capsys):
    from tests.support.eventbuilder import hv as hv_event
    from tests.support.eventbuilder import raw_time
    from tests.support.videolog import T0, image_event, make_jpeg, transform_event, write_log

    # seconds=2**62 (a flipped bit): info, run --dry-run and video all raised from datetime or PyAV.
    def hv(seconds: int) -> bytes:
        return raw_time(hv_event(None, 1.0), seconds).SerializeToString()

    log = write_log(tmp_path / "a.bin", [hv(int(T0)), hv(2**62), hv(int(T0) + 2)])
    assert main(["info", str(log)]) == 0
    assert "2.0s from 2026-" in capsys.readouterr().out
    assert main(["run", "--rules", str(_electrode_rules(tmp_path)), "--log", str(log), "--dry-run"]) == 0
    frames = [image_event(make_jpeg(i, 32, 32), t) for i, t in enumerate((T0, 2.0**62, T0 + 0.2))]
    cam = write_log(tmp_path / "cam.bin", [transform_event(T0), *frames])
    assert main(["video", str(cam), "--threads", "0"]) == 0
    assert "3 frames" in capsys.readouterr().out


def test_replay_bad_max_gap_names_the_option(tmp_path, capsys):
    from tests.support.videolog import T0, sensor_event, write_log

    log = write_log(tmp_path / "one.bin", [sensor_event(T0)])
    assert main(["replay", str(log), "--max-gap=-1s", "--port", "0"]) == 2
    assert "autorec replay: --max-gap: a duration cannot be negative" in capsys.readouterr().err


def test_run_log_respects_a_live_recorders_lock(tmp_path, capsys):
    from autorec.io.instancelock import InstanceLock
    from tests.support.videolog import T0, sensor_event, write_log

    # Offline runs wrote segments (and index.jsonl lines) into a directory a live run was recording into.
    log = write_log(tmp_path / "one.bin", [sensor_event(T0)])
    out = tmp_path / "recordings"
    out.mkdir()
    argv = ["run", "--rules", str(_electrode_rules(tmp_path)), "--log", str(log), "--out", str(out)]
    live = InstanceLock(out)
    live.acquire()
    try:
        assert main(argv) == 2
        assert "autorec run: " in capsys.readouterr().err
        assert main([*argv, "--dry-run"]) == 0  # writes nothing: no lock needed
    finally:
        live.release()
    assert main(argv) == 0 and not (out / ".autorec.lock").exists()


def test_record_out_that_cannot_be_opened_is_a_usage_error(tmp_path, capsys):
    # Exit 1 means "records were lost"; nothing was recorded here, the OUT given is wrong (as for run --out).
    for out, reason in ((tmp_path, "Is a directory"), (tmp_path / "missing" / "r.bin", "No such file or directory")):
        assert main(["record", str(out), "--force", "--uri", "ws://127.0.0.1:1", "--duration", "0"]) == 2
        assert f"autorec record: cannot open {out}: {reason}" in capsys.readouterr().err


def test_run_options_the_mode_would_ignore_are_usage_errors(tmp_path, capsys):
    from tests.support.videolog import T0, sensor_event, write_log

    # `run --log LOG --speed 20` or `run --uri ... --fps 5` used to run without a word about them.
    log = write_log(tmp_path / "one.bin", [sensor_event(T0)])
    base = ["run", "--rules", str(_electrode_rules(tmp_path)), "--out", str(tmp_path / "o")]
    cases = [
        (["--log", str(log), "--speed", "20", "--no-camera"], "--speed, --no-camera only apply with --sim"),
        (["--uri", "ws://127.0.0.1:1", "--fps", "5"], "--fps only applies with --sim"),
        (["--log", str(log), "--duration", "10s"], "--duration does not apply to --log"),
        (["--log", str(log), "--uri", "ws://rig:7001"], "--uri does not apply with --log"),
        (["--sim", "--uri", "ws://rig:7001"], "--uri does not apply with --sim"),
    ]
    for extra, message in cases:
        assert main([*base, *extra]) == 2
        assert f"autorec run: {message}" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize(
    "argv",
    [
        ["run", "--dry-run"],
        ["tune", "camera-motion", "--thresholds", "0.001"],
        ["calibrate"],
    ],
    ids=["run", "tune", "calibrate"],
)
def test_log_that_is_a_directory_says_so(tmp_path, capsys, argv):
    """`--log night/` (the output directory, not one of its logs) is not 'no such log': it is there."""
    from pathlib import Path

    rules = Path(__file__).resolve().parent.parent / "rules" / "motion.yaml"
    assert main([*argv, "--rules", str(rules), "--log", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert f"--log: {tmp_path} is a directory, not a log file (give one log, e.g. {tmp_path}/NAME.bin)" in err, err
    assert main([*argv, "--rules", str(rules), "--log", str(tmp_path / "missing.bin")]) == 1
    assert f"--log: no such log: {tmp_path / 'missing.bin'}" in capsys.readouterr().err
