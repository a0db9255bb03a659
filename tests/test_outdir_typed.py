"""The output directory's JSON read back through the typed readers of `autorec.outdir`: any value in any field
is a problem or a default, never an exception, and no NaN or infinity passes as a number."""

from __future__ import annotations

import itertools
import math
from typing import Any

from autorec.outdir import IndexLine, check_journal_entry, check_near_miss, check_sidecar, check_status

HOSTILE: list[Any] = [
    None, "", "2026-12-01T00:00", "<script>alert(1)</script>", ["a", ["b"]], {"x": {"y": []}},
    float("nan"), float("inf"), -float("inf"), 1e308, -1, 0, True, False, 2**70,
]  # fmt: skip

INDEX = {"name": "s", "path": "s.bin", "sidecar": "s.json", "start": 1.8e9, "end": 1.8e9 + 5, "rules": ["r"]}
JOURNAL = {"event": "stats", "time": 1.8e9, "wall": 1.8e9, "counters": {"a": 1}}
NEAR = {"rule": "r", "start": 1.8e9, "end": 1.8e9 + 1, "peak": 0.9, "threshold": 1.0, "peak_time": 1.8e9}
STATUS = {
    "updated": 1.8e9, "connected": True, "msg_per_s": 3.0,
    "open_segment": {"path": "p", "start": 1.8e9, "rules": ["r"]},
    "last_segment": None, "disk_free": 10, "disk_total": 20, "disk_below_floor": False, "counters": {"a": 1},
    "alerts": [{"key": "k"}], "scores": {"r": {"time": 1.8e9, "score": 0.5, "threshold": 1, "ratio": 0.5}}, "pid": 1,
}  # fmt: skip
SIDECAR = {"version": 1, "name": "s", "start": 1.8e9, "end": 1.8e9 + 5, "rules": ["r"], "records": 3,
           "firings": [{"rule": "r", "time": 1.8e9, "evidence": {}}], "gaps": [], "counts": {}}  # fmt: skip


def numbers(value: Any) -> list[float]:
    """Every float anywhere in `value`."""
    if isinstance(value, float):
        return [value]
    if isinstance(value, dict):
        return [x for v in value.values() for x in numbers(v)]
    if isinstance(value, (list, tuple)):
        return [x for v in value for x in numbers(v)]
    return []


def variants(good: dict[str, Any]):
    """`good` with each field set to each hostile value, with each field removed, and other top-level types."""
    for key, value in itertools.product(good, HOSTILE):
        yield {**good, key: value}
    for key in good:
        yield {k: v for k, v in good.items() if k != key}
    yield from HOSTILE


def test_index_lines():
    kept = 0
    for entry in variants(INDEX):
        line = IndexLine.from_json(entry)
        if isinstance(line, str):
            continue
        kept += 1
        assert (
            isinstance(line.name, str) and isinstance(line.rules, tuple) and all(isinstance(r, str) for r in line.rules)
        )
        assert math.isfinite(line.start) and math.isfinite(line.end) and line.end >= line.start
        assert all(math.isfinite(x) for x in numbers(line.to_json()))
    assert kept > 30


def test_journal_entries_near_misses_status_and_sidecars():
    checked = 0
    for entry in variants(JOURNAL):
        e = check_journal_entry(entry)
        if not isinstance(e, str):
            assert isinstance(e["event"], str) and math.isfinite(e["time"])
            assert "wall" not in e or math.isfinite(e["wall"])
            assert all(isinstance(v, int) for v in e.get("counters", {}).values())
            checked += 1
    for entry in variants(NEAR):
        e = check_near_miss(entry)
        if not isinstance(e, str):
            assert isinstance(e["rule"], str) and all(math.isfinite(e[k]) for k in e if k not in ("rule", "baseline"))
            assert e["baseline"] is None or math.isfinite(e["baseline"])
            checked += 1
    for data in variants(STATUS):
        status, problems = check_status(data)
        if status is None:
            assert problems
            continue
        assert all(math.isfinite(x) for x in numbers({k: status[k] for k in status if k in STATUS}))
        for key in ("open_segment", "last_segment"):
            seg = status.get(key)
            assert seg is None or (isinstance(seg["rules"], list) and all(isinstance(r, str) for r in seg["rules"]))
        checked += 1
    for data in variants(SIDECAR):
        sidecar, problems = check_sidecar(data)
        if sidecar is None:
            continue
        for f in sidecar.get("firings") or []:  # None is kept: a recovered sidecar leaves a value unknown
            assert isinstance(f["rule"], str) and math.isfinite(f["time"])
        assert all(isinstance(r, str) for r in sidecar.get("rules") or [])
        for key in ("start", "end"):
            assert sidecar.get(key) is None or math.isfinite(sidecar[key])  # None: a recovered one, unknown
        checked += 1
    assert checked > 400
