"""`autorec check` and `autorec plugins` through the real command line."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from autorec.cli import main
from tests.support.rulefiles import write_rules

REPO = Path(__file__).resolve().parent.parent


def test_check_good_file_prints_a_summary(tmp_path, capsys):
    path = write_rules(
        tmp_path,
        """
        source: ws://rig:7001
        output: {dir: out, keep: 7d}
        segments: {pre_roll: 5s}
        rules:
          - {name: moved, trigger: movement, min_pins: 2, post_roll: 45s}
          - {name: hot, trigger: threshold, field: 'temperature_control.temperatures[0]', above: 40}
        """,
    )
    assert main(["check", str(path)]) == 0
    out = capsys.readouterr().out
    assert f"{path}: OK, 2 rules" in out
    assert "ws://rig:7001" in out and "out/{start:%Y%m%dT%H%M%SZ}-{rules}.bin" in out and "keep 7d" in out
    assert "pre_roll 5.0s" in out
    assert "moved" in out and "movement  min_pins=2" in out and "(post_roll 45.0s)" in out
    assert "field=temperature_control.temperatures[0] above=40" in out


def test_check_bad_files_exit_2_with_file_line(tmp_path, capsys):
    good = write_rules(tmp_path, "rules:\n  - {name: a, trigger: electrodes}\n", "good.yaml")
    bad = write_rules(tmp_path, "rules:\n  - name: a\n    trigger: electrodes\n    pinz: [1]\n", "bad.yaml")
    assert main(["check", str(good), str(bad)]) == 2
    captured = capsys.readouterr()
    assert f"{good}: OK" in captured.out
    err_lines = captured.err.strip().splitlines()
    assert err_lines[0] == (
        f"{bad}:4: rules[a].pinz: unknown key; did you mean 'pins'? (allowed: name, trigger, max_errors, "
        "near_miss, near_miss_clip, pre_roll, post_roll, max_length, pre_roll_max_bytes, max_segments_per_hour, "
        "max_bytes_per_hour, max_share, max_open, flap_rate, flap_for, flap_keep_fps, pins, groups)"
    )
    assert err_lines[1] == "1 of 2 rule files have errors"


def test_check_shipped_rule_files(capsys):
    files = [str(p) for p in sorted((REPO / "rules").glob("*.yaml")) if p.name != "motion.yaml"]
    assert main(["check", "-q", *files]) == 0
    assert capsys.readouterr().out == ""


def test_check_as_a_real_command(tmp_path):
    bad = write_rules(tmp_path, "rules:\n  - {name: a, trigger: nosuch}\n")
    proc = subprocess.run(
        [sys.executable, "-m", "autorec", "check", str(bad)], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 2
    assert proc.stderr.startswith(f"{bad}:2: rules[a].trigger: unknown trigger 'nosuch' (known: electrodes, ")


def test_plugins_lists_builtins_with_options(capsys):
    code = main(["plugins"])
    out = capsys.readouterr().out
    for name in ("electrodes", "movement", "threshold", "message", "interval", "motion"):
        assert f"\n{name}  (built-in, " in "\n" + out
    assert "- min_pins: int, default 1, >= 1" in out
    assert "- every: duration, required" in out
    # Exit 1 exactly when something listed cannot be loaded.
    assert code == (1 if "not available" in out else 0)


def test_check_reports_every_error_in_a_file_at_once(tmp_path, capsys):
    bad = write_rules(
        tmp_path,
        """
        output:
          telemetri: false
          video: maybe
        rules:
          - name: a
            trigger: movement
            min_pinz: 2
            post_roll: 3 weeks
          - name: b
            trigger: threshold
            field: hv_regulator.voltge
            above: 3
          - name: a
            trigger: electrodes
        """,
    )
    assert main(["check", str(bad)]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert [line.split(": ")[0:2] for line in lines] == [
        [f"{bad}:2", "output.telemetri"],
        [f"{bad}:3", "output.video"],
        [f"{bad}:7", "rules[a].min_pinz"],
        [f"{bad}:8", "rules[a].post_roll"],
        [f"{bad}:11", "rules[b].field"],
        [f"{bad}:13", "rules[a].name"],
    ]
    assert "units: ms, s, m, min, h, d" in lines[3]


def test_check_warns_about_a_pre_roll_larger_than_memory(tmp_path, capsys):
    from autorec.rules import physical_memory
    from autorec.units import format_size

    memory = physical_memory()
    assert memory is not None  # Linux and macOS both say
    path = write_rules(
        tmp_path, f"segments:\n  pre_roll_max_bytes: {2 * memory}\nrules:\n  - {{name: a, trigger: movement}}\n"
    )
    assert main(["check", str(path)]) == 0  # a warning, not an error
    captured = capsys.readouterr()
    assert captured.err.strip() == (
        f"{path}:2: segments.pre_roll_max_bytes: warning: {format_size(2 * memory)} is more than this machine's "
        f"memory ({format_size(memory)}); a long quiet pre-roll of camera frames could use it all"
    )
    assert f"{path}: OK, 1 rule" in captured.out
