"""One schema: the loader, `check --explain`, `check --schema` and the docs all come from `autorec.core.rulekeys`.

The cases are generated from the declarations, so a new key (or a new limit) is covered without
touching this file: for every declared limit a value just outside it must be an error of the
loader naming that key (and be refused by the JSON Schema), and a value just inside must load to
that value (and pass the schema). A limit the loader applied without declaring it would fail an
inside value; a declared limit the loader forgot would pass an outside one.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from autorec.cli import main
from autorec.commands.check import explain
from autorec.core import rulekeys
from autorec.core.ruleschema import json_schema
from autorec.rules import FORMATS, ConfigError, RuleSet, parse_rules
from autorec.triggers import registry

REPO = Path(__file__).resolve().parent.parent
RULE = {"name": "r", "trigger": "electrodes"}


@dataclass(frozen=True)
class Case:
    key: rulekeys.Key
    where: str  # "top", "section", or "rule" (a segments/budget/flap/rule key set on a rule)
    value: Any  # as written (a bare number is in the key's unit)
    inside: bool
    why: str

    @property
    def id(self) -> str:
        return f"{self.key.path}@{self.where}={self.value!r}:{self.why}"


def _step(k: rulekeys.Key) -> float:
    if k.step is not None:
        return k.step
    return 1 if k.kind in ("int", "size", "rate") else 0.001


def _cases() -> list[Case]:
    out = []
    for k in rulekeys.KEYS:
        if k.kind in ("mapping", "list", "argv") or k.format is not None:
            continue
        pairs: list[tuple[Any, Any, str]] = []  # (outside, inside, why)
        d = _step(k)
        if k.above is not None:
            pairs.append((k.above, k.above + d, "above"))
        if k.min is not None:
            pairs.append((k.min - d, k.min, "min"))
        if k.below is not None:
            pairs.append((k.below, round(k.below - d, 6), "below"))
        if k.max is not None:
            pairs.append((k.max + d, k.max, "max"))
        if k.step is not None:
            pairs.append((k.min + k.step / 2, k.min + k.step, "step"))
        if k.kind == "duration":
            if k.max is None:
                pairs.append((rulekeys.MAX_DURATION + 1, rulekeys.MAX_DURATION, "every duration's max"))
            if k.min is None and k.above is None:
                pairs.append((-1, 0, "the kind's min"))
        if k.kind in ("size", "rate") and k.above is None and k.min is None:
            pairs.append((-1, 0, "the kind's min"))
        if k.choices is not None:
            pairs += [("no-such-choice", choice, "choices") for choice in k.choices]
        if k.pattern is not None:
            pairs.append(("a/b", "ab", "pattern"))
        if k.nullable or k.off:
            pairs.append(([], None, "null"))
        places = ["rule"] if k.section in ("rule", "flap") else ["top" if not k.section else "section"]
        if k.section in ("segments", "budget"):
            places.append("rule")
        for where in places:
            for outside, inside, why in pairs:
                out.append(Case(k, where, outside, False, why))
                out.append(Case(k, where, inside, True, why))
    return out


CASES = _cases()


def _document(case: Case) -> dict[str, Any]:
    """A whole rule file (as plain data) holding the case's value, with what the key needs beside it."""
    k = case.key
    doc: dict[str, Any] = {"rules": [dict(RULE)]}
    if case.where == "top":
        doc[k.name] = case.value
    elif case.where == "section":
        section = {k.name: case.value}
        if k.section in ("mqtt", "upload") and k.name != "url":
            section["url"] = {"mqtt": "mqtt://broker:1883", "upload": "s3://bucket/rig"}[k.section]
        doc[k.section] = section
    else:
        doc["rules"][0][k.name] = case.value
        if k.name in ("flap_for", "flap_keep_fps"):
            doc["rules"][0]["flap_rate"] = 5  # across keys: when is it flapping?
    return doc


