"""A real output directory with every file damaged, one way at a time: `ls`, `info DIR`, `report` and every
`serve` route read it without a traceback, an HTTP 500, unbounded time or memory, and name each problem once.

The directory is the session's simulated night (index, sidecars, segments, journal, status file, telemetry,
timelapse, score track, near-misses). Mutations: truncation, a NUL-filled tail (power loss), a line of
megabytes without a newline, random bytes, and type confusion in the JSON (null or string times, a list
where a rule name goes, NaN and infinities, wrong top-level types). The worst directory (every file damaged
at once) also gets the report and the rendered pages, in subprocesses measured for time and peak memory.
"""

from __future__ import annotations

import gzip
import io
import json
import os
import random
import resource
import shutil
import subprocess
import sys
import time
import urllib.parse
from collections.abc import Callable
from pathlib import Path

import pytest

from autorec.cli import main
from autorec.outdir import NEAR_MISSES_NAME
from autorec.report.night import load_night, read_near_misses
from autorec.report.scoretrack import read_score_track
from autorec.web.feed import DirectoryFeed
from autorec.web.server import WebUI
from tests.test_web_hostile import Served

HUGE = 3 << 20  # bytes of a line without a newline: above every reader's line cap (1 MiB)
CONFUSIONS: list[object] = [None, "2026-12-01", ["a", ["b"]], {"x": 1}, float("nan"), float("inf"), -1e308, True, ""]


def _dump(value: object) -> str:
    return json.dumps(value)  # NaN and Infinity as Python writes them: what a foreign writer might leave


# -- mutations of one file's bytes ---------------------------------------------------------------


def truncate(data: bytes, rng: random.Random) -> bytes:
    return data[: rng.randrange(max(1, len(data)))]


def nul_tail(data: bytes, rng: random.Random) -> bytes:
    return data + b"\0" * HUGE


