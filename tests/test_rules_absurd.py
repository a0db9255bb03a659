"""Absurd values in rule files: each is `FILE:LINE: ...` and exit 2 from `autorec check`, never a traceback."""

from __future__ import annotations

from pathlib import Path

import pytest

from autorec.cli import main
from autorec.rules import ConfigError, load_rules

BASE = "rules:\n  - name: el\n    trigger: electrodes\n"  # lines 1-3

# (name, file text, the line the error must name, a word the message must contain)
ABSURD = [
    ("flow-nesting", BASE + "x: " + "[" * 1000 + "]" * 1000 + "\n", 4, "nested"),
    ("flow-nesting-huge", BASE + "x: " + "{a: " * 200_000 + "\n", 4, "nested"),
    ("map-nesting", BASE + "x:\n" + "".join(" " * (i + 1) + f"k{i}:\n" for i in range(1000)), 4 + 63, "nested"),
    ("seq-nesting", BASE + "x:\n" + "".join(" " * (i + 1) + "-\n" for i in range(1000)), 4 + 64, "nested"),
    ("int-5000-digits", "max_errors: " + "9" * 5000 + "\n" + BASE, 1, "integer"),
    ("int-option", BASE.replace("electrodes", "movement") + "    min_pins: " + "7" * 5000 + "\n", 4, "integer"),
    ("float-huge", "max_errors: 1" + "0" * 5000 + ".5\n" + BASE, 1, "max_errors"),
    ("bad-date", BASE + "x: 2026-13-45\n", 4, "date"),
    ("name-width-1e9", 'output:\n  name: "{seq:1000000000}"\n' + BASE, 2, "width"),
    ("name-width-1e14", 'output:\n  name: "{seq:100000000000000}"\n' + BASE, 2, "width"),
    ("name-rules-width", 'output:\n  name: "{start}{rules:>100000000000000}"\n' + BASE, 2, "width"),
    ("name-precision", 'output:\n  name: "{start}{rules:.' + "9" * 5000 + '}"\n' + BASE, 2, "precision"),
    ("hook-width", BASE + 'hooks:\n  on_segment_close: [echo, "{rules:>1000000000}"]\n', 5, "width"),
    ("nul-byte", BASE + "# a comment\x00 with a NUL\n", 4, "NUL"),
    ("nul-in-value", BASE + "    post_roll: 1\x00s\n", 4, "NUL"),
    ("hooks-timeout", BASE + "hooks:\n  timeout: 300000d\n", 5, "too long"),
    ("shutdown-grace", BASE + "shutdown_grace: 300000d\n", 4, "too long"),
    ("alert-after", BASE + "alerts:\n  alert_after: 1e300s\n", 5, "too long"),
    ("camera-stall", BASE + "alerts:\n  camera_stall: 99999999999d\n", 5, "too long"),
    ("post-roll", "segments:\n  post_roll: 1e15\n" + BASE, 2, "too long"),
    ("keep", "output:\n  keep: 300000d\n" + BASE, 2, "too long"),
    ("rule-max-length", BASE + "    max_length: 4000d\n", 4, "too long"),
]


@pytest.mark.parametrize("name,text,line,word", ABSURD, ids=[a[0] for a in ABSURD])
def test_absurd_value_is_one_line_with_file_and_line(tmp_path: Path, capsys, name, text, line, word):
    path = tmp_path / f"{name}.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_rules(path)
    assert info.value.line == line, str(info.value)
    assert word in str(info.value)
    assert main(["check", str(path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"{path}:{line}: "), err
    assert "Traceback" not in err[0] and len(err[0]) < 400


def test_sane_values_near_the_limits_still_load(tmp_path: Path):
    path = tmp_path / "ok.yaml"
    path.write_text(
        'output:\n  name: "{start}-{seq:04d}-{rules:.40}"\n  keep: 3650d\n'
        "hooks:\n  timeout: 365d\n"
        "shutdown_grace: 1h\nsegments:\n  post_roll: 1d\n  pre_roll_max_bytes: 1GB\n" + BASE + "x: [[[1]]]\n"
    )
    with pytest.raises(ConfigError, match="unknown key"):  # x is not a key: the nesting itself is fine
        load_rules(path)
    path.write_text(path.read_text().replace("x: [[[1]]]\n", ""))
    rs = load_rules(path)
    assert rs.output.keep == 3650 * 86400.0 and rs.hooks.timeout == 365 * 86400.0
