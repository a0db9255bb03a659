"""Fuzz: mutated logs through `info`, `run --log --dry-run`, `run --log --out` and `video`.

A seeded RNG damages a small but complete log (electrode changes, sensors, camera frames) with bit
flips, truncations, absurd record lengths, absurd field values (timestamps of any int64, nanos out of
range, images of random bytes or 60000x60000 headers), garbage records and shuffled records. Every
command runs in-process: the CLI's own parser (`autorec.cli.build_parser`, built once: building it
took most of each run) and the command function `main` would call, so one run is milliseconds.
Zero tracebacks: no
exception out of `main`, no exit code other than 0/1/2, no log record carrying an exception, nothing
that says Traceback on stdout/stderr. A failure names the seed and the mutation to reproduce it.
"""

from __future__ import annotations

import logging
import random
import shutil
import struct
from collections import Counter
from pathlib import Path

import pytest

from autorec import cli, events
from autorec.io.logfile import LogWriter
from tests.support import eventbuilder as build
from tests.support.eventbuilder import payload
from tests.support.videolog import image_event, make_jpeg, sensor_event, transform_event

SEED = 15
T0 = 1_795_520_000.0
# inputs per verb: a few thousand in all, well under a minute on one core
COUNTS = {"info": 600, "dry-run": 600, "out": 100, "video": 80}  # ~8 s; more found nothing new (2270 in round 2)
RULES = "output:\n  fsync: false\nrules:\n  - name: el\n    trigger: electrodes\n    pre_roll: 1s\n    post_roll: 2s\n"


