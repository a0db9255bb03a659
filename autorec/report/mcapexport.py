"""One segment as an MCAP file: its camera frames, plots, firings and facts, for Foxglove and Lichtblick.

`export(log, out)` writes `out` (default `NAME.mcap` beside `NAME.bin`) with these channels (the
schemas of the `foxglove-schemas-protobuf` package, our own `.proto`, or a JSON Schema):

| topic                          | schema (encoding)                          | from                                  |
|--------------------------------|--------------------------------------------|---------------------------------------|
| `/purpledrop/events`           | `protobuf.PurpleDropEvent` (protobuf)      | every other record, byte for byte     |
| `/camera/image`                | `foxglove.CompressedImage` (protobuf)      | `image`: the JPEG unchanged, `jpeg`   |
| `/camera/annotations`          | `foxglove.ImageAnnotations` (protobuf)     | electrode grid, motion evidence boxes |
| `/autorec/firings`             | `foxglove.Log` (protobuf)                  | the sidecar's firings, in words       |
| `/autorec/gaps`                | `foxglove.Log` (protobuf)                  | the sidecar's gaps (no data)          |
| `/purpledrop/capacitance`      | JSON `{groups: [..], raw: [..]}`           | `group_capacitance` (per scan group)  |
| `/purpledrop/active_capacitance` | JSON `{baseline, measurement, calibrated}` | `active_capacitance`                |
| `/purpledrop/high_voltage`     | JSON `{voltage, target}`                   | `hv_regulator`                        |
| `/purpledrop/temperature`      | JSON `{temperatures: [..], duty_cycles: [..]}` | `temperature_control`             |
| `/purpledrop/driven_electrodes`| JSON `{count, groups: [..]}`               | `electrode_state` (driven pins)       |
| `/purpledrop/undecodable`      | none (raw bytes)                           | records that are not a PurpleDropEvent |

plus a metadata record `autorec.segment` (the segment's facts: name, times, rules, open and
close reasons, firing counts, gaps, the rig, what the export met) and attachments: the sidecar
`NAME.json` and the rule file when known (given, or the journal's `start` line of the run).

Contracts:
- Every record of the log is in the file once: an `image` on `/camera/image` (CompressedImage
  `data` equal to the record's JPEG bytes, even a corrupt one: the viewer says it cannot show
  it), a record that does not parse on `/purpledrop/undecodable`, every other record on
  `/purpledrop/events` with its payload exactly the record's bytes. The plot topics are derived
  and extra.
- Times: each record's log time is its stream time by the recorder's own clock rule
  (`autorec.core.timeline.stream_times`, as for replay, `info` and video): its own timestamp,
  the carried-forward time for one without, a damaged timestamp replaced by the carried time, a
  step of the rig's clock back absorbed. Records before the first known time get that first time
  (or the sidecar's start if none comes). So log times never decrease. `publish_time` is the
  record's own timestamp where it has a usable one (the raw clock, for comparison).
- The file is chunked (1 MiB), zstd-compressed, CRC'd (chunks and data section), indexed, with
  a summary section; it is written as `OUT.partial` (`autorec.io.atomicfile.partial_file`:
  fresh, no link followed) and renamed to `OUT` only when complete: a crash or a failure never
  leaves a half file under the final name. Failures raise `McapExportError` (one line).
- A cut or corrupt log tail, damaged timestamps, corrupt JPEGs, a missing or broken sidecar:
  the export goes on and the metadata says what it met.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from autorec import __version__, events
from autorec.core.timeline import Timeline, stream_times
from autorec.dates import utc_iso
from autorec.io.atomicfile import partial_file
from autorec.io.logfile import LogReader
from autorec.outdir import JOURNAL_NAME, MCAP_SUFFIX, SIDECAR_SUFFIX, export_path
from autorec.readable import evidence_text
from autorec.report.night import read_journal, read_sidecar

log = logging.getLogger(__name__)

SUFFIX = MCAP_SUFFIX
PROFILE = ""  # no ROS profile: protobuf and JSON channels
FRAME_ID = "camera"
CHUNK_SIZE = 1 << 20
BOX_SECONDS = 2.0  # how long a motion firing's box stays on the picture
MAX_GRID_LINES = 64  # per direction, for the grid drawn without a layout
# Records held until the first time is known (at most this many, or bytes); beyond, they take the sidecar's start.
MAX_EARLY = 10_000
MAX_EARLY_BYTES = 64 << 20

EVENTS_TOPIC = "/purpledrop/events"
IMAGE_TOPIC = "/camera/image"
ANNOTATIONS_TOPIC = "/camera/annotations"
FIRINGS_TOPIC = "/autorec/firings"
GAPS_TOPIC = "/autorec/gaps"
UNDECODABLE_TOPIC = "/purpledrop/undecodable"
PLOT_TOPICS: dict[str, str] = {
    "group_capacitance": "/purpledrop/capacitance",
    "active_capacitance": "/purpledrop/active_capacitance",
    "hv_regulator": "/purpledrop/high_voltage",
    "temperature_control": "/purpledrop/temperature",
    "electrode_state": "/purpledrop/driven_electrodes",
}

_NUMBER = {"type": ["number", "null"]}
_NUMBERS = {"type": "array", "items": _NUMBER}
_PLOT_SCHEMAS: dict[str, tuple[str, dict[str, Any]]] = {
    # kind: (schema name, JSON Schema properties)
    "group_capacitance": (
        "autorec.GroupCapacitance",
        {"groups": {**_NUMBERS, "description": "capacitance per scan group"}, "raw": _NUMBERS},
    ),
    "active_capacitance": (
        "autorec.ActiveCapacitance",
        {"baseline": _NUMBER, "measurement": _NUMBER, "calibrated": _NUMBER},
    ),
    "hv_regulator": (
        "autorec.HighVoltage",
        {"voltage": {**_NUMBER, "description": "V"}, "target": {**_NUMBER, "description": "V"}},
    ),
    "temperature_control": (
        "autorec.Temperature",
        {"temperatures": {**_NUMBERS, "description": "degrees C"}, "duty_cycles": _NUMBERS},
    ),
    "electrode_state": (
        "autorec.DrivenElectrodes",
        {
            "count": {"type": "integer", "description": "electrodes driven, all drive groups"},
            "groups": {"type": "array", "items": {"type": "integer"}, "description": "driven per drive group"},
        },
    ),
}


class McapExportError(Exception):
    """An export failed; the message is one line naming the log."""


@dataclass
class McapResult:
    """What one export wrote and met."""

    log: Path
    output: Path
    records: int = 0
    events: int = 0
    images: int = 0
    corrupt_images: int = 0  # not a whole JPEG (kept all the same)
    undecodable: int = 0
    derived: int = 0  # plot, annotation, firing and gap messages
    clock_outliers: int = 0
    clock_steps: int = 0
    early: int = 0  # records before the first known time
    first_time: float | None = None
    last_time: float | None = None
    log_problem: str | None = None
    sidecar_problem: str | None = None
    rule_file: Path | None = None
    bytes: int = 0
    log_bytes: int = 0
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)

    def summary(self) -> str:
        parts = [f"{self.records} records ({self.images} frames)"]
        for n, what in (
            (self.undecodable, "undecodable"),
            (self.corrupt_images, "corrupt frame(s)"),
            (self.clock_outliers, "damaged timestamp(s)"),
        ):
            if n:
                parts.append(f"{n} {what}")
        if self.log_problem:
            parts.append(self.log_problem)
        ratio = f", {self.bytes / self.log_bytes:.2f}x the log" if self.log_bytes else ""
        return f"{', '.join(parts)}; {self.bytes:,} bytes{ratio} in {self.seconds:.1f} s"


def default_output(log_path: str | os.PathLike[str], out_dir: str | os.PathLike[str] | None = None) -> Path:
    """`NAME.mcap` beside `NAME.bin`, or in `out_dir`."""
    return Path(export_path(log_path, MCAP_SUFFIX, out_dir))


def is_up_to_date(log_path: str | os.PathLike[str], out_path: str | os.PathLike[str]) -> bool:
    """The MCAP exists and is not older than the log (nor than its sidecar, which feeds it too)."""
    try:
        made = os.stat(out_path).st_mtime
        if made < os.stat(log_path).st_mtime:
            return False
    except OSError:
        return False
    try:
        return made >= os.stat(Path(log_path).with_suffix(".json")).st_mtime
    except OSError:
        return True


# -- the writer ----------------------------------------------------------------------------------


def _compression():
    from mcap.writer import CompressionType

    try:
        import zstandard  # noqa: F401

        return CompressionType.ZSTD
    except ImportError:  # the extra installs it; a hand-made environment may lack it
        try:
            import lz4.frame  # noqa: F401

            return CompressionType.LZ4
        except ImportError:
            return CompressionType.NONE


def _ns(t: float) -> int:
    """Epoch seconds as MCAP's unsigned nanoseconds (clamped: the format has no time before 1970)."""
    return max(0, min(round(t * 1e9), (1 << 64) - 1))


