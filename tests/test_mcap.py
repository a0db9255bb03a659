"""MCAP export (`autorec export --mcap`, `output.mcap`): read back with mcap's own readers, CRCs checked."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from mcap.reader import make_reader
from mcap.stream_reader import StreamReader
from mcap_protobuf.decoder import DecoderFactory

from autorec import events
from autorec.cli import main
from autorec.io.atomicfile import partial_file, partial_path
from autorec.io.logfile import HEADER, LogReader
from autorec.report import mcapexport
from tests.support.simlog import T0 as SIM_T0
from tests.support.simlog import write_sim_log
from tests.support.videolog import T0, image_event, make_jpeg, sensor_event, transform_event, write_log


def read_mcap(path: Path) -> dict:
    """Everything in an MCAP, through mcap's seeking reader with CRC validation (and its stream reader,
    which checks every chunk's and the data section's CRC)."""
    with open(path, "rb") as f:
        for _ in StreamReader(f, validate_crcs=True).records:
            pass
    with open(path, "rb") as f:
        reader = make_reader(f, validate_crcs=True, decoder_factories=[DecoderFactory()])
        summary = reader.get_summary()
        messages = [(ch.topic, m.log_time, m.publish_time, m.data, sch) for sch, ch, m in reader.iter_messages()]
        metadata = {m.name: m.metadata for m in reader.iter_metadata()}
        attachments = {a.name: a.data for a in reader.iter_attachments()}
    with open(path, "rb") as f:
        reader = make_reader(f, decoder_factories=[DecoderFactory()])  # decoded by the file's own schemas
        shown = ["/camera/image", "/autorec/firings", "/camera/annotations"]
        decoded = [(ch.topic, d) for _, ch, _, d in reader.iter_decoded_messages(topics=shown)]
    return {
        "summary": summary,
        "messages": messages,
        "metadata": metadata,
        "attachments": attachments,
        "decoded": decoded,
    }


def topic(data: dict, name: str) -> list[tuple]:
    return [m for m in data["messages"] if m[0] == name]


def ns(t: float) -> int:
    return round(t * 1e9)


@pytest.fixture(scope="module")
def sim_segment(tmp_path_factory) -> Path:
    """20 s of the simulator with its camera (5 fps) and a sidecar with a motion firing, as a segment."""
    d = tmp_path_factory.mktemp("seg")
    log = d / "seg-1.bin"
    write_sim_log(log, seconds=20.0, fps=5.0)
    sidecar = {
        "version": 1,
        "name": "seg-1",
        "start": SIM_T0,
        "end": SIM_T0 + 20,
        "segment_start": SIM_T0,
        "segment_end": SIM_T0 + 20,
        "open_reason": "fired",
        "close_reason": "post_roll",
        "rules": ["camera-motion"],
        "firings": [
            {
                "rule": "camera-motion",
                "time": SIM_T0 + 5.0,
                "onset": SIM_T0 + 4.6,
                "evidence": {"score": 0.004, "bbox": [100, 120, 60, 40], "frames": 3},
            }
        ],
        "gaps": [{"start": SIM_T0 + 12, "end": SIM_T0 + 13, "reason": "disconnected"}],
    }
    (d / "seg-1.json").write_text(json.dumps(sidecar))
    return log


def test_round_trip_every_record_byte_identical_with_crcs(sim_segment: Path, tmp_path: Path):
    out = tmp_path / "seg-1.mcap"
    result = mcapexport.export(sim_segment, out)
    payloads = [r.payload for r in LogReader(sim_segment)]
    decoded = [events.decode(p) for p in payloads]
    images = [e.image.image_data for e in decoded if events.kind(e) == "image"]
    others = [p for p, e in zip(payloads, decoded) if events.kind(e) != "image"]
    stamps = [t for t in map(events.timestamp, decoded) if t is not None]

    data = read_mcap(out)
    assert [m[3] for m in topic(data, "/purpledrop/events")] == others  # byte for byte, in order
    frames = [d for t, d in data["decoded"] if t == "/camera/image"]
    assert [f.data for f in frames] == images and images
    assert {f.format for f in frames} == {"jpeg"} and {f.frame_id for f in frames} == {"camera"}
    assert (result.records, result.images, result.events) == (len(payloads), len(images), len(others))
    # the same first and last times as the segment's records
    recorded = [m[1] for m in data["messages"] if m[0] in ("/purpledrop/events", "/camera/image")]
    assert (recorded[0], recorded[-1]) == (ns(stamps[0]), ns(stamps[-1]))
    assert recorded == sorted(recorded)
    # every image at its record's own time
    image_times = [m[1] for m in topic(data, "/camera/image")]
    assert image_times == [ns(events.timestamp(e)) for e in decoded if events.kind(e) == "image"]

    summary = data["summary"]
    assert summary.chunk_indexes and {c.compression for c in summary.chunk_indexes} == {"zstd"}
    assert summary.statistics.message_count == len(data["messages"])
    schemas = {s.name: s for s in summary.schemas.values()}
    assert schemas["protobuf.PurpleDropEvent"].encoding == "protobuf"
    assert "foxglove.CompressedImage" in schemas and "foxglove.Log" in schemas

    # numeric plot topics
    hv = [json.loads(m[3]) for m in topic(data, "/purpledrop/high_voltage")]
    assert hv and all(isinstance(v["voltage"], float) for v in hv)
    caps = [json.loads(m[3]) for m in topic(data, "/purpledrop/capacitance")]
    assert caps and all(isinstance(c["groups"], list) for c in caps)
    assert topic(data, "/purpledrop/temperature") and topic(data, "/purpledrop/driven_electrodes")

    # the firing in words, its box and the electrode grid on the picture
    (firing,) = [d for t, d in data["decoded"] if t == "/autorec/firings"]
    assert (
        firing.name == "camera-motion" and "0.4 % of the picture changed around (130, 140), 60x40 px" in firing.message
    )
    annotations = [d for t, d in data["decoded"] if t == "/camera/annotations"]
    assert any(len(a.points) == 2 for a in annotations)  # grid + box
    assert annotations[0].points[0].type == 4 and len(annotations[0].points[0].points) > 8  # the grid's lines
    (gap,) = topic(data, "/autorec/gaps")
    assert gap[1] == ns(SIM_T0 + 12)

    facts = data["metadata"]["autorec.segment"]
    assert facts["close_reason"] == "post_roll" and facts["rules"] == "camera-motion"
    assert facts["export_records"] == str(len(payloads))
    assert "seg-1.json" in data["attachments"]


def test_damaged_timestamps_corrupt_jpeg_gap_and_bad_records_export_cleanly(tmp_path: Path):
    jpeg = make_jpeg(1)
    payloads = [sensor_event(T0), transform_event(T0), image_event(jpeg, T0)]
    payloads += [image_event(make_jpeg(2), 16_725_225_600.0)]  # year 2500: one damaged stamp
    payloads += [image_event(jpeg[: len(jpeg) // 2], T0 + 0.2)]  # a corrupt JPEG
    payloads += [image_event(jpeg, None), sensor_event(T0 + 0.3)]  # a frame without a time
    payloads += [sensor_event(T0 + 3600 + i) for i in range(3)]  # an hour's gap
    payloads += [image_event(jpeg, T0 + 3603), b"\x00\x01not a protobuf"]
    log = write_log(tmp_path / "bad.bin", payloads)
    with open(log, "ab") as f:  # a record cut off by a crash
        f.write(HEADER.pack(1000) + b"\x1a\x05")
    (tmp_path / "bad.json").write_text("{not json")

    result = mcapexport.export(log)
    data = read_mcap(tmp_path / "bad.mcap")
    assert result.records == len(payloads) and result.undecodable == 1 and result.corrupt_images == 1
    assert result.clock_outliers == 1 and result.log_problem.startswith("log cut off")
    assert result.sidecar_problem.startswith("sidecar not valid JSON")
    times = [m[1] for m in data["messages"]]
    assert times == sorted(times) and times[0] == ns(T0) and times[-1] == ns(T0 + 3603)
    images = topic(data, "/camera/image")
    assert len(images) == 5 and images[1][1] == ns(T0)  # the damaged stamp takes the carried time
    assert images[1][2] == ns(16_725_225_600.0)  # while publish_time keeps what the record said
    assert [m[3] for m in topic(data, "/purpledrop/undecodable")] == [b"\x00\x01not a protobuf"]
    facts = data["metadata"]["autorec.segment"]
    assert facts["export_clock_outliers"] == "1" and "cut off" in facts["export_log_problem"]


def test_records_before_any_timestamp_take_the_first_time(tmp_path: Path):
    from tests.support.eventbuilder import payload

    log = write_log(tmp_path / "s.bin", [payload("device_info", value=7), sensor_event(T0 + 1)])
    mcapexport.export(log)
    data = read_mcap(tmp_path / "s.mcap")
    assert [m[1] for m in data["messages"] if m[0] == "/purpledrop/events"] == [ns(T0 + 1)] * 2
    assert data["metadata"]["autorec.segment"]["rig_serial_number"] == "SN7"


def test_a_failed_write_leaves_nothing_under_the_final_name(tmp_path: Path):
    out = tmp_path / "x.mcap"
    target = tmp_path / "elsewhere"
    target.write_bytes(b"keep")
    partial_path(out).symlink_to(target)  # a planted link is removed, never written through
    with pytest.raises(RuntimeError), partial_file(out) as f:
        f.write(b"half")
        raise RuntimeError("the export failed here")
    assert not out.exists() and not os.path.lexists(partial_path(out)) and target.read_bytes() == b"keep"


def test_a_second_export_of_the_same_file_at_once_is_refused_and_a_stale_partial_replaced(tmp_path: Path):
    import errno

    out = tmp_path / "x.mcap"
    with partial_file(out) as f:
        f.write(b"first")
        with pytest.raises(OSError) as busy, partial_file(out):
            pass
        assert busy.value.errno == errno.EBUSY  # and the first one's partial is left alone
    assert out.read_bytes() == b"first" and not partial_path(out).exists()
    partial_path(out).write_bytes(b"left by a killed export")  # no writer holds it: stale
    with partial_file(out) as f:
        f.write(b"second")
    assert out.read_bytes() == b"second" and not partial_path(out).exists()


def test_cli_exports_one_segment_and_a_directory_skips_done_ones(tmp_path: Path, sim_segment: Path, capsys):
    d = tmp_path / "night"
    d.mkdir()
    lines = []
    for i in (1, 2):
        log = write_log(d / f"s{i}.bin", [sensor_event(T0 + i), image_event(make_jpeg(i), T0 + i + 0.1)])
        lines.append(json.dumps({"name": f"s{i}", "path": log.name, "start": T0 + i, "end": T0 + i + 0.1}))
    (d / "index.jsonl").write_text("\n".join(lines) + "\n")
    write_log(d / "telemetry-20260101.bin", [sensor_event(T0)])  # not a segment: not exported

    assert main(["export", str(d), "--mcap"]) == 0
    assert sorted(p.name for p in d.glob("*.mcap")) == ["s1.mcap", "s2.mcap"]
    assert "2 exported, 0 up to date, 0 failed" in capsys.readouterr().out
    (d / "s2.mcap").unlink()
    assert main(["export", str(d), "--mcap"]) == 0
    assert "1 exported, 1 up to date, 0 failed" in capsys.readouterr().out

    out = tmp_path / "one.mcap"
    assert main(["export", str(sim_segment), "--mcap", "-o", str(out)]) == 0
    assert out.is_file() and not partial_path(out).exists()
    assert main(["export", str(sim_segment), "--mcap"]) == 0  # beside the segment
    capsys.readouterr()
    assert main(["export", str(sim_segment)]) == 2  # no format named
    assert main(["export", str(d), "--mcap", "-o", str(out)]) == 2
    assert main(["export", str(tmp_path / "missing.bin"), "--mcap"]) == 1
    assert "missing.bin: no such file or directory" in capsys.readouterr().err


RULES = """
output:
  mcap: true
  timelapse: off