def base_records() -> list[bytes]:
    """~60 records: a complete little night with frames, sensors, untimed states and electrode changes."""
    jpegs = [make_jpeg(i, 64, 48) for i in range(3)]
    out = [payload("electrode_layout", T0, 1), payload("device_info", None, 1)]
    for i in range(16):
        t = T0 + i * 0.25
        out.append(payload("scan_capacitance", t, i))
        if i % 4 == 0:
            out.append(payload("electrode_state", None, i // 4 % 7 + 1))
        if i % 2 == 0:
            out.append(transform_event(t, 64, 48))
            out.append(image_event(jpegs[i % 3], t))
        out.append(sensor_event(t + 0.1))
    return out


def absurd_event(rng: random.Random) -> bytes:
    """A valid event with an absurd field value."""
    kind = rng.choice(["hv_regulator", "image", "scan_capacitance", "electrode_state", "image_transform"])
    if kind == "image":
        huge = b"\xff\xd8\xff\xc0\x00\x11\x08\xea\x60\xea\x60\x03"  # a JPEG header of 60000x60000
        ev = build.image(
            None, rng.choice([rng.randbytes(rng.randrange(0, 300)), huge + rng.randbytes(40) + b"\xff\xd9", b""])
        )

    elif kind == "image_transform":
        ev = build.image_transform(None, width=rng.choice([0, 2**31 - 1, 1]), height=rng.choice([0, 2**31 - 1, 1]))
    elif kind == "scan_capacitance":
        absurd = [float("nan"), float("inf"), -1e308, 1e308, 0.0]
        ev = build.scan_pins(None, [rng.choice(absurd) for _ in range(rng.randrange(0, 300))])
    elif kind == "electrode_state":
        ev = build.drive_group([True] * rng.randrange(0, 2000))  # up to 2000 pins on a 128-pin board
    else:
        ev = build.hv(None, rng.choice([float("nan"), -float("inf"), 1e308]))
    seconds = rng.choice([0, -1, 2**62, -(2**63), 2**63 - 1, -62_135_596_800, int(T0), int(T0) - 3600])
    return build.raw_time(ev, seconds, rng.choice([0, 2**31 - 1, -(2**31), 999_999_999])).SerializeToString()


def frame(records: list[bytes]) -> bytearray:
    data = bytearray()
    for p in records:
        data += struct.pack("<I", len(p)) + p
    return data


def mutate(rng: random.Random, records: list[bytes]) -> tuple[str, bytes]:
    """(what was done, the damaged log bytes)."""
    what = rng.choice(["flip", "flip", "truncate", "length", "absurd", "absurd", "garbage", "shuffle", "mix"])
    recs = list(records)
    if what in ("absurd", "mix"):
        for _ in range(rng.randrange(1, 4)):
            recs.insert(rng.randrange(len(recs) + 1), absurd_event(rng))
    if what == "garbage":
        recs.insert(rng.randrange(len(recs) + 1), rng.randbytes(rng.randrange(0, 64)))
    if what == "shuffle":
        i, j = rng.randrange(len(recs)), rng.randrange(len(recs))
        recs[i], recs[j] = recs[j], recs[i]
    data = frame(recs)
    if what in ("flip", "mix"):
        for _ in range(rng.randrange(1, 9)):
            bit = rng.randrange(len(data) * 8)
            data[bit // 8] ^= 1 << (bit % 8)
    if what == "truncate":
        del data[rng.randrange(len(data)) :]
    if what == "length":
        # a record header claiming an absurd length (0, just too long, 4 GB)
        offsets, pos = [], 0
        while pos + 4 <= len(data):
            offsets.append(pos)
            pos += 4 + struct.unpack_from("<I", data, pos)[0]
        at = rng.choice(offsets)
        struct.pack_into("<I", data, at, rng.choice([0, 1, 2**31, 2**32 - 1, len(data)]))
    return what, bytes(data)


class ExceptionRecords(logging.Handler):
    """Collects log records that carry a traceback (log.exception and friends)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.exc_info or (record.exc_text and "Traceback" in record.exc_text):
            self.records.append(record)


def test_mutated_logs_never_raise_through_any_command(tmp_path: Path, capsys):
    parser = cli.build_parser()
    catcher = ExceptionRecords()
    root = logging.getLogger()
    # Only ours: a handler an earlier test's main() left on a closed stream would print "Logging error"
    # tracebacks of its own (the autouse restore_logging fixture puts the old handlers back).
    root.handlers[:] = [catcher]
    rules = tmp_path / "rules.yaml"
    rules.write_text(RULES)
    rng = random.Random(SEED)
    base = base_records()
    assert sum(1 for p in base if events.peek_kind(p) == "image") == 8
    codes: Counter[tuple[str, int]] = Counter()
    kinds: Counter[str] = Counter()
    log = tmp_path / "fuzz.bin"
    try:
        for verb, count in COUNTS.items():
            for n in range(count):
                what, data = mutate(rng, base)
                kinds[what] += 1
                log.write_bytes(data)
                out = tmp_path / f"out-{verb}-{n}"
                argv = {
                    "info": ["info", str(log)],
                    "dry-run": ["run", "--rules", str(rules), "--log", str(log), "--dry-run"],
                    "out": ["run", "--rules", str(rules), "--log", str(log), "--out", str(out)],
                    "video": ["video", str(log), "-o", str(tmp_path / "fuzz.mp4"), "--force", "-q", "--threads", "0"],
                }[verb]
                where = f"seed {SEED}, {verb} input #{n} ({what}); the log is {log}"
                try:
                    args = parser.parse_args(argv)
                    code = int(args.func(args) or 0)  # what cli.main does, without reconfiguring logging
                except BaseException as exc:  # any escape is the failure we look for
                    raise AssertionError(f"{where}: {type(exc).__name__}: {exc}") from exc
                assert code in (0, 1, 2), f"{where}: exit code {code}"
                assert not catcher.records, f"{where}: logged a traceback: {catcher.records[0].getMessage()}"
                captured = capsys.readouterr()
                assert "Traceback" not in captured.out + captured.err, f"{where}: {captured.err[-2000:]}"
                codes[(verb, code)] += 1
                if out.exists():
                    shutil.rmtree(out)
    finally:
        root.removeHandler(catcher)  # (restore_logging puts the earlier handlers back)
    total = sum(COUNTS.values())
    assert sum(codes.values()) == total
    with capsys.disabled():
        print(f"\nfuzz: {total} mutated logs ({dict(kinds)}); exit codes {dict(sorted(codes.items()))}")


@pytest.mark.parametrize("seconds,nanos", [(0, 0), (-(2**63), 0), (2**63 - 1, 2**31 - 1), (2**62, -(2**31))])
def test_one_record_of_absurd_time_in_a_log_for_every_command(tmp_path: Path, seconds, nanos, capsys):
    records = base_records()
    records.insert(len(records) // 2, build.raw_time(build.hv(None, 1.0), seconds, nanos).SerializeToString())
    log = tmp_path / "one.bin"
    with LogWriter(log) as w:
        for p in records:
            w.write(p)
    rules = tmp_path / "rules.yaml"
    rules.write_text(RULES)
    assert cli.main(["info", str(log)]) == 0
    assert cli.main(["run", "--rules", str(rules), "--log", str(log), "--dry-run"]) == 0
    assert cli.main(["run", "--rules", str(rules), "--log", str(log), "--out", str(tmp_path / "o")]) == 0
    assert cli.main(["video", str(log), "-q"]) == 0
    assert "Traceback" not in capsys.readouterr().err