def _num(v: float) -> float | None:
    """A float32 reading as JSON: 7 significant digits (what a float32 holds), None for NaN/inf."""
    return float(f"{v:.7g}") if math.isfinite(v) else None


def _plot_values(kind: str, event) -> dict[str, Any] | None:
    inner = getattr(event, kind)
    if kind == "group_capacitance":
        return {"groups": [_num(v) for v in inner.measurements], "raw": [_num(v) for v in inner.raw_measurements]}
    if kind == "active_capacitance":
        return {
            "baseline": _num(inner.baseline),
            "measurement": _num(inner.measurement),
            "calibrated": _num(inner.calibrated),
        }
    if kind == "hv_regulator":
        return {"voltage": _num(inner.voltage), "target": _num(inner.v_target_out)}
    if kind == "temperature_control":
        return {
            "temperatures": [_num(v) for v in inner.temperatures],
            "duty_cycles": [_num(v) for v in inner.duty_cycles],
        }
    if kind == "electrode_state":
        groups = [sum(g.electrodes) for g in inner.drive_groups]
        if not groups and len(inner.electrodes):
            groups = [sum(inner.electrodes)]  # legacy: one set of active pins
        return {"count": sum(groups), "groups": groups}
    return None


class _Channels:
    """The MCAP writer with our schemas and channels, registered when first used."""

    def __init__(self, writer) -> None:
        self.writer = writer
        self._ids: dict[str, int] = {}
        self.messages = 0

    def _protobuf(self, topic: str, message_class) -> int:
        from mcap_protobuf.schema import build_file_descriptor_set

        schema = self.writer.register_schema(
            name=message_class.DESCRIPTOR.full_name,
            encoding="protobuf",
            data=build_file_descriptor_set(message_class).SerializeToString(),
        )
        return self.writer.register_channel(topic=topic, message_encoding="protobuf", schema_id=schema)

    def channel(self, topic: str, make: Callable[[], int]) -> int:
        cid = self._ids.get(topic)
        if cid is None:
            cid = self._ids[topic] = make()
        return cid

    def protobuf(self, topic: str, message_class) -> int:
        return self.channel(topic, lambda: self._protobuf(topic, message_class))

    def json(self, topic: str, kind: str) -> int:
        def make() -> int:
            name, properties = _PLOT_SCHEMAS[kind]
            schema = {"title": name, "type": "object", "properties": properties}
            sid = self.writer.register_schema(name=name, encoding="jsonschema", data=json.dumps(schema).encode())
            return self.writer.register_channel(topic=topic, message_encoding="json", schema_id=sid)

        return self.channel(topic, make)

    def raw(self, topic: str) -> int:
        return self.channel(
            topic,
            lambda: self.writer.register_channel(topic=topic, message_encoding="application/octet-stream", schema_id=0),
        )

    def add(self, cid: int, log_time: int, data: bytes, publish_time: int | None = None) -> None:
        self.writer.add_message(
            channel_id=cid,
            log_time=log_time,
            publish_time=log_time if publish_time is None else publish_time,
            data=data,
            sequence=self.messages,
        )
        self.messages += 1


