"""The documentation matches the code: generated references cover everything, snippets and command lines work.

- Every option of every command is in the generated command-line reference, and every user-facing
  field of the rule model is a declared rule-file key (so the generated key reference lists it).
- Every YAML snippet of a rule file in `docs/` and the README passes `autorec check`'s loader (a
  fragment is checked inside a minimal rule file).
- Every `autorec ...` command line in a code block parses with the real argument parser.
The site itself is built by `.ci/run` with `mkdocs build --strict` (broken links fail it).
"""

from __future__ import annotations

import dataclasses
import importlib.util
import re
import shlex
from pathlib import Path

import pytest

from autorec.cli import build_parser
from autorec.core import rulekeys
from autorec.core.budget import Budget, FlapPolicy
from autorec.core.ruleset import AlertSettings, HookSettings, MqttSettings, OutputSettings, UploadSettings
from autorec.core.segmenter import SegmentPolicy
from autorec.rules import ConfigError, parse_rules

REPO = Path(__file__).resolve().parent.parent
PAGES = [*sorted((REPO / "docs").rglob("*.md")), REPO / "README.md"]


def _reference():
    spec = importlib.util.spec_from_file_location("docs_reference", REPO / "docs" / "hooks" / "reference.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _blocks(path: Path) -> list[tuple[int, str, str]]:
    """(line, language, text) of each fenced code block."""
    out, lang, start, buf = [], None, 0, []
    for number, line in enumerate(path.read_text().split("\n"), 1):
        fence = re.match(r"^\s*```(\S*)", line)
        if fence and lang is None:
            lang, start, buf = fence.group(1) or "text", number, []
        elif fence:
            out.append((start, lang, "\n".join(buf)))
            lang = None
        elif lang is not None:
            buf.append(line)
    return out


def test_the_cli_reference_lists_every_command_and_option() -> None:
    ref = _reference()
    text = ref.cli_reference()
    sections = dict(re.findall(r"## `autorec (\S+)`\n(.*?)(?=\n## |\Z)", text, flags=re.S))
    missing = [
        f"{verb_option}"
        for verb_option in sorted(ref.cli_options())
        if f"`{verb_option.split()[2]}`" not in sections.get(verb_option.split()[1], "")
    ]
    assert sections and not missing, f"not in the reference: {missing}"


USER_FIELDS = {
    OutputSettings: {"min_free_percent"},  # written as `min_free: 5%`
    HookSettings: set(),
    AlertSettings: set(),
    MqttSettings: set(),
    UploadSettings: set(),
    SegmentPolicy: set(),
    Budget: set(),
    FlapPolicy: set(),
}


def test_every_field_of_the_rule_model_is_a_declared_key_with_its_default() -> None:
    declared = {(k.model, k.field) for k in rulekeys.KEYS if k.model is not None}
    missing = [
        f"{model.__name__}.{f.name}"
        for model, internal in USER_FIELDS.items()
        for f in dataclasses.fields(model)
        if f.name not in internal and (model, f.name) not in declared
    ]
    assert not missing, f"declare these in autorec/core/rulekeys.py: {missing}"
    for k in rulekeys.KEYS:
        assert k.default(), k.path  # the model has the field it names (KeyError otherwise)
        assert k.kind in rulekeys.KINDS, k.path


def test_the_rule_key_reference_lists_every_key() -> None:
    text = _reference().rule_keys_reference()
    assert all(f"`{k.path}`" in text for k in rulekeys.KEYS)


def test_the_http_api_reference_lists_every_route() -> None:
    source = (REPO / "autorec" / "web" / "server.py").read_text()
    routes = set(re.findall(r'(?:get|add_post)\("(/api/[^"]*|/files/[^"]*|/exports/[^"]*|/metrics)"', source))
    text = (REPO / "docs" / "reference" / "http-api.md").read_text()
    shown = {re.sub(r"\{name\}|\{i\}", "X", r) for r in routes}
    listed = {re.sub(r"NAME|\bI\b", "X", m) for m in re.findall(r"`(?:GET|POST) (/[^ `?]*)", text)}
    assert routes and not shown - listed, f"not in docs/reference/http-api.md: {sorted(shown - listed)}"


MINIMAL_RULES = "rules:\n  - {name: docs-check, trigger: electrodes}\n"


def _as_rule_file(snippet: str) -> str | None:
    """The snippet as a whole rule file, or None when it is not rule-file YAML."""
    if re.search(r"^(rules|output|segments|hooks|alerts|budget|source):", snippet, flags=re.M) is None:
        if re.match(r"^\s*- (name|\{name):?", snippet):
            return "rules:\n" + "\n".join("  " + line for line in snippet.split("\n"))
        return None
    return snippet if re.search(r"^rules:", snippet, flags=re.M) else snippet + "\n" + MINIMAL_RULES


def _snippets() -> list[tuple[str, str, dict[str, str]]]:
    """(where, rule file, {file name: text}) for each rule-file snippet; the Python modules the page
    shows (a block whose docstring or first comment names `NAME.py`) are files beside it."""
    out = []
    for page in PAGES:
        blocks = _blocks(page)
        modules = {}
        for _line, lang, text in blocks:
            named = re.match(r'^(?:"""|#\s*)(\w+\.py)\b', text) if lang == "python" else None
            if named:
                modules[named.group(1)] = text
        for line, lang, text in blocks:
            if lang in ("yaml", "yml"):
                whole = _as_rule_file(text)
                if whole is not None:
                    out.append((f"{page.relative_to(REPO)}:{line}", whole, modules))
    return out


SNIPPETS = _snippets()


@pytest.mark.parametrize(("where", "text", "modules"), SNIPPETS, ids=[w for w, _, _ in SNIPPETS])
def test_rule_file_snippets_pass_check(where: str, text: str, modules: dict[str, str], tmp_path: Path) -> None:
    for name, source in modules.items():
        (tmp_path / name).write_text(source)
    try:
        parse_rules(text, tmp_path / "rules.yaml")
    except ConfigError as exc:
        pytest.fail(f"{where}: the snippet does not pass autorec check:\n{exc}")


def _command_lines() -> list[tuple[str, list[str]]]:
    out = []
    for page in PAGES:
        for line, lang, text in _blocks(page):
            if lang not in ("sh", "bash", "console", "text", "shell"):
                continue
            joined = re.sub(r"\\\n\s*", " ", text)
            for offset, raw in enumerate(joined.split("\n")):
                raw = raw.strip()
                # In a shell block every line is a command; elsewhere (a transcript) only `$ ` lines are.
                if lang not in ("sh", "bash", "shell") and not raw.startswith("$ "):
                    continue
                command = raw.removeprefix("$ ").split(" #")[0]
                for part in re.split(r"\s*(?:&&|\|\||;|\||&)\s*", command):
                    words = part.split()
                    if not words or not re.fullmatch(r"(\S*/)?autorec", words[0]):
                        continue
                    try:
                        argv = shlex.split(part)
                    except ValueError:
                        argv = words
                    out.append((f"{page.relative_to(REPO)}:{line + offset}", argv[1:]))
    return out


COMMANDS = _command_lines()


def test_docs_have_command_lines_to_check() -> None:
    assert len(COMMANDS) > 30 and len(SNIPPETS) > 5


@pytest.mark.parametrize(("where", "argv"), COMMANDS, ids=[w for w, _ in COMMANDS])
def test_command_lines_parse(where: str, argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    parser = build_parser()
    try:
        parser.parse_args(argv)
    except SystemExit as exc:
        if exc.code not in (0, None):
            pytest.fail(f"{where}: autorec {' '.join(argv)}: {capsys.readouterr().err.strip()}")


def test_the_example_systemd_unit_verifies_and_its_command_parses(tmp_path: Path) -> None:
    """examples/autorec.service (how-to/raspberry-pi.md) passes `systemd-analyze verify` with its
    paths pointed at this machine, and its ExecStart is a command line autorec accepts."""
    import os
    import shutil
    import subprocess
    import sys

    unit = (REPO / "examples" / "autorec.service").read_text()
    [exec_start] = re.findall(r"^ExecStart=(.*)$", unit, flags=re.M)
    argv = shlex.split(exec_start)
    assert argv[0].endswith("/autorec")
    build_parser().parse_args(argv[1:])
    analyze = shutil.which("systemd-analyze")
    if analyze is None and not os.environ.get("CI"):
        pytest.skip("systemd-analyze not installed (Debian's systemd package; .ci/run installs it)")
    assert analyze is not None, "systemd-analyze missing: .ci/run installs Debian's systemd"
    here = unit.replace(argv[0], f"{sys.executable} -m autorec")
    here = re.sub(r"^(User|Group)=.*$", r"\1=root", here, flags=re.M)
    here = re.sub(r"^WorkingDirectory=.*$", f"WorkingDirectory={tmp_path}", here, flags=re.M)
    path = tmp_path / "autorec.service"
    path.write_text(here)
    proc = subprocess.run([analyze, "verify", "--man=no", str(path)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and not proc.stderr.strip(), proc.stderr


def test_the_docs_the_code_names_exist() -> None:
    """A help text, message or example that sends the user to `docs/PAGE.md` names a page that is there (the
    pages moved into tutorials/how-to/reference/explanation, and `run --help` kept the old paths)."""
    named = {
        (str(path.relative_to(REPO)), page)
        for path in sorted(
            [*(REPO / "autorec").rglob("*.py"), *(REPO / "examples").rglob("*"), *(REPO / "rules").iterdir()]
        )
        if path.is_file() and path.suffix in {".py", ".json", ".yaml", ".md", ".service"}  # text, not __pycache__
        for page in re.findall(r"\bdocs/[\w/.-]+\.md\b", path.read_text())
    }
    assert len(named) > 3
    missing = sorted((where, page) for where, page in named if not (REPO / page).is_file())
    assert not missing, missing
