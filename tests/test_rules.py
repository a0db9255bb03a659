"""Rule-file loading: defaults, units, overrides, and every documented error with its line."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from autorec.core.ruleset import OutputSettings
from autorec.core.segmenter import SegmentPolicy
from autorec.core.segmentname import render_segment_name
from autorec.rules import ConfigError, Override, OverrideError, load_rules, parse_rules
from autorec.triggers import registry
from autorec.triggers.electrodes import ElectrodesTrigger
from autorec.triggers.movement import MovementTrigger
from tests.support.rulefiles import write_rules

REPO = Path(__file__).resolve().parent.parent
MINIMAL_RULE = """
rules:
  - name: moved
    trigger: movement
"""


def error_of(tmp_path: Path, text: str) -> ConfigError:
    path = write_rules(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_rules(path)
    err = info.value
    # Always one line, always FILE:LINE: key: message.
    assert "\n" not in str(err)
    assert str(err).startswith(f"{path}:")
    return err


def test_defaults(tmp_path):
    rs = load_rules(write_rules(tmp_path, MINIMAL_RULE))
    assert rs.source is None
    assert rs.output == OutputSettings()
    assert rs.output.dir == Path("recordings") and rs.output.name == "{start:%Y%m%dT%H%M%SZ}-{rules}"
    assert rs.segments == SegmentPolicy(10.0, 20.0, 1800.0, 256_000_000)
    assert rs.hooks.on_segment_close is None and rs.hooks.timeout == 60.0
    assert rs.alerts.alert_after == 60.0
    assert rs.max_errors == 10
    [rule] = rs.rules
    assert rule.trigger is MovementTrigger and rule.trigger_name == "movement"
    assert rule.options == {} and rule.segments == rs.segments and rule.line == 2
    assert rule.max_errors == 10


def test_units_overrides_and_every_section(tmp_path):
    rs = load_rules(
        write_rules(
            tmp_path,
            """
            source: ws://rig.local:7001
            output:
              dir: /data/rec
              name: "{start:%Y-%m-%d_%H%M%S}_{rules}_{seq:03d}"
              telemetry: false
              video: copy
              min_free: 5%
              keep: 7d
              max_total: 50GB
              fsync: false
            segments:
              pre_roll: 1500ms
              post_roll: 2min
              max_length: 1h
              pre_roll_max_bytes: 64MiB
            hooks:
              on_segment_close: [gzip, -9, --keep, "{path}"]
              on_alert: [logger, "{alert}: {message}"]
              timeout: 30s
            alerts: {alert_after: 2min, camera_stall: 5s}
            max_errors: 3
            rules:
              - name: moved
                trigger: movement
                min_pins: 2
                settle: 500ms
                post_roll: 45s
                pre_roll_max_bytes: 1kB
                max_errors: 1
              - name: step
                trigger: electrodes
                pins: [1, 2, 3]
            """,
        )
    )
    assert rs.source == "ws://rig.local:7001"
    out = rs.output
    assert (out.dir, out.telemetry, out.video, out.fsync) == (Path("/data/rec"), False, "copy", False)
    assert (out.min_free, out.min_free_percent, out.keep, out.max_total) == (None, 5.0, 7 * 86400.0, 50 * 10**9)
    assert out.min_free_bytes(10**12) == 5 * 10**10
    assert rs.segments == SegmentPolicy(1.5, 120.0, 3600.0, 64 * 2**20)
    assert rs.hooks.on_segment_close == ["gzip", "-9", "--keep", "{path}"]
    assert rs.hooks.timeout == 30.0 and rs.alerts.alert_after == 120.0 and rs.alerts.camera_stall == 5.0
    moved, step = rs.rules
    assert moved.options == {"min_pins": 2, "settle": 0.5}
    # Per-rule overrides replace only the keys given.
    assert moved.segments == SegmentPolicy(1.5, 45.0, 3600.0, 1000)
    assert moved.max_errors == 1 and step.max_errors == 3
    assert step.segments == rs.segments and step.options == {"pins": [1, 2, 3]}
    assert type(step.options["pins"]) is list  # plain data, not the loader's line-carrying list
    assert rs.max_pre_roll == 1.5 and rs.max_pre_roll_bytes == 64 * 2**20


def test_min_free_default_and_absolute(tmp_path):
    assert OutputSettings().min_free_bytes(10**10) == 10**9  # 1 GB beats 5 % of 10 GB
    assert OutputSettings().min_free_bytes(10**12) == 5 * 10**10  # 5 % of 1 TB beats 1 GB
    rs = parse_rules("output: {min_free: 2GB}\n" + MINIMAL_RULE)
    assert rs.output.min_free == 2 * 10**9 and rs.output.min_free_bytes(10**12) == 2 * 10**9


def test_video_off_is_yaml_false(tmp_path):
    # YAML 1.1 reads a bare `off` as false: it must still mean "off".
    assert parse_rules("output: {video: off}\n" + MINIMAL_RULE).output.video == "off"
    err = error_of(tmp_path, "output:\n  video: on\n" + MINIMAL_RULE)
    assert (err.line, err.key) == (2, "output.video")
    assert "h264, copy, off" in err.message


@pytest.mark.parametrize(
    ("text", "line", "key", "fragment"),
    [
        # unknown keys, with suggestions
        ("segmnets: {pre_roll: 1s}\n" + MINIMAL_RULE, 1, "segmnets", "did you mean 'segments'?"),
        ("output:\n  dri: x\n" + MINIMAL_RULE, 2, "output.dri", "did you mean 'dir'?"),
        ("segments:\n  post_rol: 5s\n" + MINIMAL_RULE, 2, "segments.post_rol", "did you mean 'post_roll'?"),
        (MINIMAL_RULE + "    min_pin: 2\n", 4, "rules[moved].min_pin", "did you mean 'min_pins'?"),
        (MINIMAL_RULE + "    postroll: 2s\n", 4, "rules[moved].postroll", "did you mean 'post_roll'?"),
        # units and ranges
        ("segments:\n  pre_roll: 10 sec\n" + MINIMAL_RULE, 2, "segments.pre_roll", "units: ms, s, m, min, h"),
        ("segments:\n  pre_roll_max_bytes: 2 gigs\n" + MINIMAL_RULE, 2, "segments.pre_roll_max_bytes", "units:"),
        ("segments:\n  post_roll: -5\n" + MINIMAL_RULE, 2, "segments.post_roll", "negative"),
        ("segments:\n  max_length: 0s\n" + MINIMAL_RULE, 2, "segments.max_length", "at least 1s"),
        (MINIMAL_RULE + "    min_pins: 0\n", 4, "rules[moved].min_pins", ">= 1"),
        (MINIMAL_RULE + "    min_pins: two\n", 4, "rules[moved].min_pins", "a whole number"),
        (MINIMAL_RULE + "    settle: 5 fortnights\n", 4, "rules[moved].settle", "unknown duration unit"),
        (MINIMAL_RULE + "    post_roll: 1x\n", 4, "rules[moved].post_roll", "unknown duration unit"),
        ("output:\n  keep: 0s\n" + MINIMAL_RULE, 2, "output.keep", "more than 0"),
        ("output:\n  min_free: 120%\n" + MINIMAL_RULE, 2, "output.min_free", "between 0% and 100%"),
        ("output:\n  telemetry: maybe\n" + MINIMAL_RULE, 2, "output.telemetry", "true or false"),
        ("max_errors: 0\n" + MINIMAL_RULE, 1, "max_errors", "at least 1"),
        ("source: localhost:7001\n" + MINIMAL_RULE, 1, "source", "ws://localhost:7001"),
        # rules list
        ("source: ws://x:1\n", 1, "rules", "missing"),
        ("rules: []\n", 1, "rules", "non-empty list"),
        ("rules:\n  - trigger: movement\n", 2, "rules[0].name", "missing"),
        ("rules:\n  - name: a/b\n    trigger: movement\n", 2, "rules[0].name", "file names"),
        ("rules:\n  - name: a\n", 2, "rules[a].trigger", "movement"),
        (MINIMAL_RULE + "  - name: moved\n    trigger: electrodes\n", 4, "rules[moved].name", "duplicate rule name"),
        # trigger options
        ("rules:\n  - name: t\n    trigger: threshold\n    above: 3\n", 2, "rules[t].field", "required"),
        ("rules:\n  - name: i\n    trigger: interval\n    every: 100ms\n", 4, "rules[i].every", "at least 1s"),
        ("rules:\n  - name: e\n    trigger: electrodes\n    groups: all\n", 4, "rules[e].groups", "drive, scan"),
        ("rules:\n  - name: e\n    trigger: electrodes\n    pins: [1, 200]\n", 4, "rules[e].pins", "0-127"),
        # hooks
        ("hooks:\n  on_segment_close: gzip {path}\n" + MINIMAL_RULE, 2, "hooks.on_segment_close", "no shell"),
        (
            "hooks:\n  on_segment_close: [cp, '{pth}', /b]\n" + MINIMAL_RULE,
            2,
            "hooks.on_segment_close",
            "did you mean {path}?",
        ),
        ("hooks:\n  on_segment_open: [echo, '{alert}']\n" + MINIMAL_RULE, 2, "hooks.on_segment_open", "{sidecar}"),
        ("hooks:\n  on_alert: [echo, '{alrt}']\n" + MINIMAL_RULE, 2, "hooks.on_alert", "did you mean {alert}?"),
        ("hooks:\n  timeot: 5s\n" + MINIMAL_RULE, 2, "hooks.timeot", "did you mean 'timeout'?"),
        ("alerts:\n  alert_after: 0\n" + MINIMAL_RULE, 2, "alerts.alert_after", "more than 0"),
    ],
)
def test_errors_name_line_key_and_what_is_allowed(tmp_path, text, line, key, fragment):
    err = error_of(tmp_path, text)
    assert (err.line, err.key) == (line, key), str(err)
    assert fragment in err.message, str(err)
    assert str(err) == f"{err.file}:{line}: {key}: {err.message}"


def test_unknown_trigger_lists_the_known_ones(tmp_path):
    err = error_of(tmp_path, "rules:\n  - name: x\n    trigger: movment\n")
    assert (err.line, err.key) == (3, "rules[x].trigger")
    assert "did you mean 'movement'?" in err.message
    for name in ("electrodes", "movement", "threshold", "message", "interval", "motion"):
        assert name in err.message


def test_bad_field_path_points_at_the_field_key(tmp_path):
    err = error_of(
        tmp_path,
        """
        rules:
          - name: hot
            trigger: threshold
            field: temperature_control.tempratures[0]
            above: 40
        """,
    )
    assert (err.line, err.key) == (4, "rules[hot].field")
    assert "did you mean 'temperatures'?" in err.message
    err = error_of(tmp_path, "rules:\n  - name: hot\n    trigger: threshold\n    field: hv_regulator.voltage\n")
    assert (err.line, err.key) == (2, "rules[hot].above")  # a missing combination: reported at the rule
    err = error_of(
        tmp_path, "rules:\n  - name: m\n    trigger: message\n    kind: device_info\n    where: {connectd: false}\n"
    )
    assert (err.line, err.key) == (5, "rules[m].where") and "did you mean 'connected'?" in err.message


def test_yaml_syntax_duplicate_keys_and_file_errors(tmp_path):
    err = error_of(tmp_path, "rules:\n  - name: a\n    trigger: [movement\n")
    assert err.key == "(yaml)" and err.line in (3, 4)
    err = error_of(tmp_path, "segments:\n  pre_roll: 1s\n  pre_roll: 2s\n" + MINIMAL_RULE)
    assert (err.line, err.key) == (3, "(yaml)") and "duplicate key 'pre_roll' (first on line 2)" in err.message
    err = error_of(tmp_path, "")
    assert err.key == "(file)" and "empty" in err.message
    err = error_of(tmp_path, "- just\n- a list\n")
    assert (err.line, err.key) == (1, "(file)")
    with pytest.raises(ConfigError, match=r"nope\.yaml: \(file\): cannot read"):
        load_rules(tmp_path / "nope.yaml")
    # Tags that would construct Python objects are refused by the safe loader.
    err = error_of(tmp_path, "source: !!python/object/apply:os.system [echo hi]\n" + MINIMAL_RULE)
    assert err.key == "(yaml)" and err.line == 1


@pytest.mark.parametrize(
    ("name", "fragment"),
    [
        ("../{start}", "not a plain file name"),
        ("/tmp/{start}", "not a plain file name"),
        ("{start:%Y/%m/%d}-{rules}", "not a plain file name"),
        ("{rules}", "must contain {start} or {seq}"),
        ("{start}-{nope}", "unknown placeholder {nope}"),
        ("{start.year}", "unknown placeholder"),
        ("{start!r}", "conversions are not allowed"),
        (".{start}", "hidden"),
        ("{seq:%Y}", "cannot render"),
    ],
)
def test_name_template_cannot_escape_output_dir(tmp_path, name, fragment):
    err = error_of(tmp_path, f"output:\n  dir: out\n  name: '{name}'\n" + MINIMAL_RULE)
    assert (err.line, err.key) == (3, "output.name"), str(err)
    assert fragment in err.message, str(err)


def test_render_segment_name():
    t = 1795516318.9  # 2026-11-24T10:31:58.9Z
    assert render_segment_name("{start:%Y%m%dT%H%M%SZ}-{rules}", t, ["a", "b", "a"], 1) == "20261124T103158Z-a+b"
    assert render_segment_name("{start}-{seq:04d}", t, [], 7) == "20261124T103158Z-0007"
    assert render_segment_name("{start:%H%M%S.%f}_{rules}", t, ["x"], 0) == "103158.900000_x"
    # Even a template never validated cannot produce a separator, '..' or a hidden name.
    for template in ("../../{rules}", "{start:%Y/%m}/{seq}", "..", "/abs/{seq}", "a\\b\x00{seq}"):
        name = render_segment_name(template, t, ["r"], 1)
        assert "/" not in name and "\\" not in name and "\x00" not in name
        assert not name.startswith(".") and name not in ("", ".", "..")
        assert Path("/out", name).parent == Path("/out")
    # A rig clock far out of range still gives a name: clamped to the calendar (autorec.dates).
    assert render_segment_name("{start}-{rules}", 1e20, ["r"], 0) == "99991231T235959Z-r"
    assert render_segment_name("{start}-{rules}", -1e20, ["r"], 0) == "00010101T000000Z-r"
    assert render_segment_name("{start}-{rules}", float("nan"), ["r"], 0) == "19700101T000000Z-r"
    long = render_segment_name("{start}-{rules}", t, [f"rule-{i:02d}-" + "x" * 50 for i in range(10)], 0)
    assert len(long.encode()) <= 200


def test_plugin_module_class_beside_the_rule_file(tmp_path):
    (tmp_path / "labtriggers_h6.py").write_text(
        "from autorec.triggers.base import Option, Trigger\n"
        "class Bubble(Trigger):\n"
        "    name = 'bubble'\n"
        "    options = (Option('size', 'float', default=1.0, min=0),)\n"
        "    kinds = frozenset({'image'})\n"
        "class Broken(Trigger):\n"
        "    def __init__(self, rule, **options):\n"
        "        raise RuntimeError('no camera calibration')\n"
        "NotATrigger = dict\n"
        "class OneKind(Trigger):\n"
        "    kinds = 'image'\n"
        "class Unknown(Trigger):\n"
        "    kinds = frozenset({'imagez'})\n"
    )
    rs = load_rules(write_rules(tmp_path, "rules:\n  - name: b\n    trigger: labtriggers_h6:Bubble\n    size: 2\n"))
    assert rs.rules[0].trigger.__name__ == "Bubble" and rs.rules[0].options == {"size": 2.0}
    err = error_of(tmp_path, "rules:\n  - name: b\n    trigger: labtriggers_h6:Bubble\n    size: -1\n")
    assert (err.line, err.key) == (4, "rules[b].size") and ">= 0" in err.message
    err = error_of(tmp_path, "rules:\n  - name: b\n    trigger: labtriggers_h6:Bubbel\n")
    assert (err.line, err.key) == (3, "rules[b].trigger") and "did you mean 'Bubble'?" in err.message
    # the classes a rule could name: the imported base class is none of them
    assert err.message.endswith("(Trigger classes there: Bubble, Broken, OneKind, Unknown)"), err.message
    err = error_of(tmp_path, "rules:\n  - name: b\n    trigger: labtriggers_h6:NotATrigger\n")
    assert "not a Trigger subclass" in err.message
    err = error_of(tmp_path, "rules:\n  - name: b\n    trigger: labtriggers_h6:Broken\n")
    assert (err.line, err.key) == (2, "rules[b]") and "RuntimeError: no camera calibration" in err.message
    err = error_of(tmp_path, "rules:\n  - name: b\n    trigger: labtriggers_h6:OneKind\n")
    assert (err.line, err.key) == (3, "rules[b].trigger") and "kinds='image'" in err.message
    err = error_of(tmp_path, "rules:\n  - name: b\n    trigger: labtriggers_h6:Unknown\n")
    assert "unknown kind(s) imagez" in err.message
    err = error_of(tmp_path, "rules:\n  - name: b\n    trigger: no_such_pkg_h6.sub:X\n")
    assert (err.line, err.key) == (3, "rules[b].trigger") and "cannot import no_such_pkg_h6.sub" in err.message


def test_a_missing_builtin_module_only_fails_its_own_rules(tmp_path, monkeypatch):
    monkeypatch.setitem(registry.BUILTINS, "sonar", "autorec.triggers.sonar_h6_missing:SonarTrigger")
    err = error_of(tmp_path, "rules:\n  - name: s\n    trigger: sonar\n")
    assert "built-in trigger 'sonar' is not available here" in err.message
    assert load_rules(write_rules(tmp_path, MINIMAL_RULE)).rules[0].trigger is MovementTrigger
    assert registry.resolve("electrodes") is ElectrodesTrigger


@pytest.mark.parametrize("path", sorted((REPO / "rules").glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_rule_files_load(path):
    text = path.read_text()
    trigger_names = set(re.findall(r"^\s*-?\s*trigger:\s*(\S+)", text, re.M))
    for name in trigger_names:
        registry.resolve(name)  # a shipped rule file naming a trigger that does not resolve is a failure
    rs = load_rules(path)
    assert rs.rules and {r.trigger_name for r in rs.rules} == trigger_names


def test_yaml_merge_keys_may_be_overridden(tmp_path):
    rs = load_rules(
        write_rules(
            tmp_path,
            """
            rules:
              - &moved {name: moved, trigger: movement, post_roll: 30s, min_pins: 2}
              - <<: *moved
                name: moved-fast
                post_roll: 5s
            """,
        )
    )
    assert [(r.name, r.segments.post_roll, r.options) for r in rs.rules] == [
        ("moved", 30.0, {"min_pins": 2}),
        ("moved-fast", 5.0, {"min_pins": 2}),
    ]
    with pytest.raises(ConfigError) as info:
        parse_rules("rules:\n  - &m {name: a, trigger: movement, min_pins: 0}\n  - {<<: *m, name: b}\n")
    # both rules have the bad value; it is written on line 2 for both
    assert [(e.line, e.key) for e in info.value.errors] == [(2, "rules[a].min_pins"), (2, "rules[b].min_pins")]


def test_hook_commands_follow_the_hooks_contract(tmp_path: Path) -> None:
    """What `autorec check` accepts is exactly what the hook runner runs: one contract."""
    text = (
        "hooks:\n"
        "  on_segment_close: [awk, '{ print }', '{path}']\n"
        "  on_alert: [[logger, '{alert} {state} {since}'], [echo, '{time}']]\n" + MINIMAL_RULE
    )
    rs = load_rules(write_rules(tmp_path, text))
    assert rs.hooks.on_segment_close == ["awk", "{ print }", "{path}"]
    assert rs.hooks.on_alert == [["logger", "{alert} {state} {since}"], ["echo", "{time}"]]


def test_heartbeat_default_value_and_off():
    assert parse_rules(MINIMAL_RULE).heartbeat == 300.0
    assert parse_rules("heartbeat: 1min\n" + MINIMAL_RULE).heartbeat == 60.0
    assert parse_rules("heartbeat: null\n" + MINIMAL_RULE).heartbeat is None
    with pytest.raises(ConfigError, match=r"<rules>:1: heartbeat: must be more than 0"):
        parse_rules("heartbeat: 0s\n" + MINIMAL_RULE)


def test_m_means_minutes_and_unit_errors_list_the_units():
    rs = parse_rules("segments:\n  pre_roll: 3m\n" + MINIMAL_RULE)
    assert rs.segments.pre_roll == 180.0
    with pytest.raises(ConfigError) as info:
        parse_rules("segments:\n  pre_roll: 3 mins\n" + MINIMAL_RULE)
    assert str(info.value) == "<rules>:2: segments.pre_roll: unknown duration unit 'mins' in '3 mins' " + (
        "(units: ms, s, m, min, h, d)"
    )


@pytest.mark.parametrize(
    ("text", "line", "words"),
    [
        ("rules:\n\t- name: a\n", 2, "tabs are not allowed for indentation; use spaces"),
        ("rules:\n  - name: a: b\n", 2, "unexpected ':'"),
        ("rules:\n  - name: a\n   trigger: x\n", 3, "the indentation does not line up"),
        ('rules:\n  - name: "a\n\n\n', 2, "a quote (' or \") is opened and never closed"),
        ("rules: [a, b\n\n", 1, "a '[' list is not closed with ']'"),
    ],
)
def test_yaml_syntax_errors_are_reworded_for_people(text, line, words):
    with pytest.raises(ConfigError) as info:
        parse_rules(text, "r.yaml")
    err = info.value
    assert (err.line, err.key) == (line, "(yaml)")
    assert err.message.startswith(words) and "[YAML: " in err.message  # the parser's words stay, for searching


def test_every_error_of_a_file_in_one_pass(tmp_path):
    """An unknown trigger does not hide a bad duration of its rule, a wrong post_roll does not hide a
    misspelt field path, a missing option does not hide a bad one, a bad rule name does not hide a
    misspelt field path: one `check` lists them all."""
    path = write_rules(
        tmp_path,
        """\