# -- derived messages: firings, gaps, annotations ------------------------------------------------


def _stamp(message, t: float) -> None:
    ns = _ns(t)
    message.timestamp.seconds, message.timestamp.nanos = divmod(ns, 1_000_000_000)


def _color(target, r: float, g: float, b: float, a: float = 1.0) -> None:
    target.r, target.g, target.b, target.a = r, g, b, a


def _finite(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


@dataclass
class _Box:
    """A motion firing's evidence box, shown from `start` to `end`."""

    start: float
    end: float
    rule: str
    bbox: tuple[int, int, int, int]  # x, y, w, h in full-frame pixels
    text: str


class _Overlay:
    """What `/camera/annotations` shows at a time: the electrode grid and the boxes still on."""

    def __init__(self) -> None:
        self.transform: tuple[float, ...] = ()
        self.size: tuple[int, int] = (0, 0)
        self.cells: dict[int, tuple[int, int]] = {}
        self.boxes: list[_Box] = []

    def grid_changed(self, kind: str, event) -> bool:
        """Take an `image_transform` or `electrode_layout`; True if the grid drawn changes."""
        if kind == "image_transform":
            it = event.image_transform
            transform = tuple(it.transform) if len(it.transform) == 9 else ()
            size = (it.image_width, it.image_height)
            if (transform, size) == (self.transform, self.size):
                return False
            self.transform, self.size = transform, size
            return True
        if kind == "electrode_layout":
            from autorec.triggers.missedmove import cells_from_layout

            try:
                cells = cells_from_layout(event.electrode_layout.layout)
            except ValueError:
                return False
            if cells == self.cells:
                return False
            self.cells = cells
            return bool(self.transform)
        return False

    def message(self, t: float) -> bytes:
        from foxglove_schemas_protobuf.ImageAnnotations_pb2 import ImageAnnotations
        from foxglove_schemas_protobuf.PointsAnnotation_pb2 import PointsAnnotation

        out = ImageAnnotations()
        if self.transform:
            self._grid(out, t, PointsAnnotation)
        for box in self.boxes:
            if box.start <= t < box.end:
                x, y, w, h = box.bbox
                p = out.points.add()
                _stamp(p, t)
                p.type = PointsAnnotation.LINE_LOOP
                for px, py in ((x, y), (x + w, y), (x + w, y + h), (x, y + h)):
                    q = p.points.add()
                    q.x, q.y = px, py
                _color(p.outline_color, 1.0, 0.2, 0.2)
                p.thickness = 3
                label = out.texts.add()
                _stamp(label, t)
                label.position.x, label.position.y = x, max(0, y - 4)
                label.text = box.text
                label.font_size = 14
                _color(label.text_color, 1, 1, 1)
                _color(label.background_color, 0.6, 0, 0, 0.7)
        return out.SerializeToString()

    def _point(self, gx: float, gy: float) -> tuple[float, float] | None:
        h = self.transform
        w = h[6] * gx + h[7] * gy + h[8]
        if abs(w) < 1e-12:
            return None
        return (h[0] * gx + h[1] * gy + h[2]) / w, (h[3] * gx + h[4] * gy + h[5]) / w

    def _grid(self, out, t: float, points_class) -> None:
        lines = out.points.add()
        _stamp(lines, t)
        lines.type = points_class.LINE_LIST
        # Without a layout the board's extent is unknown: the grid spans the picture, so it is fainter.
        _color(lines.outline_color, 0.3, 0.8, 1.0, 0.6 if self.cells else 0.3)
        lines.thickness = 1
        segments: list[tuple[tuple[float, float], tuple[float, float]]] = []
        if self.cells:
            for pin, (col, row) in self.cells.items():
                corners = [(col, row), (col + 1, row), (col + 1, row + 1), (col, row + 1)]
                segments += [(corners[i], corners[(i + 1) % 4]) for i in range(4)]
                centre = self._point(col + 0.5, row + 0.5)
                if centre is not None:
                    label = out.texts.add()
                    _stamp(label, t)
                    label.position.x, label.position.y = centre
                    label.text = str(pin)
                    label.font_size = 10
                    _color(label.text_color, 0.3, 0.8, 1.0, 0.8)
        else:
            extent = self._extent()
            if extent is None:
                return
            x0, x1, y0, y1 = extent
            segments += [((gx, y0), (gx, y1)) for gx in range(x0, x1 + 1)]
            segments += [((x0, gy), (x1, gy)) for gy in range(y0, y1 + 1)]
        for a, b in segments:
            pa, pb = self._point(*a), self._point(*b)
            if pa is None or pb is None:
                continue
            for px, py in (pa, pb):
                q = lines.points.add()
                q.x, q.y = px, py

    def _extent(self) -> tuple[int, int, int, int] | None:
        """Whole grid cells the picture shows (without a layout the board's size is unknown)."""
        import numpy as np

        w, h = self.size
        if w <= 0 or h <= 0:
            return None
        try:
            inverse = np.linalg.inv(np.array(self.transform, dtype=float).reshape(3, 3))
        except np.linalg.LinAlgError:
            return None
        corners = inverse @ np.array([[0, w, w, 0], [0, 0, h, h], [1, 1, 1, 1]], dtype=float)
        if np.any(np.abs(corners[2]) < 1e-12):
            return None
        gx, gy = corners[0] / corners[2], corners[1] / corners[2]
        if not (np.all(np.isfinite(gx)) and np.all(np.isfinite(gy))):
            return None
        x0, x1 = math.floor(gx.min()), math.ceil(gx.max())
        y0, y1 = math.floor(gy.min()), math.ceil(gy.max())
        if x1 - x0 > MAX_GRID_LINES or y1 - y0 > MAX_GRID_LINES:
            return None  # not a board-sized grid: a damaged or degenerate transform
        return x0, x1, y0, y1


def _log_message(t: float, level: int, name: str, text: str) -> bytes:
    from foxglove_schemas_protobuf.Log_pb2 import Log

    entry = Log(level=level, name=name, message=text)
    _stamp(entry, t)
    return entry.SerializeToString()


def _sidecar_notes(sidecar: dict[str, Any]) -> list[tuple[float, str, int, str, str]]:
    """(time, topic, level, name, text) for each firing and gap the sidecar lists, in time order."""
    from foxglove_schemas_protobuf.Log_pb2 import Log

    notes: list[tuple[float, str, int, str, str]] = []
    raw = sidecar.get("firings")
    firings = [f for f in raw if isinstance(f, dict)] if isinstance(raw, list) else []
    omitted = sidecar.get("firings_omitted")
    if isinstance(omitted, dict) and isinstance(omitted.get("last"), dict):
        firings.append({**omitted["last"], "_omitted": omitted.get("count")})
    for f in firings:
        t = _finite(f.get("time"))
        if t is None:
            continue
        rule = str(f.get("rule", "?"))
        evidence = f.get("evidence")
        text = f"{rule} fired: {evidence_text(rule, evidence)}"
        onset = _finite(f.get("onset"))
        if onset is not None and onset < t:
            text += f" (evidence since {t - onset:.2f} s before)"
        if f.get("_omitted"):
            text += f" [the last firing; {f['_omitted']} not listed in the sidecar]"
        near_miss = isinstance(evidence, dict) and evidence.get("near_miss") is True
        notes.append((t, FIRINGS_TOPIC, Log.DEBUG if near_miss else Log.INFO, rule, text))
    gaps = sidecar.get("gaps")
    for g in gaps if isinstance(gaps, list) else []:
        start = _finite(g.get("start")) if isinstance(g, dict) else None
        if start is None:
            continue
        end = _finite(g.get("end"))
        span = f"{end - start:.1f} s" if end is not None else "until the segment closed"
        lost = f", {g['records']} record(s) lost" if isinstance(g.get("records"), int) else ""
        notes.append((start, GAPS_TOPIC, Log.WARNING, "gap", f"no data for {span} ({g.get('reason', '?')}){lost}"))
    notes.sort(key=lambda n: n[0])
    return notes


def _motion_boxes(sidecar: dict[str, Any]) -> list[_Box]:
    out: list[_Box] = []
    raw = sidecar.get("firings")
    for f in raw if isinstance(raw, list) else []:
        if not isinstance(f, dict) or not isinstance(f.get("evidence"), dict):
            continue
        bbox, t = f["evidence"].get("bbox"), _finite(f.get("time"))
        if t is None or not (isinstance(bbox, list) and len(bbox) == 4 and all(type(v) is int for v in bbox)):
            continue
        if bbox[2] <= 0 or bbox[3] <= 0:
            continue
        rule = str(f.get("rule", "?"))
        score = _finite(f["evidence"].get("score"))
        text = rule + (f" {score * 100:.2g} %" if score is not None else "")
        out.append(_Box(t, t + BOX_SECONDS, rule, (bbox[0], bbox[1], bbox[2], bbox[3]), text))
    out.sort(key=lambda b: b.start)
    return out


# -- the export ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Rec:
    payload: bytes
    kind: str | None  # None: not a PurpleDropEvent
    event: Any
    timestamp: float | None


def _records(reader: LogReader, result: McapResult) -> Iterator[tuple[float | None, _Rec]]:
    for record in reader.records():
        result.records += 1
        try:
            event = events.decode(record.payload)
        except events.DecodeError:
            yield None, _Rec(record.payload, None, None, None)
            continue
        ts = events.timestamp(event)
        yield ts, _Rec(record.payload, events.kind(event), event, ts)
    if reader.truncated is not None:
        result.log_problem = f"log cut off in the record at byte {reader.truncated.offset}"
    elif reader.corrupt is not None:
        result.log_problem = f"log unreadable from byte {reader.corrupt.offset}: {reader.corrupt.reason}"


class _Exporter:
    """Turns the records of one log, with times, into messages; see the module docstring."""

    def __init__(self, channels: _Channels, result: McapResult, sidecar: dict[str, Any] | None, progress) -> None:
        from foxglove_schemas_protobuf.CompressedImage_pb2 import CompressedImage

        from autorec.proto import PurpleDropEvent

        self.ch = channels
        self.result = result
        self.progress = progress
        self.events_id = channels.protobuf(EVENTS_TOPIC, PurpleDropEvent)
        self.image_class = CompressedImage
        self.overlay = _Overlay()
        self.notes = _sidecar_notes(sidecar or {})
        self.overlay.boxes = _motion_boxes(sidecar or {})
        # When the annotations change because a box appears or goes: (time, None)
        self._box_times = sorted({b.start for b in self.overlay.boxes} | {b.end for b in self.overlay.boxes})
        self.device: dict[str, str] = {}

    def _derived_until(self, t: float) -> None:
        """Write the firings, gaps and box changes due up to time `t` (so the file stays in time order)."""
        from foxglove_schemas_protobuf.ImageAnnotations_pb2 import ImageAnnotations
        from foxglove_schemas_protobuf.Log_pb2 import Log

        while self.notes and self.notes[0][0] <= t:
            nt, topic, level, name, text = self.notes.pop(0)
            self.ch.add(self.ch.protobuf(topic, Log), _ns(nt), _log_message(nt, level, name, text))
            self.result.derived += 1
        while self._box_times and self._box_times[0] <= t:
            bt = self._box_times.pop(0)
            cid = self.ch.protobuf(ANNOTATIONS_TOPIC, ImageAnnotations)
            self.ch.add(cid, _ns(bt), self.overlay.message(bt))
            self.result.derived += 1

    def record(self, t: float, rec: _Rec) -> None:
        from foxglove_schemas_protobuf.ImageAnnotations_pb2 import ImageAnnotations

        self._derived_until(t)
        r = self.result
        if r.first_time is None:
            r.first_time = t
        r.last_time = t
        ns = _ns(t)
        ts = rec.timestamp
        publish = _ns(ts) if ts is not None and 0 <= ts < 1.8e10 else ns
        if self.progress is not None:
            self.progress(4 + len(rec.payload))
        if rec.kind is None:
            r.undecodable += 1
            self.ch.add(self.ch.raw(UNDECODABLE_TOPIC), ns, rec.payload, publish)
            return
        if rec.kind == "image":
            r.images += 1
            self._image(ns, publish, rec.event.image.image_data)
            return
        r.events += 1
        self.ch.add(self.events_id, ns, rec.payload, publish)
        if rec.kind == "device_info":
            di = rec.event.device_info
            self.device = {"serial_number": di.serial_number, "software_version": di.software_version}
        topic = PLOT_TOPICS.get(rec.kind)
        if topic is not None:
            values = _plot_values(rec.kind, rec.event)
            if values is not None:
                data = json.dumps(values, separators=(",", ":")).encode()
                self.ch.add(self.ch.json(topic, rec.kind), ns, data, publish)
                r.derived += 1
        elif self.overlay.grid_changed(rec.kind, rec.event):
            self.ch.add(self.ch.protobuf(ANNOTATIONS_TOPIC, ImageAnnotations), ns, self.overlay.message(t))
            r.derived += 1

    def _image(self, ns: int, publish: int, jpeg: bytes) -> None:
        from autorec.frames.jpeg import jpeg_complete, jpeg_size

        if jpeg_size(jpeg) is None or not jpeg_complete(jpeg):
            self.result.corrupt_images += 1  # kept as it is: the viewer shows what it can
        msg = self.image_class(frame_id=FRAME_ID, format="jpeg", data=jpeg)
        msg.timestamp.seconds, msg.timestamp.nanos = divmod(ns, 1_000_000_000)
        self.ch.add(self.ch.protobuf(IMAGE_TOPIC, self.image_class), ns, msg.SerializeToString(), publish)

    def finish(self) -> None:
        self._derived_until(math.inf)


def _fallback_time(sidecar: dict[str, Any] | None) -> float:
    for key in ("start", "segment_start"):
        t = _finite((sidecar or {}).get(key))
        if t is not None:
            return t
    return 0.0


def _metadata(result: McapResult, sidecar: dict[str, Any] | None, device: dict[str, str], run: dict[str, Any]):
    side = sidecar or {}

    def text(value: Any) -> str:
        if isinstance(value, (list, tuple)):
            return ", ".join(map(str, value))
        if isinstance(value, dict):
            return json.dumps(value, separators=(",", ":"), default=str)
        return "" if value is None else str(value)

    facts: dict[str, Any] = {"segment": side.get("name") or result.log.stem, "log": result.log.name}
    for key in ("start", "end", "segment_start", "segment_end"):
        t = _finite(side.get(key))
        if t is not None:
            facts[key] = f"{utc_iso(t, digits=6)} ({t:.6f})"
    for key in ("open_reason", "close_reason", "rules", "firing_counts", "part", "records", "recovered", "origins"):
        if key in side:
            facts[key] = side[key]
    facts["gaps"] = len(side["gaps"]) if isinstance(side.get("gaps"), list) else None
    if isinstance(side.get("dropped"), dict):
        facts["dropped_records"] = side["dropped"].get("records")
    facts["rig_serial_number"] = device.get("serial_number")
    facts["rig_software_version"] = device.get("software_version")
    for key in ("host", "source", "mode"):
        if run.get(key):
            facts[f"run_{key}"] = run[key]
    facts["rule_file"] = str(result.rule_file) if result.rule_file else None
    facts["exported_by"] = f"autorec {__version__}"
    facts["export_first_time"] = utc_iso(result.first_time, digits=6) if result.first_time is not None else None
    facts["export_last_time"] = utc_iso(result.last_time, digits=6) if result.last_time is not None else None
    for key in ("records", "images", "corrupt_images", "undecodable", "clock_outliers", "clock_steps", "early"):
        facts[f"export_{key}"] = getattr(result, key)
    facts["export_log_problem"] = result.log_problem
    facts["export_sidecar_problem"] = result.sidecar_problem
    facts["export_notes"] = result.notes
    return {k: text(v) for k, v in facts.items() if v is not None and v != [] and v != ""}


def _run_of(log_path: Path, segment_start: float | None) -> dict[str, Any]:
    """The journal's `start` line of the run that recorded the segment: the last one before its
    start, or the only one ({} if unknown)."""
    entries, _ = read_journal(log_path.parent / JOURNAL_NAME)
    starts = [e for e in entries if e.get("event") == "start"]
    before = [e for e in starts if segment_start is not None and e["time"] <= segment_start + 1.0]
    if before:
        return before[-1]
    return starts[0] if len(starts) == 1 else {}


def export(
    log_path: str | os.PathLike[str],
    out_path: str | os.PathLike[str] | None = None,
    *,
    rule_file: str | os.PathLike[str] | None = None,
    progress: Callable[[int], None] | None = None,
    fsync: bool = True,
) -> McapResult:
    """Export one segment log to MCAP (see the module docstring). `progress(n)` gets the log bytes
    handled since its last call. Raises `McapExportError` (one line)."""
    from mcap.writer import Writer

    began = time.perf_counter()
    log_file = Path(log_path)
    out = Path(out_path) if out_path is not None else default_output(log_file)
    result = McapResult(log=log_file, output=out)
    if not log_file.is_file():
        raise McapExportError(f"{log_file}: no such log file")
    result.log_bytes = log_file.stat().st_size
    sidecar, problem = read_sidecar(log_file.with_suffix(SIDECAR_SUFFIX))
    if problem is not None and not problem.endswith("missing"):
        result.sidecar_problem = problem
        log.warning("%s: %s; exporting without it", log_file.with_suffix(".json"), problem)
    start = _finite((sidecar or {}).get("segment_start"))
    run = _run_of(log_file, start)
    if rule_file is None and isinstance(run.get("rules"), str):
        rule_file = run["rules"]
    rules_data = _read_rule_file(Path(rule_file), run, result) if rule_file is not None else None

    timeline: Timeline = Timeline()
    try:
        with partial_file(out, fsync=fsync) as f:
            writer = Writer(f, chunk_size=CHUNK_SIZE, compression=_compression(), enable_data_crcs=True)
            writer.start(profile=PROFILE, library=f"autorec {__version__}")
            channels = _Channels(writer)
            exporter = _Exporter(channels, result, sidecar, progress)
            early: list[_Rec] = []
            early_bytes = 0
            for t, rec in stream_times(_records(LogReader(log_file), result), timeline):
                if t is None:
                    result.early += 1
                    early.append(rec)
                    early_bytes += len(rec.payload)
                    if len(early) < MAX_EARLY and early_bytes < MAX_EARLY_BYTES:
                        continue
                    t = _fallback_time(sidecar)
                    result.notes.append(f"{len(early)} records before any timestamp: placed at the segment's start")
                    for held in early:
                        exporter.record(t, held)
                    early.clear()
                    early_bytes = 0
                    continue
                for held in early:  # the records before the first time get that time
                    exporter.record(t, held)
                early.clear()
                early_bytes = 0
                exporter.record(t, rec)
            if early:  # a log without any usable timestamp
                t = _fallback_time(sidecar)
                result.notes.append("no record has a usable timestamp: all placed at the segment's start")
                for held in early:
                    exporter.record(t, held)
            exporter.finish()
            result.clock_outliers, result.clock_steps = timeline.outliers, timeline.steps
            writer.add_metadata("autorec.segment", _metadata(result, sidecar, exporter.device, run))
            now = time.time_ns()
            side_path = log_file.with_suffix(".json")
            try:
                side_bytes = side_path.read_bytes() if sidecar is not None else None
            except OSError as exc:  # removed since it was read (retention): the metadata has its facts
                side_bytes = None
                log.warning("%s: not attached: %s", side_path, exc.strerror or exc)
            if side_bytes is not None:
                writer.add_attachment(now, _ns(start or 0.0), side_path.name, "application/json", side_bytes)
            if rules_data is not None and result.rule_file is not None:
                writer.add_attachment(now, _ns(start or 0.0), result.rule_file.name, "application/yaml", rules_data)
            writer.finish()
    except OSError as exc:
        what = "cannot read it" if exc.filename and Path(exc.filename) == log_file else f"cannot write {out}"
        raise McapExportError(f"{log_file}: {what}: {exc.strerror or exc}") from None
    result.bytes = out.stat().st_size
    result.seconds = time.perf_counter() - began
    return result


def _read_rule_file(path: Path, run: dict[str, Any], result: McapResult) -> bytes | None:
    """The rule file's bytes (at most 1 MiB) for the attachment; a note if it changed since the run."""
    try:
        with open(path, "rb") as f:
            data = f.read((1 << 20) + 1)
    except OSError as exc:
        result.notes.append(f"rule file {path} not attached: {exc.strerror or exc}")
        return None
    if len(data) > 1 << 20:
        result.notes.append(f"rule file {path} not attached: larger than 1 MiB")
        return None
    recorded = run.get("rules_sha256")
    if isinstance(recorded, str) and recorded != hashlib.sha256(data).hexdigest():
        result.notes.append(
            f"rule file {path} changed since the run that recorded this segment (attached as it is now)"
        )
    result.rule_file = path
    return data
