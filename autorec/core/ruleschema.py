"""A JSON Schema (draft 2020-12) of a rule file, generated from the declarations the loader checks with.

`json_schema(triggers)` is what `autorec check --schema` prints: every key of `autorec.core.rulekeys`
with its kind, limits, choices and help, and `rules` as an array whose items are told apart by
`trigger`: each trigger given (name -> class) adds its declared options (`Option`: type, limits,
choices, required) and allows no other key; a trigger not given (a plugin that is not installed
here, `module:Class`) may take any further key. An editor (the YAML language server) then checks a
rule file as it is written.

The schema can say less than the loader: a duration or size written as text (`10s`) is matched by
its syntax only (its limits apply to bare numbers), and what needs more than one file's text (a
hook's placeholders, a trigger's field paths, the segment name template rendered with the rules'
names) is left to `autorec check`. What it does say agrees with the loader:
`tests/test_rulekeys.py` feeds the same values just inside and outside every declared limit to both.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from autorec.core import rulekeys
from autorec.triggers.base import Option, Trigger
from autorec.units import DURATION_UNITS, SIZE_UNITS

DRAFT = "https://json-schema.org/draft/2020-12/schema"
_NUMBER = r"[0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?"


def _units(units: Mapping[str, Any]) -> str:
    return "|".join(re.escape(u) for u in sorted(units, key=len, reverse=True))


DURATION_TEXT = rf"^\s*{_NUMBER}\s*(?:{_units(DURATION_UNITS)})?\s*$"
_SIZE = rf"{_NUMBER}\s*(?:{_units(SIZE_UNITS)})?"
SIZE_TEXT = rf"^\s*{_SIZE}\s*$"
RATE_TEXT = rf"^\s*{_NUMBER}\s*(?:{_units(SIZE_UNITS)})?\s*(?:/s)?\s*$"
PERCENT_TEXT = rf"^\s*{_NUMBER}\s*%?\s*$"
OFF_TEXT = r"^\s*[Oo][Ff][Ff]\s*$"


def _bounds(lowest: float | None = None, **limits: float | None) -> dict[str, float]:
    out: dict[str, float] = {}
    names = {"min": "minimum", "max": "maximum", "above": "exclusiveMinimum", "below": "exclusiveMaximum"}
    for name, value in limits.items():
        if value is not None:
            out[names.get(name, "multipleOf")] = value
    if lowest is not None and "minimum" not in out and "exclusiveMinimum" not in out:
        out["minimum"] = lowest
    return out


def _any_of(*schemas: dict[str, Any]) -> dict[str, Any]:
    return schemas[0] if len(schemas) == 1 else {"anyOf": list(schemas)}


def _with_text(number: dict[str, Any], pattern: str) -> list[dict[str, Any]]:
    return [number, {"type": "string", "pattern": pattern}]


ARGV = {"type": "array", "items": {"type": "string"}, "minItems": 1}


def key_schema(k: rulekeys.Key) -> dict[str, Any]:
    """The schema of one key's value (its kind, limits, choices, null/off) with its help as description."""
    limits = {"min": k.min, "max": k.max, "above": k.above, "below": k.below, "step": k.step}
    kind = k.kind
    if k.format == "disk-floor":
        forms = _with_text({"type": "number", "minimum": 0}, rf"^\s*(?:{_NUMBER}\s*%|{_SIZE})\s*$")
    elif kind == "duration":
        top = min(x for x in (k.max, rulekeys.MAX_DURATION) if x is not None)
        forms = _with_text({"type": "number", **_bounds(0, **{**limits, "max": top})}, DURATION_TEXT)
    elif kind == "size":
        forms = _with_text({"type": "number", **_bounds(0, **limits)}, SIZE_TEXT)
    elif kind == "rate":
        forms = _with_text({"type": "number", **_bounds(0, **limits)}, RATE_TEXT)
    elif kind == "bool":
        forms = [{"type": "boolean"}]
    elif kind == "int":
        forms = [{"type": "integer", **_bounds(**limits)}]
    elif kind == "number":
        forms = [{"type": "number", **_bounds(**limits)}]
        if k.percent:
            forms.append({"type": "string", "pattern": PERCENT_TEXT})
    elif kind == "argv":
        forms = [ARGV, {"type": "array", "items": ARGV, "minItems": 1}]
    elif k.choices is not None:
        forms = [{"enum": [*k.choices, *([False] if "off" in k.choices else [])]}]
    elif kind == "text":
        forms = [{"type": "string", "minLength": 1, **({"pattern": k.pattern} if k.pattern else {})}]
    else:
        forms = [{}]
    if k.nullable or k.off:
        forms.append({"type": "null"})
    if k.off:
        forms += [{"type": "boolean"}, {"type": "string", "pattern": OFF_TEXT}]
    described = f"{k.help} (default: {k.default()})"
    return {**_any_of(*forms), "description": described}