segments:
  pre_roll: 2s
  post_roll: 3s
rules:
  - name: electrodes-changed
    trigger: electrodes
"""


@pytest.fixture(scope="module")
def recorded(tmp_path_factory) -> tuple[Path, Path]:
    """(rule file, output directory) of a short simulated run with `output.mcap: true`."""
    base = tmp_path_factory.mktemp("run")
    rules = base / "rules.yaml"
    rules.write_text(textwrap.dedent(RULES))
    out = base / "out"
    proc = subprocess.run(
        [
            *(sys.executable, "-m", "autorec", "run", "--rules", str(rules), "--sim", "--speed", "20"),
            *("--duration", "40s", "--fps", "2", "--seed", "3", "--out", str(out)),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    return rules, out


def test_output_mcap_writes_one_when_each_segment_closes(recorded):
    rules, out = recorded
    index = [json.loads(line) for line in (out / "index.jsonl").read_text().splitlines()]
    assert index
    for entry in index:
        log = out / entry["path"]
        data = read_mcap(log.with_suffix(".mcap"))
        assert len(topic(data, "/purpledrop/events")) + len(topic(data, "/camera/image")) == entry["records"]
        assert data["attachments"]["rules.yaml"] == rules.read_bytes()
        assert data["metadata"]["autorec.segment"]["rules"] == "electrodes-changed"
    assert not list(out.glob("*.partial"))


def test_the_export_queue_writes_mcap_also_for_segments_without_camera(tmp_path: Path):
    from autorec.services.exportqueue import ExportQueue

    cam = write_log(tmp_path / "cam.bin", [sensor_event(T0), image_event(make_jpeg(1), T0 + 0.1)])
    telemetry = write_log(tmp_path / "tel.bin", [sensor_event(T0), sensor_event(T0 + 1)])
    q = ExportQueue("off", mcap=True, rules=tmp_path / "gone.yaml")
    q.submit(cam)
    q.submit(telemetry)
    assert q.close(grace=60)
    assert [(o.log.name, o.kind, o.status) for o in q.outcomes] == [
        ("cam.bin", "mcap", "exported"),
        ("tel.bin", "mcap", "exported"),
    ]
    facts = read_mcap(tmp_path / "tel.mcap")["metadata"]["autorec.segment"]
    assert "gone.yaml not attached" in facts["export_notes"]


def test_the_segment_page_offers_the_mcap_made_on_demand(recorded, tmp_path: Path):
    from autorec.web.feed import DirectoryFeed
    from autorec.web.server import WebUI
    from tests.test_web import ServerThread

    _, out = recorded
    name = json.loads((out / "index.jsonl").read_text().splitlines()[0])["name"]
    made = out / f"{name}.mcap"
    made.unlink()
    with ServerThread(lambda: WebUI(out, DirectoryFeed(out))) as srv:
        status, body, _ = srv.get(f"/segment/{name}")
        assert status == 200 and f'href="/files/{name}.mcap"' in body.decode()
        status, body, headers = srv.get(f"/files/{name}.mcap")
        assert status == 200 and headers["Content-Disposition"] == f"attachment; filename*=UTF-8''{name}.mcap"
        assert made.read_bytes() == body  # made beside the segment, then served
        (tmp_path / "got.mcap").write_bytes(body)
        assert read_mcap(tmp_path / "got.mcap")["metadata"]["autorec.segment"]["segment"] == name
        first = made.stat().st_mtime_ns
        assert srv.get(f"/files/{name}.mcap")[0] == 200 and made.stat().st_mtime_ns == first  # served as it is
        assert srv.get("/files/nothing.mcap")[0] == 404


def test_the_segment_page_says_the_mcap_is_being_prepared_in_a_real_browser(recorded):
    from autorec.web.feed import DirectoryFeed
    from autorec.web.server import WebUI
    from tests.support.browser import artifact_path, chromium, console_errors
    from tests.support.polling import wait_until
    from tests.test_web import ServerThread

    _, out = recorded
    name = json.loads((out / "index.jsonl").read_text().splitlines()[0])["name"]
    with ServerThread(lambda: WebUI(out, DirectoryFeed(out))) as srv, chromium() as driver:
        driver.get(srv.base + f"segment/{name}")
        link = driver.find_element("id", "mcap")
        assert link.get_attribute("href").endswith(f"/files/{name}.mcap") and link.text == f"{name}.mcap"
        # no real download in the test browser: the page's own click handler runs, the navigation does not
        driver.execute_script("arguments[0].addEventListener('click', (e) => e.preventDefault())", link)
        link.click()
        note = driver.find_element("id", "mcap-note")
        wait_until(lambda: "preparing the MCAP file" in note.text, 5, "the note beside the MCAP link")
        driver.save_screenshot(str(artifact_path("mcap-segment-page.png")))
        assert console_errors(driver) == []


def test_the_example_layout_names_only_topics_and_fields_an_export_has(sim_segment: Path, tmp_path: Path):
    import re

    layout = json.loads((Path(__file__).resolve().parent.parent / "examples" / "foxglove-layout.json").read_text())
    data = read_mcap(mcapexport.export(sim_segment, tmp_path / "s.mcap").output)
    topics = {m[0] for m in data["messages"]}
    panels = layout["configById"]
    named = {panels["Image!camera"]["imageMode"]["imageTopic"], *panels["Image!camera"]["imageMode"]["annotations"]}
    named |= {panels["RosOut!firings"]["topicToRender"], panels["RawMessages!events"]["topicPath"]}
    assert named <= topics
    paths = [p["value"] for c in panels.values() for p in c.get("paths", [])]
    assert len(paths) == 7
    for path in paths:
        name, field, index = re.fullmatch(r"(/[a-z_/]+)\.([a-z_]+)(?:\[(\d+)\])?", path).groups()
        value = json.loads(topic(data, name)[-1][3])[field]
        if index is not None:
            value = value[int(index)]
        assert isinstance(value, (int, float)), path
    ids = set(re.findall(r'"([A-Za-z]+![a-z]+)"', json.dumps(layout["layout"])))
    assert ids == set(panels)  # every panel placed, none missing


def test_with_an_electrode_layout_each_electrode_is_outlined_and_numbered_on_the_picture(tmp_path: Path):
    from autorec.sim.camera import grid_to_pixel
    from autorec.triggers.missedmove import cells_from_layout

    scenario = (Path(mcapexport.__file__).parent.parent / "sim" / "scenarios" / "demo.yaml").read_text()
    log = tmp_path / "laid-out.bin"
    write_sim_log(log, scenario + "\nlayout: true\n", seconds=3.0, fps=2.0, text=True)
    decoded = [events.decode(r.payload) for r in LogReader(log)]
    layout = next(e.electrode_layout.layout for e in decoded if events.kind(e) == "electrode_layout")
    transform = next(list(e.image_transform.transform) for e in decoded if events.kind(e) == "image_transform")
    cells = cells_from_layout(layout)

    data = read_mcap(mcapexport.export(log).output)
    grid = next(d for t, d in data["decoded"] if t == "/camera/annotations")
    assert len(grid.points[0].points) == 8 * len(cells)  # four edges of two points per electrode
    labels = {int(t.text): (t.position.x, t.position.y) for t in grid.texts}
    assert set(labels) == set(cells)
    for pin, (col, row) in cells.items():
        assert labels[pin] == pytest.approx(grid_to_pixel(transform, col + 0.5, row + 0.5))


def test_the_web_download_waits_for_an_export_already_writing_the_file(tmp_path: Path):
    import asyncio

    from autorec.web.feed import DirectoryFeed
    from autorec.web.server import WebUI

    log = write_log(tmp_path / "s.bin", [sensor_event(T0)])
    out = log.with_suffix(".mcap")
    ui = WebUI(tmp_path, DirectoryFeed(tmp_path), warm_night=False)

    async def scenario() -> tuple[bool, str | None]:
        writing = partial_file(out)
        f = writing.__enter__()  # the export queue's export, under way
        waiting = asyncio.ensure_future(ui._wait_for_mcap(log, out, "busy"))
        await asyncio.sleep(0)  # the download starts waiting
        f.write(b"the queue's file")
        writing.__exit__(None, None, None)
        return waiting.done(), await waiting

    done_before, problem = asyncio.run(scenario())
    assert not done_before and problem is None and out.read_bytes() == b"the queue's file"


def test_only_a_partial_nobody_writes_is_removed_as_stale(tmp_path: Path):
    from autorec.io.atomicfile import remove_stale_partial

    out = tmp_path / "x.mcap"
    with partial_file(out) as f:
        f.write(b"being written")
        assert not remove_stale_partial(out) and partial_path(out).exists()
    assert out.read_bytes() == b"being written"
    partial_path(out).write_bytes(b"killed")
    assert remove_stale_partial(out) and not partial_path(out).exists()
    assert not remove_stale_partial(out)