def _loaded(rs: RuleSet, case: Case) -> Any:
    k = case.key
    holder: Any
    if case.where == "rule":
        rule = rs.rules[0]
        holder = {"segments": rule.segments, "budget": rule.budget, "flap": rule.flap}.get(k.section, rule)
    else:
        holder = {
            "": rs,
            "output": rs.output,
            "segments": rs.segments,
            "hooks": rs.hooks,
            "alerts": rs.alerts,
            "mqtt": rs.mqtt,
            "upload": rs.upload,
            "budget": rs.budget,
        }[k.section]
    return getattr(holder, k.field or k.name)


def _expected(case: Case) -> Any:
    value = case.value
    if value is None:
        return case.key.off_value
    if case.key.kind in ("size", "rate", "int"):
        return int(value)
    return value


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_the_loader_applies_exactly_the_declared_limits(case: Case) -> None:
    text = yaml.safe_dump(_document(case), sort_keys=False)
    if case.inside:
        rs = parse_rules(text, "r.yaml")
        assert _loaded(rs, case) == _expected(case), text
        return
    with pytest.raises(ConfigError) as info:
        parse_rules(text, "r.yaml")
    k = case.key
    rule = "rules[0]" if k.path == "rule.name" else "rules[r]"  # a rule is called by its name once it has one
    named = {"top": k.name, "section": k.path, "rule": f"{rule}.{k.name}"}[case.where]
    assert [e.key for e in info.value.errors] == [named], str(info.value)
    assert "\n" not in str(info.value)


def test_the_cases_cover_every_declared_limit() -> None:
    """Nothing declared escapes the generator above (it skips only what a format checks)."""
    covered = {(c.key.path, c.why) for c in CASES}
    for k in rulekeys.KEYS:
        for limit in ("above", "min", "below", "max", "step"):
            if getattr(k, limit) is not None:
                assert (k.path, limit) in covered, (k.path, limit)
        if k.choices:
            assert (k.path, "choices") in covered
    assert len(CASES) > 100


def test_every_declared_format_has_a_checker_in_the_loader() -> None:
    declared = {k.format for k in rulekeys.KEYS if k.format is not None}
    assert declared == set(FORMATS) == set(rulekeys.FORMATS)


# ---------------------------------------------------------------------------------------------
# The JSON Schema


@pytest.fixture(scope="module")
def validator() -> jsonschema.Draft202012Validator:
    triggers = {i.name: i.cls for i in registry.available() if i.cls is not None}
    schema = json_schema(triggers)
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


@pytest.mark.parametrize("path", sorted((REPO / "rules").glob("*.yaml")), ids=lambda p: p.name)
def test_the_shipped_rule_files_validate_against_the_schema(path: Path, validator) -> None:
    errors = [f"{list(e.path)}: {e.message}" for e in validator.iter_errors(yaml.safe_load(path.read_text()))]
    assert not errors


SCHEMA_CASES = [c for c in CASES if not isinstance(c.value, str) or c.inside]


@pytest.mark.parametrize("case", SCHEMA_CASES, ids=[c.id for c in SCHEMA_CASES])
def test_the_schema_has_the_same_limits_as_the_loader(case: Case, validator) -> None:
    errors = list(validator.iter_errors(_document(case)))
    assert (not errors) == case.inside, [e.message for e in errors]


@pytest.mark.parametrize(
    ("text", "where"),
    [
        ("max_errors: 0\nrules: [{name: a, trigger: electrodes}]", ["max_errors"]),
        ("segments: {pre_roll: true}\nrules: [{name: a, trigger: electrodes}]", ["segments", "pre_roll"]),
        ("output: {video: on}\nrules: [{name: a, trigger: electrodes}]", ["output", "video"]),
        ("output: {dri: x}\nrules: [{name: a, trigger: electrodes}]", ["output"]),
        ("rules: [{name: a, trigger: movement, min_pins: 0}]", ["rules", 0, "min_pins"]),
        ("rules: [{name: a, trigger: movement, min_pinz: 2}]", ["rules", 0]),
        ("rules: [{name: a, trigger: threshold, above: 3}]", ["rules", 0]),  # field is required
        ("rules: [{name: a, trigger: movement, flap_for: 5min}]", ["rules", 0]),  # needs flap_rate or max_open
        ("rules: [{name: a/b, trigger: electrodes}]", ["rules", 0, "name"]),
        ("rules: []", ["rules"]),
        ("output: {keep_until_uploaded: true}\nrules: [{name: a, trigger: electrodes}]", []),
        ("mqtt: {topic: lab}\nrules: [{name: a, trigger: electrodes}]", ["mqtt"]),
    ],
)
def test_a_wrong_file_fails_the_schema_and_the_loader(text: str, where: list[Any], validator) -> None:
    errors = list(validator.iter_errors(yaml.safe_load(text)))
    assert [list(e.path) for e in errors] == [where], [e.message for e in errors]
    with pytest.raises(ConfigError):
        parse_rules(text, "r.yaml")