_OPTION_TYPES = {"float": "number", "int": "integer", "bool": "boolean", "str": "string", "path": "string"}


def option_schema(o: Option) -> dict[str, Any]:
    """The schema of one trigger option (`autorec.triggers.base.Option.coerce` is the loader's check)."""
    limits = {"min": o.min, "max": o.max}
    t = o.type
    if t in _OPTION_TYPES:
        schema: dict[str, Any] = {"type": _OPTION_TYPES[t]}
        if t in ("float", "int"):
            schema.update(_bounds(**limits))
    elif t == "duration":
        schema = _any_of(*_with_text({"type": "number", **_bounds(0, **limits)}, DURATION_TEXT))
    elif t == "size":
        schema = _any_of(*_with_text({"type": "number", "minimum": 0}, SIZE_TEXT))
    elif t.startswith("list["):
        schema = {"type": "array", "items": option_schema(Option(o.name, t[5:-1]))}
    elif t == "dict":
        schema = {"type": "object"}
    else:
        schema = {}
    if o.choices is not None:
        schema = {"enum": list(o.choices)}
    return {**schema, "description": o.help} if o.help else schema


def _section(section: str) -> dict[str, Any]:
    """A section's mapping (`null` or absent: all defaults)."""
    props = {k.name: key_schema(k) for k in rulekeys.KEYS if k.section == section}
    return {"type": ["object", "null"], "properties": props, "additionalProperties": False}


def _rule_properties() -> dict[str, dict[str, Any]]:
    return {k.name: key_schema(k) for k in rulekeys.KEYS if k.section == "rule" or k.section in rulekeys.RULE_ALSO}


# Across keys, as the loader checks them in code (`autorec.rules`): flap_for and flap_keep_fps need
# flap_rate or max_open; keep_until_uploaded needs an upload section.
_FLAP_NEEDS = {
    "if": {"anyOf": [{"required": ["flap_for"]}, {"required": ["flap_keep_fps"]}]},
    "then": {"anyOf": [{"required": ["flap_rate"]}, {"required": ["max_open"]}]},
}
_UPLOAD_NEEDED = {
    "if": {
        "properties": {
            "output": {"properties": {"keep_until_uploaded": {"const": True}}, "required": ["keep_until_uploaded"]}
        },
        "required": ["output"],
    },
    "then": {"required": ["upload"]},
}


def rule_schema(triggers: Mapping[str, type[Trigger]]) -> dict[str, Any]:
    """One item of `rules`: the rule keys, and for each trigger given its options and no other key."""
    props = _rule_properties()
    cases = []
    for name, cls in sorted(triggers.items()):
        options = {o.name: option_schema(o) for o in cls.options}
        required = [o.name for o in cls.options if o.required]
        # The rule keys are checked once, by the item's own `properties`; here they are only let through.
        then: dict[str, Any] = {"properties": {**dict.fromkeys(props, True), **options}, "additionalProperties": False}
        if required:
            then["required"] = required
        cases.append({"if": {"properties": {"trigger": {"const": name}}, "required": ["trigger"]}, "then": then})
    return {
        "type": "object",
        "required": [k.name for k in rulekeys.KEYS if k.section == "rule" and k.required],
        "properties": props,
        "allOf": [_FLAP_NEEDS, *cases],
    }


def json_schema(triggers: Mapping[str, type[Trigger]]) -> dict[str, Any]:
    """The whole rule file's schema; `triggers` (name -> class) are the ones whose options it knows."""
    props: dict[str, Any] = {}
    for k in rulekeys.KEYS:
        if k.section != "":
            continue
        if k.kind == "mapping":
            section = _section(k.name)
            required = [r.name for r in rulekeys.KEYS if r.section == k.name and r.required]
            if required:  # the loader: a section that is given needs these (mqtt and upload: a url)
                section = {**section, "if": {"minProperties": 1}, "then": {"required": required}}
            props[k.name] = {**section, "description": k.help}
        elif k.name == "rules":
            props[k.name] = {"type": "array", "minItems": 1, "items": rule_schema(triggers), "description": k.help}
        else:
            props[k.name] = key_schema(k)
    return {
        "$schema": DRAFT,
        "title": "autorec rule file",
        "description": "Generated by `autorec check --schema` from autorec.core.rulekeys and the triggers' options.",
        "type": "object",
        "required": [k.name for k in rulekeys.KEYS if k.section == "" and k.required],
        "properties": props,
        "additionalProperties": False,
        "allOf": [_UPLOAD_NEEDED],
    }
