"""autorec.outdir owns the output directory's names and records: writer and recovery agree, readers validate."""

from __future__ import annotations

import ast
import json
import math
from pathlib import Path

import pytest

from autorec import outdir
from autorec.io.recovery import recover_directory
from autorec.outdir import IndexLine, check_sidecar
from tests.support.eventbuilder import payload

PACKAGE = Path(__file__).resolve().parent.parent / "autorec"
NAMES = {
    outdir.INDEX_NAME,
    outdir.JOURNAL_NAME,
    outdir.STATUS_NAME,
    outdir.NEAR_MISSES_NAME,
    outdir.LOCK_NAME,
    outdir.OPEN_LOG_SUFFIX,
    outdir.TELEMETRY_PREFIX,
    outdir.TIMELAPSE_PREFIX,
    outdir.SCORES_PREFIX,
    outdir.SCORES_SUFFIX,
    outdir.REVIEWED_NAME,
    outdir.EXPORTS_DIR,
    outdir.UPLOAD_STATE_NAME,
}


def _code_strings(tree: ast.AST) -> list[tuple[int, str]]:
    """String constants in code, not docstrings."""
    docstrings = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                docstrings.add(id(first.value))
    return [
        (node.lineno, node.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings
    ]


def test_no_module_but_outdir_spells_out_a_file_name_of_the_output_directory() -> None:
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path.name == "outdir.py" or "proto" in path.parts:
            continue
        for line, text in _code_strings(ast.parse(path.read_text())):
            if text in NAMES:
                found.append(f"{path.relative_to(PACKAGE.parent)}:{line}: {text!r}")
    assert not found, "use the names of autorec.outdir:\n" + "\n".join(found)


def _sidecar(**over) -> dict:
    base = {
        "version": 1,
        "name": "seg",
        "path": "seg.bin",
        "start": 100.0,
        "end": 105.5,
        "rules": ["r"],
        "firings": [{"rule": "r", "time": 100.5, "evidence": {"near_miss": True}}],
        "records": 3,
        "bytes": 30,
        "close_reason": "post_roll",
        "part": 1,
        "recovered": False,
        "gaps": [{"start": 101.0}],
        "dropped": {"records": 2, "bytes": 9},
        "near_miss": True,
    }
    base.update(over)
    return base


def test_index_line_round_trip_is_exact() -> None:
    line = IndexLine.from_sidecar(_sidecar(), "seg.bin", "seg.json")
    data = json.loads(json.dumps(line.to_json()))
    assert data["start_iso"].startswith("1970-01-01T00:01:40")
    assert data["duration_s"] == 5.5
    assert (data["gaps"], data["dropped"], data["near_miss"]) == (1, 2, True)
    assert IndexLine.from_json(data) == line


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("start", None),
        ("start", "yesterday"),
        ("end", float("nan")),
        ("end", float("inf")),
        ("path", "../etc/passwd"),
        ("path", ["seg.bin"]),
        ("name", 7),
    ],
)
def test_index_line_without_its_required_fields_is_a_problem_not_an_exception(field, value) -> None:
    data = IndexLine.from_sidecar(_sidecar(), "seg.bin", "seg.json").to_json()
    data[field] = value
    assert isinstance(IndexLine.from_json(data), str)


def test_ill_typed_optional_index_fields_take_their_defaults() -> None:
    data = IndexLine.from_sidecar(_sidecar(), "seg.bin", "seg.json").to_json()
    data.update(rules=[["nested"], "ok", None], records=-5, bytes="many", close_reason={}, part=True, sidecar="../x")
    line = IndexLine.from_json(data)
    assert isinstance(line, IndexLine)
    assert (line.rules, line.records, line.bytes, line.close_reason, line.part) == (("ok",), 0, 0, "?", 1)
    assert line.sidecar == "seg.json"


def test_check_sidecar_drops_ill_typed_fields_and_names_each_once() -> None:
    bad = _sidecar(
        start=float("nan"),
        rules=["ok", ["list"]],
        firings=[{"rule": ["x"], "time": 1.0}, {"rule": "r", "time": None}, {"rule": "r", "time": 2.0}],
        gaps="none",
        counts=[],
    )
    sidecar, problems = check_sidecar(bad)
    assert sidecar is not None
    assert "start" not in sidecar and "gaps" not in sidecar and "counts" not in sidecar
    assert sidecar["rules"] == ["ok"]
    assert sidecar["firings"] == [{"rule": "r", "time": 2.0}]
    assert len(problems) == 5, problems
    assert all(isinstance(v, (int, float)) and math.isfinite(v) for v in (sidecar["end"],))


def test_check_sidecar_of_a_newer_layout_or_not_an_object() -> None:
    assert check_sidecar(_sidecar(version=99))[0] is None
    assert check_sidecar([1, 2])[0] is None


def test_recovery_writes_the_index_line_the_writer_would(tmp_path: Path) -> None:
    """Segments finalized by the writer, then the index removed: recovery writes the same lines (it
    wrote its own before, without `near_miss`)."""
    from autorec.core.segmenter import Segmenter, SegmentPolicy
    from autorec.io.writer import SegmentWriter
    from autorec.triggers.base import Firing

    writer = SegmentWriter(tmp_path, fsync=False)
    seg = Segmenter(default=SegmentPolicy(pre_roll=1.0, post_roll=1.0, max_length=100.0))
    t0 = 1_700_000_000.0
    for i in range(80):
        t = t0 + i * 0.25
        firings = [Firing("r", t, {"near_miss": True} if i < 40 else {"pins": [1]})] if i in (8, 60) else []
        writer.submit(seg.feed(t, payload("hv_regulator", t, i), "hv_regulator", firings))
    writer.submit(seg.close())
    assert writer.close(10)
    index = tmp_path / outdir.INDEX_NAME
    written = [json.loads(line) for line in index.read_text().splitlines()]
    assert len(written) == 2 and written[0].get("near_miss") is True and "near_miss" not in written[1]
    index.unlink()
    recovered = recover_directory(tmp_path, fsync=False)
    assert [r.error for r in recovered] == [None, None]
    again = sorted((json.loads(line) for line in index.read_text().splitlines()), key=lambda e: e["start"])
    for before, after in zip(written, again):
        assert after.pop("close_reason") == "recovered" and after.pop("recovered") is True
        before.pop("close_reason"), before.pop("recovered")
        assert after == before
