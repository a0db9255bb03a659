"""The test suite holds itself to its own rules: no assertion that cannot fail, no empty test.

An `assert X or True`, an `assert True` (or any constant that is true), and a test whose body is
only a docstring and `pass`/`...` pass whatever the code does: they look like coverage and are
none. `test_the_scan_finds_each_kind` shows the scan itself can fail.
"""

from __future__ import annotations

import ast
from pathlib import Path

TESTS = Path(__file__).resolve().parent


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