def test_check_schema_prints_the_schema(capsys, validator) -> None:
    assert main(["check", "--schema"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed == validator.schema
    assert printed["$schema"] == "https://json-schema.org/draft/2020-12/schema"


# ---------------------------------------------------------------------------------------------
# check --explain and the docs' table


def test_explain_lists_every_key_and_trigger_option_with_its_limits() -> None:
    text = "\n".join(explain(""))
    for k in rulekeys.KEYS:
        [line] = [line for line in text.splitlines() if line.startswith(f"{k.path}  ")]
        assert f"default {k.default()}" in line and k.kind in line
        assert all(limit in line for limit in k.limits()), line
    for info in registry.available():
        if info.cls is not None:
            assert all(f"\n{info.name}.{o.name}  {o.type}" in text for o in info.cls.options)


def test_explain_one_key(capsys) -> None:
    assert main(["check", "--explain", "output.keep"]) == 0
    assert capsys.readouterr().out.startswith("output.keep  duration (s)  default none  [more than 0; `null`: none]\n")
    assert main(["check", "--explain", "rule.pre_roll"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("rule.pre_roll  duration (s)  default 10s") and "segments.pre_roll" in out
    assert main(["check", "--explain", "movement.min_pins"]) == 0
    assert capsys.readouterr().out.startswith("movement.min_pins  int  default 1  [>= 1]")
    assert main(["check", "--explain", "output.kep"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (
        "autorec check --explain: unknown key 'output.kep'; did you mean 'output.keep'? "
        "(`autorec check --explain` lists them all)"
    )
    assert main(["check"]) == 2
    assert "give a rule file" in capsys.readouterr().err


def test_explain_a_section_a_trigger_or_a_key_without_its_section(capsys) -> None:
    """What a person types first: the word in the file (`keep`), a section, a trigger's name."""
    assert main(["check", "--explain", "keep"]) == 0
    assert capsys.readouterr().out.startswith("output.keep  duration (s)")
    assert main(["check", "--explain", "post_roll"]) == 0
    shown = [line.split()[0] for line in capsys.readouterr().out.splitlines() if not line.startswith(" ")]
    assert shown == ["segments.post_roll", "rule.post_roll"]
    assert main(["check", "--explain", "movement"]) == 0
    shown = [line.split()[0] for line in capsys.readouterr().out.splitlines() if not line.startswith(" ")]
    assert shown == ["movement.min_pins", "movement.settle", "movement.pins"]
    assert main(["check", "--explain", "output"]) == 0
    shown = [line.split()[0] for line in capsys.readouterr().out.splitlines() if not line.startswith(" ")]
    assert shown == ["output", *(k.path for k in rulekeys.KEYS if k.section == "output")]
    assert main(["check", "--explain", "kep"]) == 2
    assert "unknown key 'kep'; did you mean 'keep'?" in capsys.readouterr().err


def test_the_docs_table_shows_each_keys_limits() -> None:
    import importlib.util

    spec = importlib.util.spec_from_file_location("docs_reference", REPO / "docs" / "hooks" / "reference.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    rows = {line.split(" | ")[0].strip("| `"): line for line in module.rule_keys_reference().splitlines()}
    for k in rulekeys.KEYS:
        assert all(limit.replace("|", "\\|") in rows[k.path] for limit in k.limits()), k.path


def _option_cases() -> list[tuple[str, Any, Any, bool]]:
    """(id, option, value, inside) just inside and outside each built-in trigger option's limits."""
    out = []
    for info in registry.available():
        for o in info.cls.options if info.cls is not None else ():
            pairs = []
            d = 1 if o.type == "int" else 0.001
            if o.min is not None:
                pairs.append((o.min - d, o.min))
            if o.max is not None:
                pairs.append((o.max + d, o.max))
            if o.choices is not None:
                pairs += [("no-such-choice", c) for c in o.choices]
            for outside, inside in pairs:
                out += [(f"{info.name}.{o.name}={v!r}", o, v, v == inside) for v in (outside, inside)]
    return out


OPTION_CASES = _option_cases()


@pytest.mark.parametrize(("name", "option", "value", "inside"), OPTION_CASES, ids=[c[0] for c in OPTION_CASES])
def test_the_schema_of_a_trigger_option_agrees_with_its_declaration(name, option, value, inside) -> None:
    """`Option.coerce` is what the loader checks a trigger option with; the schema says the same."""
    from autorec.core.ruleschema import option_schema

    schema_ok = jsonschema.Draft202012Validator(option_schema(option)).is_valid(value)
    try:
        option.coerce(value)
        loader_ok = True
    except ValueError:
        loader_ok = False
    assert schema_ok == loader_ok == inside


def _without(k: rulekeys.Key) -> tuple[dict[str, Any], str]:
    """A rule file lacking the required key `k` (its section otherwise given), and the key the error names."""
    if k.section == "":
        return {"source": "ws://rig:7001"}, k.name
    if k.section == "rule":
        rule = {n: v for n, v in RULE.items() if n != k.name}
        return {"rules": [rule]}, f"rules[{rule.get('name', 0)}].{k.name}"
    other = next(o for o in rulekeys.KEYS if o.section == k.section and not o.required and o.default_value())
    return {k.section: {other.name: other.default()}, "rules": [dict(RULE)]}, k.path


REQUIRED = [k for k in rulekeys.KEYS if k.required]


@pytest.mark.parametrize("key", REQUIRED, ids=[k.path for k in REQUIRED])
def test_a_required_key_is_required_by_the_loader_and_the_schema(key: rulekeys.Key, validator) -> None:
    doc, named = _without(key)
    with pytest.raises(ConfigError) as info:
        parse_rules(yaml.safe_dump(doc), "r.yaml")
    assert [e.key for e in info.value.errors] == [named], str(info.value)
    assert "missing" in info.value.message
    assert not validator.is_valid(doc)
    assert len(REQUIRED) == 5  # rules, mqtt.url, upload.url, rule.name, rule.trigger


def test_run_heartbeat_is_read_like_the_rule_files_key(capsys) -> None:
    """`run --heartbeat` takes what `heartbeat:` takes (at most 3650d), and fails before anything starts."""
    rules = str(REPO / "rules" / "electrodes.yaml")
    assert main(["run", "--rules", rules, "--sim", "--no-camera", "--heartbeat", "4000d"]) == 2
    assert capsys.readouterr().err.strip() == (
        "autorec run: --heartbeat: '4000d' is too long (at most 3650d, 10 years: longer cannot be waited for)"
    )


def test_the_explain_transcripts_in_the_docs_are_what_it_prints(capsys) -> None:
    """docs/reference/rule-files.md shows `check --explain KEY` with its output: it is the real output."""
    text = (REPO / "docs" / "reference" / "rule-files.md").read_text()
    shown = re.findall(r"^\$ autorec check --explain (\S+)\n((?:(?!\$ |```).*\n)+)", text, flags=re.M)
    assert len(shown) >= 3
    for key, output in shown:
        main(["check", "--explain", key])
        captured = capsys.readouterr()
        assert captured.out + captured.err == output, key


def test_the_rule_file_snippets_of_the_docs_validate_against_the_schema(validator) -> None:
    """Every snippet that `autorec check` accepts (tests/test_docs.py) passes the schema too: it is not stricter."""
    from tests.test_docs import SNIPPETS

    assert len(SNIPPETS) > 5
    for where, text, _modules in SNIPPETS:
        errors = [f"{list(e.path)}: {e.message}" for e in validator.iter_errors(yaml.safe_load(text))]
        assert not errors, where