def huge_line(data: bytes, rng: random.Random) -> bytes:
    cut = data.rfind(b"\n", 0, len(data) // 2) + 1
    return data[:cut] + b'{"name": "' + b"x" * HUGE + b'"}\n' + data[cut:]


def flip_bytes(data: bytes, rng: random.Random) -> bytes:
    out = bytearray(data)
    for _ in range(max(1, len(out) // 200)):
        if out:
            out[rng.randrange(len(out))] = rng.randrange(256)
    return bytes(out)


def confuse_lines(data: bytes, rng: random.Random) -> bytes:
    """Each JSON line with one field after another replaced by an ill-typed value (every field, every type)."""
    out = []
    for raw in data.splitlines():
        try:
            entry = json.loads(raw)
        except ValueError:
            out.append(raw.decode(errors="replace"))
            continue
        out.append(_dump(entry))
        if isinstance(entry, dict):
            for key in list(entry):
                out.append(_dump({**entry, key: rng.choice(CONFUSIONS)}))
        for top in ([entry], "text", 7, None):
            out.append(_dump(top))
    return ("\n".join(out) + "\n").encode()


def confuse_object(data: bytes, rng: random.Random) -> bytes:
    """A JSON object (a sidecar, the status file) with every field ill-typed, nested ones too."""
    try:
        doc = json.loads(data)
    except ValueError:
        return data
    if not isinstance(doc, dict):
        return b"[]"

    def confuse(value: object, depth: int) -> object:
        if isinstance(value, dict) and depth < 3:
            return {k: confuse(v, depth + 1) for k, v in value.items()}
        if isinstance(value, list) and depth < 3:
            return [confuse(v, depth + 1) for v in value[:50]] + [rng.choice(CONFUSIONS)]
        return rng.choice(CONFUSIONS)

    return _dump(confuse(doc, 0)).encode()


def score_junk(data: bytes, rng: random.Random) -> bytes:
    """Members of junk rows: NaN scores, list-looking rules, thousands of rule names, a cut member."""
    rows = [
        f"{1.8e9 + i},{rule},{score},1\n"
        for i, (rule, score) in enumerate(
            [("el", "nan"), ("['a']", "0.5"), ("el", "inf"), ("", "1"), ("el", "x"), ("\0", "1")] * 50
        )
    ]
    rows += [f"{1.8e9 + i},rule-{i},0.5,1\n" for i in range(3000)]
    member = gzip.compress("".join(rows).encode(), mtime=0)
    return data + member + gzip.compress(b"time,rule,score,threshold\n1,el,0.5,1\n" * 1000, mtime=0)[:100]


def log_junk(data: bytes, rng: random.Random) -> bytes:
    """A log with an absurd record length in the middle, and a cut final record."""
    mid = len(data) // 2
    return data[:mid] + b"\xff\xff\xff\x7f" + data[mid:] + b"\x10\x00\x00\x00abc"


def wide_records(data: bytes, rng: random.Random) -> bytes:
    """Capacitance records with thousands of groups each, at the telemetry's own times (a damaged rig or file)."""
    from autorec import events
    from autorec.io.logfile import LogReader, frame
    from tests.support.eventbuilder import group_capacitance

    times = []
    for r in LogReader(io.BytesIO(data)):
        try:
            t = events.timestamp(events.decode(r.payload))
        except events.DecodeError:
            continue
        if t is not None:
            times.append(t)
    out = bytearray(data)
    for i in range(300):
        t = times[i * len(times) // 300] if times else 1.8e9 + i
        out += frame(group_capacitance(t, (rng.random() for _ in range(5000))).SerializeToString())

    return bytes(out)


Mutation = Callable[[bytes, random.Random], bytes]
BY_KIND: dict[str, list[Mutation]] = {
    "index.jsonl": [truncate, nul_tail, huge_line, flip_bytes, confuse_lines],
    "journal.jsonl": [truncate, nul_tail, huge_line, flip_bytes, confuse_lines],
    "near-misses.jsonl": [truncate, nul_tail, huge_line, confuse_lines],
    "status.json": [truncate, nul_tail, confuse_object, flip_bytes],
    "sidecar": [truncate, nul_tail, confuse_object, flip_bytes],
    "segment": [truncate, log_junk, flip_bytes],
    "telemetry": [truncate, nul_tail, log_junk, flip_bytes, wide_records],
    "timelapse": [truncate, log_junk, flip_bytes],
    "scores": [truncate, nul_tail, score_junk, flip_bytes],
}


def kind_of(name: str) -> str | None:
    if name in BY_KIND:
        return name
    for prefix in ("telemetry", "timelapse", "scores"):
        if name.startswith(prefix + "-"):
            return prefix
    if name.endswith(".json"):
        return "sidecar"
    if name.endswith(".bin"):
        return "segment"
    return None


def clone(src: Path, dst: Path) -> Path:
    """A copy of `src` whose files are hard links (a mutation replaces a file, never writes into one)."""
    dst.mkdir()
    for p in src.iterdir():
        if p.is_file():
            os.link(p, dst / p.name)
    return dst


def mutate(path: Path, fn: Mutation, rng: random.Random) -> None:
    data = fn(path.read_bytes(), rng)
    path.unlink()
    path.write_bytes(data)


@pytest.fixture(scope="module")
def base(night: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("fuzz") / "base"
    shutil.copytree(night, d)
    for stray in ("report.html",):
        (d / stray).unlink(missing_ok=True)
    near = d / "near-misses.jsonl"
    if not near.exists():  # a night without near-misses: a few, at its segments' times, to damage
        starts = [json.loads(line)["start"] for line in (d / "index.jsonl").read_text().splitlines()]
        near.write_text(
            "".join(
                json.dumps({"rule": "electrodes", "start": t, "end": t + 1, "peak": 0.8, "threshold": 1.0,
                            "peak_time": t + 0.5, "baseline": 0.1}) + "\n"
                for t in starts
            )
        )  # fmt: skip
    kinds = {kind_of(p.name) for p in d.iterdir()}
    assert {k for k in BY_KIND} <= kinds, f"the night lacks a kind of file: {set(BY_KIND) - kinds}"
    return d


API = (
    "/api/status",
    "/api/segments",
    "/api/scores",
    "/",
    "/favicon.ico",
    "/api/reviewed",
    "/api/export",
    "/api/electrodes?pins=1,2",
    "/api/timelapse?t=1796617900",
    "/metrics",
    "/exports/x.mcap",
)
PER_SEGMENT = ("/api/segments/{}", "/api/segments/{}/frames", "/api/segments/{}/frames/0", "/api/segments/{}/card")


def check_directory(d: Path, capsys) -> dict:
    """Every reader over `d`: returns what was seen; fails on a traceback, a 500 or a repeated problem."""
    night = load_night(d)
    problems = list(night.problems)
    # what the report reads besides (the score track and near-misses)
    read_near_misses(d / NEAR_MISSES_NAME, night.problems)
    _, track_problems = read_score_track(sorted(d.glob("scores-*.csv.gz")))
    problems = list(night.problems) + list(track_problems)
    assert len(problems) == len(set(problems)), "a problem named twice"
    assert len(problems) <= 400
    for argv in (["ls", str(d)], ["ls", "--json", str(d)], ["info", str(d)]):
        code = main(argv)
        out, err = capsys.readouterr()
        assert code in (0, 1), (argv, code, err[-2000:])
        assert "Traceback" not in err and len(err.splitlines()) <= 250, err[-2000:]
        if "--json" in argv:
            json.loads(out)  # valid JSON, no NaN
            assert "NaN" not in out and "Infinity" not in out
    statuses: dict[str, int] = {}
    names = [*[s.name for s in night.segments][:3], "no-such", "../index.jsonl", "%00"]
    with Served(lambda: WebUI(d, DirectoryFeed(d), warm_night=False)) as srv:
        paths = list(API) + [p.format(urllib.parse.quote(n, safe="")) for n in names for p in PER_SEGMENT]
        paths += [f"/files/{urllib.parse.quote(s.path.name)}" for s in night.segments[:2]]
        for path in paths:
            status, body = srv.raw(
                f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{srv.port}\r\nConnection: close\r\n\r\n".encode()
            )
            statuses[path] = status
            assert status != 500 and status != 0, (path, body[:500])
            if path.startswith("/api/") and status == 200:
                _head, _, rest = body.partition(b"\r\n\r\n")
                assert b"NaN" not in rest and b"Infinity" not in rest, path
    return {"problems": len(problems), "statuses": statuses}


def test_every_file_damaged_every_way_one_at_a_time(base: Path, tmp_path: Path, capsys):
    rng = random.Random(32)
    began = time.monotonic()
    outcomes: dict[str, int] = {}
    cases = 0
    for p in sorted(base.iterdir()):
        kind = kind_of(p.name)
        if kind is None:
            continue
        if kind in ("segment", "sidecar") and p.stem != sorted(base.glob("*.json"))[0].stem:
            continue  # one segment's files stand for all
        for fn in BY_KIND[kind]:
            d = clone(base, tmp_path / f"case-{cases}")
            mutate(d / p.name, fn, rng)
            result = check_directory(d, capsys)
            outcomes[f"{kind}/{fn.__name__}"] = result["problems"]
            cases += 1
            shutil.rmtree(d)
    seconds = time.monotonic() - began
    with capsys.disabled():
        print(f"\n{cases} fuzz cases in {seconds:.1f} s, problems named per case: {outcomes}")
    assert cases >= 30
    assert outcomes["index.jsonl/confuse_lines"] > 0 and outcomes["journal.jsonl/nul_tail"] > 0


def _measured(argv: list[str]) -> tuple[int, float, float, str]:
    """A CLI command in a subprocess: (exit code, seconds, peak memory in MB, stderr)."""
    code = (
        "import sys, time\n"
        "from autorec.cli import main\n"
        "t = time.monotonic(); rc = main(sys.argv[1:])\n"
        "sys.stdout.flush()\n"
        # VmHWM: this program's own peak (ru_maxrss would carry the forking test process's over exec)
        "hwm = [l for l in open('/proc/self/status') if l.startswith('VmHWM')][0].split()[1]\n"
        "print(f'@@ {time.monotonic() - t:.2f} {int(hwm) / 1024:.0f}', file=sys.stderr)\n"
        "sys.exit(rc)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True, timeout=120)
    line = [x for x in proc.stderr.splitlines() if x.startswith("@@ ")][-1].split()
    return proc.returncode, float(line[1]), float(line[2]), proc.stderr


def test_the_worst_directory_every_file_damaged_at_once(base: Path, tmp_path: Path, capsys):
    rng = random.Random(7)
    d = clone(base, tmp_path / "worst")
    worst = {
        "index.jsonl": [confuse_lines, huge_line, nul_tail],
        "journal.jsonl": [confuse_lines, huge_line, nul_tail],
        "near-misses.jsonl": [confuse_lines, nul_tail],
        "status.json": [confuse_object],
        "sidecar": [confuse_object],
        "telemetry": [wide_records, log_junk],
        "timelapse": [log_junk],
        "scores": [score_junk, nul_tail],
    }
    for p in sorted(d.iterdir()):
        for fn in worst.get(kind_of(p.name) or "", []):
            mutate(p, fn, rng)
    check_directory(d, capsys)
    figures = {}
    for name, argv in (("ls", ["ls", str(d)]), ("report", ["report", "--no-thumbnails", str(d)])):
        code, seconds, mb, err = _measured(argv)
        figures[name] = (code, seconds, mb)
        assert code in (0, 1), err[-3000:]
        assert "Traceback" not in err and len(err.splitlines()) < 300, err[-3000:]
        assert seconds < 30 and mb < 600, (name, seconds, mb)
    with capsys.disabled():
        print(f"\nworst directory: {figures} (exit code, seconds, peak MB)")
    # the rendered pages over it
    with Served(lambda: WebUI(d, DirectoryFeed(d), warm_night=False)) as srv:
        names = [s.name for s in load_night(d).segments][:2]
        for path in [
            "/night",
            *[f"/segment/{urllib.parse.quote(n, safe='')}" for n in names],
            *[f"/api/segments/{urllib.parse.quote(n, safe='')}/strip" for n in names],
        ]:
            status, body = srv.raw(
                f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{srv.port}\r\nConnection: close\r\n\r\n".encode()
            )
            assert status in (200, 404, 422, 501), (path, status, body[:300])
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss < 2_000_000  # KB: this process stayed bounded too


def test_fifos_under_every_name_never_block_a_reader(base: Path, tmp_path: Path, capsys):
    """A FIFO (or a directory) planted under the name of every kind of file: each reader names it as a
    problem and goes on; nothing waits for a writer that never comes."""
    d = clone(base, tmp_path / "fifos")
    planted = []
    for p in sorted(d.iterdir()):
        kind = kind_of(p.name)
        if kind is None or (kind == "segment" and planted and any(x.endswith(".bin") for x in planted)):
            continue
        p.unlink()
        os.mkfifo(p)
        planted.append(p.name)
    assert len(planted) >= 9
    began = time.monotonic()
    check_directory(d, capsys)
    code, _, _, err = _measured(["report", "--no-thumbnails", str(d)])
    assert code in (0, 1) and "Traceback" not in err, err[-2000:]
    assert "not a regular file" in err
    with Served(lambda: WebUI(d, DirectoryFeed(d), warm_night=False)) as srv:
        for path in ("/night", "/api/timelapse?t=1796617900", "/api/electrodes?pins=1"):
            status, _ = srv.raw(
                f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{srv.port}\r\nConnection: close\r\n\r\n".encode()
            )
            assert status in (200, 404, 422, 501), (path, status)
    assert time.monotonic() - began < 60