rules:
  - name: a
    trigger: no-such-trigger
    post_roll: soon
  - name: b
    trigger: threshold
    field: hv_regulator.voltag
    above: 10
    post_roll: -3s
  - name: c
    trigger: interval
    align: maybe
  - name: hot plate
    trigger: threshold
    field: temperature_control.temperature[0]
    above: 45
""",
    )
    with pytest.raises(ConfigError) as info:
        load_rules(path)
    found = [(e.line, e.key) for e in info.value.errors]
    assert found == [
        (3, "rules[a].trigger"),
        (4, "rules[a].post_roll"),
        (7, "rules[b].field"),
        (9, "rules[b].post_roll"),
        (10, "rules[c].every"),
        (12, "rules[c].align"),
        (13, "rules[3].name"),
        (15, "rules[3].field"),
    ], str(info.value)


def test_a_bare_number_names_the_unit_it_was_read_in(tmp_path):
    path = write_rules(tmp_path, "rules:\n  - {name: m, trigger: movement, settle: 200}\n")
    with pytest.raises(ConfigError, match=r"settle: must be <= 60 s, got 200\.0 \(200 s: a bare number is seconds; "):
        load_rules(path)
    path = write_rules(tmp_path, "rules:\n  - {name: m, trigger: movement, post_roll: 300}\n")
    [warning] = load_rules(path).warnings
    assert "post_roll: warning: 300 is read as 300 s" in warning and "write 300ms for milliseconds" in warning
    path = write_rules(tmp_path, "segments: {post_roll: 300}\nrules:\n  - {name: m, trigger: movement}\n")
    [warning] = load_rules(path).warnings
    assert ":1: segments.post_roll: warning: 300 is read as 300 s" in warning, warning  # the same key, the same warning
    # Too large a bare number may have meant milliseconds; too small a one did not (`0ms` is still 0).
    path = write_rules(tmp_path, "output: {timelapse: 90000}\nrules:\n  - {name: m, trigger: movement}\n")
    with pytest.raises(ConfigError, match=r"timelapse: must be at most 1d, got 90000 \(90000 s: a bare number is sec"):
        load_rules(path)
    for text in ("output: {timelapse: 0}", "output: {keep: 0}", "segments: {max_length: 0.5}"):
        path = write_rules(tmp_path, text + "\nrules:\n  - {name: m, trigger: movement}\n")
        with pytest.raises(ConfigError) as info:
            load_rules(path)
        assert "ms for milliseconds" not in str(info.value), str(info.value)


def test_a_bare_off_where_no_off_is_allowed_says_how_yaml_read_it(tmp_path):
    """`keep: off` reaches the loader as false: the error says why it says `got False`, and what
    turns the key off instead when something does."""
    path = write_rules(tmp_path, "output: {keep: off}\nrules:\n  - {name: m, trigger: movement}\n")
    with pytest.raises(ConfigError) as info:
        load_rules(path)
    assert str(info.value).endswith(
        "output.keep: expected a duration like 10s, got False (YAML reads a bare on/off, yes/no as true/false;"
        " write null for none)"
    ), str(info.value)
    path = write_rules(tmp_path, "alerts: {alert_after: no}\nrules:\n  - {name: m, trigger: movement}\n")
    with pytest.raises(
        ConfigError, match=r"alert_after: .*got False \(YAML reads a bare on/off, yes/no as true/false\)$"
    ):
        load_rules(path)


def test_a_bare_date_is_shown_as_written(tmp_path):
    """YAML reads `keep: 2026-12-01` as a date: the error shows what was written, not Python's repr."""
    path = write_rules(
        tmp_path,
        "output: {keep: 2026-12-01, max_total: 2026-12-01 10:00:00}\nrules:\n  - {name: m, trigger: movement}\n",
    )
    with pytest.raises(ConfigError) as info:
        load_rules(path)
    [keep, max_total] = info.value.errors
    assert keep.message.endswith("got 2026-12-01 (YAML reads it as a date)"), keep.message
    assert max_total.message.endswith("got 2026-12-01 10:00:00 (YAML reads it as a date)"), max_total.message


