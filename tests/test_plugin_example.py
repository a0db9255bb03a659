"""The example plugin in examples/plugins/, installed for real (pip builds and installs a wheel into a temporary
target directory, so the venv itself is left alone), used by entry point and by `module:Class`; a raising plugin;
bad options; the example hook script."""

from __future__ import annotations

import gzip
import importlib
import importlib.util
import json
import logging
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from autorec import events
from autorec.io.logfile import LogReader
from autorec.services.alerts import AlertMonitor, AlertReporter
from autorec.services.hooks import HookEvent, HookRunner, SegmentHooks, from_config

REPO = Path(__file__).resolve().parent.parent
EXAMPLES = REPO / "examples" / "plugins"
PLUGIN_SRC = EXAMPLES / "autorec-capstep"
RULES = EXAMPLES / "capstep.yaml"

from autorec import rules as rules_mod  # noqa: E402
from autorec.core import engine as engine_mod  # noqa: E402
from autorec.core.dryrun import DryRun  # noqa: E402
from autorec.core.pipeline import Pipeline  # noqa: E402
from autorec.runs.dispatch import Dispatcher  # noqa: E402
from autorec.triggers import registry  # noqa: E402
from tests.support.eventbuilder import hv, message  # noqa: E402


@pytest.fixture(scope="module")
def installed_plugin(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`pip install` the example plugin into a fresh target directory put on sys.path; yields that directory.

    Built from a copy so the build leaves no `build/` or egg-info in the source tree. No network: setuptools
    from this environment builds it (the test extra pulls it in via grpcio-tools; skipped if it is missing).
    """
    if importlib.util.find_spec("setuptools") is None:
        pytest.skip("setuptools is not installed in this environment: cannot build the example plugin offline")
    work = tmp_path_factory.mktemp("plugin")
    src = work / "src"
    shutil.copytree(PLUGIN_SRC, src, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    target = work / "site"
    cmd = [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation", "--no-index"]
    cmd += ["--disable-pip-version-check", "--target", str(target), str(src)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=110)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert list(target.glob("autorec_capstep-*.dist-info/entry_points.txt"))
    sys.path.insert(0, str(target))
    importlib.invalidate_caches()
    yield target
    sys.path.remove(str(target))
    for name in [m for m in sys.modules if m == "autorec_capstep" or m.startswith("autorec_capstep.")]:
        del sys.modules[name]
    importlib.invalidate_caches()


def _env_with(target: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(target), *filter(None, [env.get("PYTHONPATH")])])
    return env


def _group0_steps(log: Path) -> list[float]:
    """Times where group 0 of group_capacitance changed from its previous sample (the fixture's steps are clean)."""
    out, prev = [], None
    for _rec, ev in LogReader(log).events():
        if events.kind(ev) != "group_capacitance":
            continue
        value = ev.group_capacitance.measurements[0]
        if prev is not None and value != prev:
            out.append(events.timestamp(ev))
        prev = value
    return out


def _run_engine(ruleset, log: Path) -> tuple[object, list]:
    engine = engine_mod.RuleEngine(ruleset)
    firings, now = [], None
    for _rec, ev in LogReader(log).events():
        t = events.timestamp(ev)
        now = t if t is not None else now
        if now is not None:
            firings += engine.feed(now, ev)
    return engine, firings


def test_entry_point_and_module_class_find_the_same_installed_class(installed_plugin: Path) -> None:
    by_name = registry.resolve("capacitance_step")
    by_target = registry.resolve("autorec_capstep:CapacitanceStep")
    assert by_name is by_target
    assert Path(sys.modules[by_name.__module__].__file__).is_relative_to(installed_plugin)
    assert "capacitance_step" in registry.known_names()
    [info] = [i for i in registry.available() if i.name == "capacitance_step"]
    assert info.origin == "plugin autorec-capstep 0.1.0" and info.cls is by_name and info.error is None


def test_example_rule_file_records_every_capacitance_step_in_the_upstream_log(
    installed_plugin: Path, upstream_log: Path
) -> None:
    ruleset = rules_mod.load_rules(RULES)
    [rule] = ruleset.rules
    assert rule.trigger_name == "capacitance_step" and rule.options["window"] == 2.0
    assert ruleset.hooks.on_segment_close[1].endswith("archive_segment.py")
    engine, firings = _run_engine(ruleset, upstream_log)
    expected = _group0_steps(upstream_log)
    assert len(expected) >= 8  # the drop crosses group 0 every few seconds in the 30 s log
    assert [f.time for f in firings] == pytest.approx(expected)
    assert {f.rule for f in firings} == {"group0-step"}
    assert [abs(f.evidence["change"]) for f in firings] == pytest.approx([32.8] * len(firings), abs=0.1)
    assert engine.errors == {} and engine.disabled == {}


def test_same_rule_by_module_class(installed_plugin: Path, upstream_log: Path) -> None:
    text = RULES.read_text().replace("trigger: capacitance_step", "trigger: autorec_capstep:CapacitanceStep")
    ruleset = rules_mod.parse_rules(text, RULES)
    _engine, firings = _run_engine(ruleset, upstream_log)
    assert [f.time for f in firings] == pytest.approx(_group0_steps(upstream_log))


@pytest.mark.parametrize(
    ("option", "complaint"),
    [
        ("step: -1", ["step", ">= 0.0"]),
        ("source: passive", ["source", "one of group, active"]),
        ("windw: 2s", ["windw", "window"]),
        ("holdoff: soon", ["holdoff", "duration"]),
    ],
)
def test_bad_plugin_options_are_config_errors_with_line(
    installed_plugin: Path, tmp_path: Path, option: str, complaint: list[str]
) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text(
        textwrap.dedent(f"""\
            rules:
              - name: step
                trigger: capacitance_step
                {option}
            """)
    )
    with pytest.raises(rules_mod.ConfigError) as info:
        rules_mod.load_rules(path)
    message = str(info.value)
    assert message.startswith(f"{path}:4: ")
    for part in complaint:
        assert part in message


def test_a_raising_plugin_is_counted_disabled_and_alerted(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    (tmp_path / "flaky_plugin_for_test.py").write_text(
        textwrap.dedent("""\
            from autorec.triggers.base import Trigger

            class Flaky(Trigger):
                name = "flaky"
                kinds = frozenset({"hv_regulator"})

                def feed(self, time, event, state):
                    raise ZeroDivisionError("bubble detector divided by zero")
            """)
    )
    path = tmp_path / "rules.yaml"
    path.write_text(
        textwrap.dedent("""\
            rules:
              - name: bubbles
                trigger: flaky_plugin_for_test:Flaky
                max_errors: 3
              - name: volts
                trigger: message
                kind: hv_regulator
            """)
    )
    caplog.set_level(logging.INFO)
    ruleset = rules_mod.load_rules(path)
    hook_events: list[HookEvent] = []
    hooks = HookRunner()
    hooks.add_callback("on_alert", hook_events.append)
    reporter = AlertReporter(AlertMonitor(), hooks)
    # The reporter hears of the disabled rule as any listener hears of anything: a pipeline output.
    dispatcher = Dispatcher(
        Pipeline(ruleset, offline=True, telemetry=False), DryRun(say=lambda line: None), listeners=[reporter]
    )
    engine = dispatcher.pipeline.engine
    for i in range(5):
        dispatcher.message(message(hv(1000.0 + i, 100.0), received=1000.0 + i))
    assert dispatcher.stats.firings == 5  # the other rule never noticed
    assert engine.errors["bubbles"] == 3  # not called again once disabled
    assert "bubbles" in engine.disabled and "ZeroDivisionError" in engine.disabled["bubbles"]
    assert [(a.state, a.key, a.time) for a in reporter.announced] == [("raised", "plugin_disabled:bubbles", 1002.0)]
    # SIGHUP with the rule file unchanged: the rule gets a fresh trigger, and its alert clears
    # (the README promises it; before, nothing ever cleared it outside tests).
    dispatcher.reload(rules_mod.load_rules(path))
    assert [(a.state, a.key) for a in reporter.announced][-1] == ("cleared", "plugin_disabled:bubbles")
    assert not reporter.monitor.active
    assert hooks.close(30)
    hook_event, cleared = hook_events
    assert hook_event.values["alert"] == "plugin_disabled:bubbles" and hook_event.values["rules"] == "bubbles"
    assert (cleared.values["alert"], cleared.values["state"]) == ("plugin_disabled:bubbles", "cleared")
    assert "bubble detector divided by zero" in hook_event.values["message"]
    assert any("ALERT plugin_disabled:bubbles: rule 'bubbles' disabled" in r.getMessage() for r in caplog.records)
    tracebacks = [r for r in caplog.records if r.exc_info and "bubbles" in r.getMessage()]
    assert len(tracebacks) == 1  # logged once, with its traceback


def test_archive_hook_compresses_a_closed_segment(tmp_path: Path, upstream_log: Path) -> None:
    seg_dir = tmp_path / "night of 'the' run"
    seg_dir.mkdir()
    segment = seg_dir / "20261124T010203Z-group0-step.bin"
    shutil.copyfile(upstream_log, segment)
    sidecar = segment.with_suffix(".json")
    sidecar.write_text('{"start": 1.0}')
    archive = tmp_path / "archive dir"
    hook = [sys.executable, str(EXAMPLES / "hooks" / "archive_segment.py"), "{path}", "{sidecar}", str(archive)]
    runner = from_config({"on_segment_close": hook, "timeout": "60s"})
    try:
        runner.segment_closed(segment, sidecar, "group0-step", 1.0, 2.0)
        assert runner.wait(60)
    finally:
        runner.close(1)
    [result] = runner.results
    assert result.returncode == 0, result.output
    assert gzip.decompress((archive / (segment.name + ".gz")).read_bytes()) == segment.read_bytes()
    assert (archive / sidecar.name).read_text() == '{"start": 1.0}'
    assert sorted(p.name for p in archive.iterdir()) == [segment.name + ".gz", sidecar.name]  # no temp files left
    # a failing archive (destination is a file) exits 1 with a one-line message
    proc = subprocess.run(
        [sys.executable, str(EXAMPLES / "hooks" / "archive_segment.py"), str(segment), str(sidecar), str(sidecar)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 1 and proc.stderr.startswith("archive_segment: ")


def test_a_hook_script_beside_the_rule_file_runs_from_any_working_directory(
    tmp_path: Path, upstream_log: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """capstep.yaml names its script `hooks/archive_segment.py`, relative to the rule file's folder: loaded and
    run from a folder that has no `hooks/`, the hook still finds it; `recordings/archive` (not a file beside
    the rule file) stays relative to where autorec runs."""
    monkeypatch.chdir(tmp_path)
    ruleset = rules_mod.load_rules(RULES)
    hook = list(ruleset.hooks.on_segment_close)
    assert hook[1] == str(EXAMPLES / "hooks" / "archive_segment.py")
    assert hook[2:] == ["{path}", "{sidecar}", "recordings/archive"]
    segment = tmp_path / "20261124T010203Z-group0-step.bin"
    shutil.copyfile(upstream_log, segment)
    segment.with_suffix(".json").write_text("{}")
    hook[0] = sys.executable  # this interpreter rather than whatever python3 is on PATH
    runner = from_config({"on_segment_close": hook, "timeout": "60s"})
    try:
        runner.segment_closed(segment, segment.with_suffix(".json"), "group0-step", 1.0, 2.0)
        assert runner.wait(60)
    finally:
        runner.close(1)
    [result] = runner.results
    assert result.returncode == 0, result.output
    assert (tmp_path / "recordings" / "archive" / (segment.name + ".gz")).is_file()


def test_autorec_plugins_lists_the_installed_plugin_with_its_options(installed_plugin: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "autorec", "plugins"],
        capture_output=True,
        text=True,
        timeout=60,
        env=_env_with(installed_plugin),
    )
    # (the exit status also reflects built-ins that cannot load here, e.g. one whose module is missing)
    assert proc.returncode in (0, 1), proc.stderr
    lines = proc.stdout.splitlines()
    [first] = [i for i, line in enumerate(lines) if line.startswith("capacitance_step ")]
    end = next((i for i in range(first + 1, len(lines)) if not lines[i].startswith(" ")), len(lines))
    block = "\n".join(lines[first:end])
    assert "plugin autorec-capstep 0.1.0" in block and "not available" not in block
    for option in ("source: str", "group: int", "step: float", "window: duration", "holdoff: duration"):
        assert f"- {option}" in block


def test_autorec_check_accepts_the_example_rule_file(installed_plugin: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "autorec", "check", str(RULES)],
        capture_output=True,
        text=True,
        timeout=60,
        env=_env_with(installed_plugin),
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "group0-step" in proc.stdout
    # without the plugin installed, the same file is a config error naming its line
    bare = subprocess.run(
        [sys.executable, "-m", "autorec", "check", str(RULES)], capture_output=True, text=True, timeout=60
    )
    assert bare.returncode == 2
    assert f"{RULES}:" in bare.stdout + bare.stderr and "capacitance_step" in bare.stdout + bare.stderr


def test_backtest_through_the_pipeline_archives_every_segment(
    installed_plugin: Path, tmp_path: Path, upstream_log: Path
) -> None:
    """The example rule file end to end: plugin trigger -> segments -> writer -> archive hook, over the upstream log."""
    from autorec.core import pipeline as pipeline_mod
    from autorec.io import writer as writer_mod
    from autorec.runs import filesource
    from autorec.runs.dispatch import Dispatcher

    text = RULES.read_text().replace("dir: recordings", f"dir: {tmp_path / 'out'}")
    text = text.replace("post_roll: 10s", "post_roll: 1s").replace("pre_roll: 5s", "pre_roll: 1s")
    ruleset = rules_mod.parse_rules(text, RULES)
    archive = tmp_path / "archive"
    close_hook = list(ruleset.hooks.on_segment_close)
    close_hook[0], close_hook[-1] = sys.executable, str(archive)  # same script, this interpreter, a tmp archive
    close_hook[1] = str(EXAMPLES / "hooks" / "archive_segment.py")
    hooks = from_config({"on_segment_close": close_hook, "timeout": ruleset.hooks.timeout})
    writer = writer_mod.SegmentWriter(
        tmp_path / "out", ruleset.output.name, fsync=False, telemetry=False, block=True, observers=[SegmentHooks(hooks)]
    )
    writer.start()
    dispatcher = Dispatcher(pipeline_mod.Pipeline(ruleset, offline=True, telemetry=False), writer)
    filesource.run_file(dispatcher, filesource.FileSource(upstream_log))
    assert writer.close(60)
    assert hooks.close(60)
    segments = sorted((tmp_path / "out").glob("*.bin"))
    assert len(segments) >= 2, "each group-0 step with 1 s post-roll should give its own segment"
    assert hooks.counters["ok"] == len(segments) and hooks.counters["failed"] == 0
    for seg in segments:
        assert gzip.decompress((archive / (seg.name + ".gz")).read_bytes()) == seg.read_bytes()
        assert (archive / seg.with_suffix(".json").name).is_file()


RULES_FROM_TOP = "examples/plugins/capstep.yaml"
SIM_4MIN = ("--speed", "100", "--duration", "4min", "--no-camera", "--out")


def test_example_rule_file_records_segments_against_the_simulator(installed_plugin: Path, tmp_path: Path) -> None:
    """The README's walk-through, as written: the installed plugin, the rule file unchanged, `--sim`.

    Run from a folder where `examples/` is the repository's, so the rule file's relative hook paths
    (the archive script, `recordings/archive`) work as they do from a clone's top folder.
    """
    (tmp_path / "examples").symlink_to(REPO / "examples")
    out = tmp_path / "out"
    proc = subprocess.run(
        [sys.executable, "-m", "autorec", "run", "--rules", RULES_FROM_TOP, "--sim", *SIM_4MIN, str(out)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
        env=_env_with(installed_plugin),
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    segments = sorted(out.glob("*.bin"))
    segments = [s for s in segments if not s.name.startswith("telemetry-")]
    assert len(segments) >= 2, proc.stderr[-3000:]
    for seg in segments:
        sidecar = json.loads(seg.with_suffix(".json").read_text())
        assert sidecar["rules"] == ["group0-step"]
        # a segment opens on a drop arriving on or leaving the group: ~32.8 pF, as the rule file's comment says
        # (later firings in a segment compare with a window that held the step: smaller changes)
        assert abs(sidecar["firings"][0]["evidence"]["change"]) == pytest.approx(32.8, abs=3)
        assert (tmp_path / "recordings" / "archive" / (seg.name + ".gz")).is_file()
