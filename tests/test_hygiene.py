"""The test suite holds itself to its own rules: no assertion that cannot fail, no empty test, one
event builder.

An `assert X or True`, an `assert True` (or any constant that is true), and a test whose body is
only a docstring and `pass`/`...` pass whatever the code does: they look like coverage and are
none. `test_the_scan_finds_each_kind` shows the scan itself can fail.

Events are built by `tests/support/eventbuilder.py` only: a test that spells out a `PurpleDropEvent`
field by field grows its own idea of what pdserver sends (issue 28 found them in 20 files).
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

TESTS = Path(__file__).resolve().parent

# Files outside tests/support that may still build a PurpleDropEvent themselves, and why.
BUILDS_EVENTS_BY_HAND = {
    "tests/test_recovery.py": "WRITER_SCRIPT runs in a child process that imports autorec alone, not tests.support",
}
_BUILDS_EVENT = re.compile(r"\bPurpleDropEvent\s*\(")


def _always_true(node: ast.expr) -> bool:
    if isinstance(node, ast.Constant):
        return bool(node.value)
    if isinstance(node, ast.BoolOp) and isinstance(node.op, ast.Or):
        return any(_always_true(v) for v in node.values)
    return False


def problems(source: str, name: str = "<test>") -> list[str]:
    found = []
    for node in ast.walk(ast.parse(source, name)):
        if isinstance(node, ast.Assert) and _always_true(node.test):
            found.append(f"{name}:{node.lineno}: an assertion that cannot fail")
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name.startswith("test_"):
            body = [
                s
                for s in node.body
                if not (isinstance(s, ast.Expr) and isinstance(s.value, ast.Constant))  # docstring, `...`
                and not isinstance(s, ast.Pass)
            ]
            if not body:
                found.append(f"{name}:{node.lineno}: {node.name} tests nothing")
    return found


def test_no_assertion_that_cannot_fail_and_no_empty_test() -> None:
    found = []
    for path in sorted(TESTS.rglob("*.py")):
        found += problems(path.read_text(), str(path.relative_to(TESTS.parent)))
    assert not found, "\n".join(found)


def test_the_scan_finds_each_kind() -> None:
    src = (
        "def test_a():\n    assert f() or True\n"
        "def test_b():\n    assert True\n"
        "def test_c():\n    '''doc'''\n    pass\n"
        "async def test_d():\n    ...\n"
        "def test_fine():\n    assert f() or g()\n"
    )
    assert sorted(p.split(": ", 1)[1] for p in problems(src)) == [
        "an assertion that cannot fail",
        "an assertion that cannot fail",
        "test_c tests nothing",
        "test_d tests nothing",
    ]


def hand_built_events(source: str, name: str = "<test>") -> list[str]:
    """The lines where `source` constructs a PurpleDropEvent: in code, or in a script held in a string."""
    return [
        f"{name}:{n}: builds a PurpleDropEvent by hand (use tests/support/eventbuilder.py)"
        for n, line in enumerate(source.splitlines(), 1)
        if _BUILDS_EVENT.search(line)
    ]


def test_events_are_built_by_the_event_builder() -> None:
    found, allowed_and_found = [], set()
    for path in sorted(TESTS.rglob("*.py")):
        name = str(path.relative_to(TESTS.parent))
        if path.is_relative_to(TESTS / "support"):
            continue
        hits = hand_built_events(path.read_text(), name)
        if name in BUILDS_EVENTS_BY_HAND:
            allowed_and_found.update([name] if hits else [])
        else:
            found += hits
    assert not found, "\n".join(found)
    stale = set(BUILDS_EVENTS_BY_HAND) - allowed_and_found
    assert not stale, f"allowed to build events by hand but no longer does: {sorted(stale)}"


def test_the_event_scan_finds_hand_built_events() -> None:
    event = "PurpleDrop" + "Event"  # spelled apart so that this file does not match its own scan
    src = f"ev = {event}()\nscript = 'e = {event}()'\nok = {event}.FromString(b'')\nx = My{event}()\n"
    assert [p.split(":")[1] for p in hand_built_events(src)] == ["1", "2"]
