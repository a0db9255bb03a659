"""Field paths into events, as rule files write them: `temperature_control.temperatures[0]`.

A path starts with the event kind (a `PurpleDropEvent` oneof name), then names
fields of that message, descending into sub-messages; a repeated field must be
indexed with `[N]`. `parse_path` checks the path against the protobuf schema
(so typos are config errors before anything starts, with a close-match
suggestion); `FieldPath.get(event)` reads the value, returning None when the
event is of another kind or a repeated field is shorter than the index.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from typing import Any

from google.protobuf.descriptor import Descriptor, FieldDescriptor

from autorec.events import KINDS
from autorec.proto import PurpleDropEvent

_STEP = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)(?:\[(\d+)\])?$")

_NUMERIC = {
    FieldDescriptor.CPPTYPE_INT32,
    FieldDescriptor.CPPTYPE_INT64,
    FieldDescriptor.CPPTYPE_UINT32,
    FieldDescriptor.CPPTYPE_UINT64,
    FieldDescriptor.CPPTYPE_FLOAT,
    FieldDescriptor.CPPTYPE_DOUBLE,
    FieldDescriptor.CPPTYPE_BOOL,
    FieldDescriptor.CPPTYPE_ENUM,
}


def suggest(word: str, choices: list[str] | tuple[str, ...]) -> str:
    """`; did you mean X?` for the closest choice, or an empty string."""
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


@dataclass(frozen=True)
class FieldPath:
    """A validated path: the event kind, the steps below it, and the leaf type."""

    text: str
    kind: str
    steps: tuple[tuple[str, int | None], ...]
    leaf: FieldDescriptor

    @property
    def numeric(self) -> bool:
        return self.leaf.cpp_type in _NUMERIC

    def get(self, event: PurpleDropEvent) -> Any:
        """The value at this path in `event`, or None (other kind, index out of range)."""
        if event.WhichOneof("msg") != self.kind:
            return None
        obj: Any = getattr(event, self.kind)
        for name, index in self.steps:
            obj = getattr(obj, name)
            if index is not None:
                if index >= len(obj):
                    return None
                obj = obj[index]
        return obj


def parse_path(text: str, kind: str | None = None) -> FieldPath:
    """Validate `text` against the schema. With `kind`, the path may omit the kind prefix.

    Raises ValueError saying what is wrong and what is allowed.
    """
    if not isinstance(text, str) or not text:
        raise ValueError(f"expected a field path like temperature_control.temperatures[0], got {text!r}")
    parts = text.split(".")
    if kind is not None and parts[0] != kind:
        parts = [kind, *parts]
    head = parts[0]
    if head not in KINDS:
        raise ValueError(f"unknown event kind {head!r} in {text!r}{suggest(head, KINDS)} (kinds: {', '.join(KINDS)})")
    desc: Descriptor | None = PurpleDropEvent.DESCRIPTOR.fields_by_name[head].message_type
    steps: list[tuple[str, int | None]] = []
    leaf: FieldDescriptor | None = None
    if len(parts) == 1:
        raise ValueError(f"{text!r} names a whole message; add a field (fields: {_field_list(desc)})")
    for part in parts[1:]:
        m = _STEP.match(part)
        if not m:
            raise ValueError(f"bad path step {part!r} in {text!r} (write name or name[N])")
        if desc is None:
            raise ValueError(f"{text!r}: {leaf.name if leaf else head} has no sub-fields")
        name, index = m.group(1), m.group(2)
        field = desc.fields_by_name.get(name)
        if field is None:
            names = list(desc.fields_by_name)
            raise ValueError(
                f"{desc.name} has no field {name!r} in {text!r}{suggest(name, names)} (fields: {', '.join(names)})"
            )
        if field.is_repeated and index is None:
            raise ValueError(f"{name} in {text!r} is a list: index it, e.g. {name}[0]")
        if not field.is_repeated and index is not None:
            raise ValueError(f"{name} in {text!r} is not a list: drop the [{index}]")
        steps.append((name, None if index is None else int(index)))
        leaf = field
        desc = field.message_type
    assert leaf is not None
    if leaf.cpp_type == FieldDescriptor.CPPTYPE_MESSAGE:
        raise ValueError(f"{text!r} names a message; add a field (fields: {_field_list(leaf.message_type)})")
    return FieldPath(text, head, tuple(steps), leaf)


def _field_list(desc: Descriptor | None) -> str:
    return ", ".join(desc.fields_by_name) if desc is not None else ""


def check_value(path: FieldPath, value: Any) -> Any:
    """`value` converted for comparison with the field at `path`; ValueError if it cannot match."""
    cpp = path.leaf.cpp_type
    if cpp == FieldDescriptor.CPPTYPE_BOOL:
        if not isinstance(value, bool):
            raise ValueError(f"{path.text} is true/false, got {value!r}")
        return value
    if cpp in _NUMERIC:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"{path.text} is a number, got {value!r}")
        return value
    if cpp == FieldDescriptor.CPPTYPE_STRING:
        if not isinstance(value, str):
            raise ValueError(f"{path.text} is a string, got {value!r}")
        return value
    raise ValueError(f"{path.text} is bytes and cannot be compared")
