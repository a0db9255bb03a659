"""Nothing is written outside the output directory: a symbolic link planted there is never followed.

For every file autorec creates or appends to (segment partial, segment log, sidecar and its temporary,
index.jsonl, telemetry-YYYYMMDD.bin, status.json, the instance lock, a video export and its partial,
recovery's cut of a partial) a link to a file outside is planted; the file outside must stay byte for
byte as it was, and autorec must go on (writing under another name, or refusing with the path named).
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from autorec.cli import main
from autorec.core.pipeline import Pipeline
from autorec.io.atomicfile import SymlinkRefused, append_json_line, open_nofollow, replace_file, write_json
from autorec.io.instancelock import InstanceLock
from autorec.io.logfile import LogWriter
from autorec.io.recovery import recover_directory
from autorec.io.writer import SegmentWriter
from autorec.rules import load_rules
from autorec.runs.dispatch import Dispatcher
from autorec.services.statusfile import write_status
from tests.support.eventbuilder import message, payload
from tests.support.videolog import T0 as VT0
from tests.support.videolog import frames_log

T0 = 1_795_520_000.0  # 2026-11-24
PRECIOUS = b"precious data outside the output directory\n"


class Outside:
    """Files outside the output directory, each the target of a planted link."""

    def __init__(self, root: Path) -> None:
        self.root = root / "outside"
        self.root.mkdir()
        self.targets: list[Path] = []

    def plant(self, link: Path, dangling: bool = False) -> Path:
        target = self.root / f"target-{len(self.targets)}"
        if not dangling:
            target.write_bytes(PRECIOUS)
        link.symlink_to(target)
        self.targets.append(target)
        return target

    def assert_untouched(self) -> None:
        for t in self.targets:
            if t.exists():
                assert t.read_bytes() == PRECIOUS, f"{t} was written through a link"
        assert sorted(p.name for p in self.root.iterdir()) == sorted(t.name for t in self.targets if t.exists())


def test_the_helpers_refuse_links(tmp_path: Path):
    out = Outside(tmp_path)
    link = tmp_path / "x"
    out.plant(link)
    with pytest.raises(SymlinkRefused, match="symbolic link"):
        open_nofollow(link, 1)
    with pytest.raises(SymlinkRefused) as info:
        append_json_line(link, {"a": 1})
    assert str(link) in str(info.value)
    with pytest.raises(SymlinkRefused):
        LogWriter(link, mode="append")
    with pytest.raises(OSError):
        LogWriter(link, mode="overwrite")
    # replace_file: a link at the temporary name is removed, a link at the name is replaced (not followed)
    out.plant(tmp_path / ".y.tmp")
    out.plant(tmp_path / "y")
    replace_file(tmp_path / "y", b"new")
    assert (tmp_path / "y").read_bytes() == b"new" and not (tmp_path / "y").is_symlink()
    out.assert_untouched()


def test_writer_telemetry_index_and_sidecars_never_follow_planted_links(tmp_path: Path, caplog):
    outside = Outside(tmp_path)
    d = tmp_path / "out"
    d.mkdir()
    for name in ("index.jsonl", "telemetry-20261124.bin", "seg-1.bin.partial", "seg-2.bin", "seg-3.json"):
        outside.plant(d / name)
    outside.plant(d / "seg-4.json", dangling=True)  # a dangling link must not be created through either
    outside.plant(d / ".seg-1-2.json.tmp")  # the sidecar's temporary file
    rules = tmp_path / "r.yaml"
    rules.write_text("output:\n  name: seg-{seq}\nrules:\n  - name: el\n    trigger: electrodes\n    post_roll: 2s\n")
    writer = SegmentWriter(d, "seg-{seq}", telemetry=True).start()
    pipe = Dispatcher(Pipeline(load_rules(rules), offline=True, telemetry=True), writer)
    sent = 0
    for i in range(200):
        t = T0 + i * 0.25
        for p in (payload("scan_capacitance", t, i),) + (
            (payload("electrode_state", None, (i // 40) % 7 + 1),) if i % 40 == 5 else ()
        ):
            pipe.message(message(p))

            sent += 1
    pipe.finish()
    with caplog.at_level(logging.WARNING):
        assert writer.close(10)
    outside.assert_untouched()
    # segments went to free names, beside the links; each finished with its sidecar
    logs = sorted(p.name for p in d.glob("seg-*.bin") if not p.is_symlink())
    assert logs == ["seg-1-2.bin", "seg-2-2.bin", "seg-3-2.bin", "seg-4-2.bin", "seg-5.bin"]
    assert all((d / n.replace(".bin", ".json")).is_file() for n in logs)
    # the index and the telemetry file are links: refused, with the path named, and counted
    assert writer.stats.errors >= 5 and writer.stats.telemetry_errors == sent
    assert "index.jsonl: is a symbolic link" in caplog.text
    assert "telemetry-20261124.bin: is a symbolic link" in caplog.text


def test_status_file_lock_and_recovery_never_follow_links(tmp_path: Path):
    outside = Outside(tmp_path)
    d = tmp_path / "out"
    d.mkdir()
    outside.plant(d / "status.json")
    write_status(d / "status.json", {"state": "ok"})
    assert not (d / "status.json").is_symlink()
    # the instance lock file
    outside.plant(d / ".autorec.lock")
    with pytest.raises(SymlinkRefused):
        InstanceLock(d).acquire()
    # a partial left behind as a link to a log with a cut final record: never recovered (it would be cut)
    victim = tmp_path / "a-log.bin"  # outside the output directory
    with LogWriter(victim) as w:
        w.write(payload("hv_regulator", T0, 1))
    with open(victim, "ab") as f:
        f.write(b"\x40\x00\x00\x00cut")
    before = victim.read_bytes()
    (d / "seg.bin.partial").symlink_to(victim)
    assert recover_directory(d) == []
    assert victim.read_bytes() == before
    outside.assert_untouched()


def test_run_refuses_a_linked_lock_file_with_one_line(tmp_path: Path, capsys):
    outside = Outside(tmp_path)
    d = tmp_path / "out"
    d.mkdir()
    outside.plant(d / ".autorec.lock")
    rules = tmp_path / "r.yaml"
    rules.write_text("rules:\n  - name: el\n    trigger: electrodes\n")
    log = tmp_path / "in.bin"
    with LogWriter(log) as w:
        w.write(payload("hv_regulator", T0, 1))
    assert main(["run", "--rules", str(rules), "--log", str(log), "--out", str(d)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and ".autorec.lock: is a symbolic link" in err[0]
    outside.assert_untouched()


@pytest.mark.parametrize("mode", ["h264", "copy"])
def test_video_export_never_follows_links(tmp_path: Path, mode: str):
    outside = Outside(tmp_path)
    log = frames_log(tmp_path / "cam.bin", [VT0 + i * 0.1 for i in range(5)])
    suffix = ".mp4" if mode == "h264" else ".mkv"
    out = tmp_path / f"cam{suffix}"
    outside.plant(out)
    outside.plant(Path(f"{out}.partial"))
    argv = ["video", str(log), "-o", str(out), "--force"] + (["--copy"] if mode == "copy" else [])
    assert main(argv) == 0
    assert out.is_file() and not out.is_symlink() and out.stat().st_size > 1000
    outside.assert_untouched()


def test_sidecar_helper_replaces_a_linked_sidecar_itself(tmp_path: Path):
    outside = Outside(tmp_path)
    outside.plant(tmp_path / "s.json")
    write_json(tmp_path / "s.json", {"a": 1})
    assert (tmp_path / "s.json").read_text().strip().startswith("{")
    outside.assert_untouched()