def test_a_negative_duration_or_size_is_said_to_be_negative(tmp_path):
    path = write_rules(
        tmp_path, "alerts: {alert_after: -5s}\noutput: {max_total: -2GB}\nrules:\n  - {name: m, trigger: movement}\n"
    )
    with pytest.raises(ConfigError) as info:
        load_rules(path)
    assert [e.message for e in info.value.errors] == [
        "a duration cannot be negative, got '-5s'",
        "a size cannot be negative, got '-2GB'",
    ]


def test_set_offers_the_rule_it_probably_meant(tmp_path):
    path = write_rules(tmp_path, "rules:\n  - {name: drops-moved, trigger: movement}\n")
    with pytest.raises(OverrideError, match="no rule named 'drops-move'; did you mean 'drops-moved'"):
        load_rules(path, [Override.parse("drops-move.min_pins=2")])


def test_a_rules_budget_and_flap_keys_are_checked_with_its_other_keys(tmp_path):
    """A bad near_miss used to stop the rule before its budget and flap keys were read: fixing it
    revealed the next error. Now all three are in the first pass."""
    path = write_rules(
        tmp_path,
        "rules:\n  - name: a\n    trigger: movement\n    near_miss: 1\n    max_share: 200%\n"
        "    flap_rate: 3\n    flap_for: 90s\n",
    )
    with pytest.raises(ConfigError) as info:
        load_rules(path)
    assert [(e.line, e.key) for e in info.value.errors] == [
        (4, "rules[a].near_miss"),
        (5, "rules[a].max_share"),
        (7, "rules[a].flap_for"),
    ], str(info.value)
    assert "must be a multiple of 1min" in info.value.errors[2].message
