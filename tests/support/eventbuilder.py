"""The one place tests build PurpleDrop events (`autorec.proto.PurpleDropEvent`, wire facts in protocol.md).

One function per event kind (the kind names are `autorec.events.KINDS`), each returning the event.
They take the time `t` first, except `electrode_state` and `drive_group` (keyword `t`, default None:
pdserver sends them without a timestamp) and `device_info` (no timestamp field at all). `t=None`
leaves the timestamp unset while the kind is still selected, so even an event with every field at
its default serializes as that kind.


- `event(kind, t, **fields)`: any kind with scalar or list fields set by name, for short sequences.
- `payload(kind, t, value)`: a serialized event of any kind whose bytes differ with `value` (segmenter,
  writer and pipeline tests that only need distinct records of a kind).
- `message(event_or_payload, ...)`: an `autorec.core.streamitems.Message` as a source hands it on.
- `raw_time(event, seconds, nanos)`: Timestamp fields set as given, for damaged clocks that no float
  time can spell (2**63 - 1 seconds, nanos out of range).

Serialize with the protobuf method, `event.SerializeToString()`: the bytes are what pdserver sends.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Mapping, Sequence

from autorec import events
from autorec.core.streamitems import Message
from autorec.proto import PurpleDropEvent

PINS = 128  # electrode pins of a board (the length of pdserver's electrode lists)


def _select(kind: str, t: float | None) -> tuple[PurpleDropEvent, object]:
    """A new event with `kind` selected (stamped `t` unless None) and its inner message to fill in.

    The stamp goes on first: protobuf writes fields in number order whatever order they are set in."""
    ev = PurpleDropEvent()
    inner = getattr(ev, kind)
    inner.SetInParent()
    if t is not None:
        events.set_timestamp(ev, t)
    return ev, inner


def electrode_layout(t: float | None, layout: str) -> PurpleDropEvent:
    """An electrode_layout carrying `layout` (upstream's board JSON, or anything a test wants to feed)."""
    ev, inner = _select("electrode_layout", t)
    inner.layout = layout
    return ev


def electrode_state(
    drive: Iterable[int] = (), scan: Iterable[int] = (), legacy: Iterable[int] | None = None, t: float | None = None
) -> PurpleDropEvent:
    """An electrode_state shaped like pdserver's: 2 drive + 5 scan groups of 128 bools, no timestamp.

    `drive` and `scan` are the pins of the first drive and first scan group. `legacy` instead fills the
    old single `electrodes` list (no groups), as older pdserver versions sent it."""
    ev, es = _select("electrode_state", t)
    drive, scan = set(drive), set(scan)
    if legacy is not None:
        legacy = set(legacy)
        es.electrodes.extend(i in legacy for i in range(PINS))
        return ev
    for g in range(2):
        group = es.drive_groups.add()
        group.electrodes.extend((i in drive) if g == 0 else False for i in range(PINS))
        group.setting = 255
    for g in range(5):
        group = es.scan_groups.add()
        group.electrodes.extend((i in scan) if g == 0 else False for i in range(PINS))
    return ev


def drive_group(electrodes: Iterable[bool], t: float | None = None) -> PurpleDropEvent:
    """An electrode_state with one drive group holding exactly `electrodes` (a short or odd board)."""
    ev, es = _select("electrode_state", t)
    es.drive_groups.add().electrodes.extend(electrodes)
    return ev


def image(t: float | None, jpeg: bytes) -> PurpleDropEvent:
    """A camera frame: `jpeg` as the image's bytes (any bytes: the event does not check them)."""
    ev, inner = _select("image", t)
    inner.image_data = jpeg
    return ev


def image_transform(
    t: float | None, width: int = 0, height: int = 0, transform: Sequence[float] = ()
) -> PurpleDropEvent:
    """The transform pdserver sends before each frame: image size (0: unset) and the 3x3 homography,
    row-major (empty: pdcam has not found the board)."""
    ev, inner = _select("image_transform", t)
    inner.transform.extend(transform)
    inner.image_width = width
    inner.image_height = height
    return ev


def settings(t: float | None, frequency: float) -> PurpleDropEvent:
    ev, inner = _select("settings", t)
    inner.frequency = frequency
    return ev


def scan(
    t: float | None,
    caps: Mapping[int, float],
    base: float = 0.0,
    present: Iterable[int] = (),
    noise: Callable[[int], float] | None = None,
) -> PurpleDropEvent:
    """A scan_capacitance of 128 pins at `base` (plus `noise(pin)` if given), `caps` overriding pins.

    Pins in `caps` report raw 1000 (a drop's reading upstream), the others 0; `present` sets drop_present."""
    present = set(present)
    values = [caps.get(pin, base + (noise(pin) if noise else 0.0)) for pin in range(PINS)]
    return scan_pins(t, values, [1000.0 if pin in caps else 0.0 for pin in range(PINS)], present)


def scan_pins(
    t: float | None, capacitance: Sequence[float], raw: Sequence[float] = (), present: Collection[int] = ()
) -> PurpleDropEvent:
    """A scan_capacitance with one measurement per entry of `capacitance` (raw values alongside, 0 if
    `raw` is shorter; `present`: the pins with drop_present set)."""
    ev, sc = _select("scan_capacitance", t)
    for pin, value in enumerate(capacitance):
        m = sc.measurements.add()
        m.capacitance = value
        m.raw = raw[pin] if pin < len(raw) else 0.0
        m.drop_present = pin in present
    return ev


def active_capacitance(
    t: float | None, measurement: float, baseline: float = 0.0, calibrated: float = 0.0
) -> PurpleDropEvent:
    ev, inner = _select("active_capacitance", t)
    inner.baseline = baseline
    inner.measurement = measurement
    inner.calibrated = calibrated
    return ev


def hv(t: float | None, voltage: float, target: float = 0.0) -> PurpleDropEvent:
    """An hv_regulator reading: the high voltage and the regulator's target output."""
    ev, inner = _select("hv_regulator", t)
    inner.voltage = voltage
    inner.v_target_out = target
    return ev


def temperature(t: float | None, temperatures: Iterable[float], duty_cycles: Iterable[float] = ()) -> PurpleDropEvent:
    """A temperature_control reading: one temperature (and heater duty cycle) per channel."""
    ev, inner = _select("temperature_control", t)
    inner.temperatures.extend(temperatures)
    inner.duty_cycles.extend(duty_cycles)
    return ev


def device_info(connected: bool = True, serial: str = "", version: str = "") -> PurpleDropEvent:
    """A device_info as pdserver sends on (dis)connect: no timestamp field at all."""
    ev, inner = _select("device_info", None)
    inner.connected = connected
    inner.serial_number = serial
    inner.software_version = version
    return ev


def group_capacitance(t: float | None, measurements: Iterable[float], raw: Iterable[float] = ()) -> PurpleDropEvent:
    ev, inner = _select("group_capacitance", t)
    inner.measurements.extend(measurements)
    inner.raw_measurements.extend(raw)
    return ev


def duty_cycles(t: float | None, values: Iterable[int]) -> PurpleDropEvent:
    """A duty_cycle_updated: one duty cycle per electrode pin."""
    ev, inner = _select("duty_cycle_updated", t)
    inner.duty_cycles.extend(values)
    return ev


def event(kind: str, t: float | None = None, **fields: object) -> PurpleDropEvent:
    """An event of any `kind` with its scalar fields set and its repeated fields extended by name:
    `event("hv_regulator", 5.0, voltage=90.0)`, `event("device_info", connected=True)`."""
    ev, inner = _select(kind, t)
    for key, value in fields.items():
        if isinstance(value, list):
            getattr(inner, key).extend(value)
        else:
            setattr(inner, key, value)
    return ev


def raw_time(ev: PurpleDropEvent, seconds: int, nanos: int = 0) -> PurpleDropEvent:
    """`ev` with its Timestamp fields set exactly as given (any int64 / int32: what a damaged rig sends).
    Returns `ev` (changed in place)."""
    ts = getattr(ev, ev.WhichOneof("msg")).timestamp
    ts.seconds = seconds
    ts.nanos = nanos
    return ev


def payload(kind: str, t: float | None = None, value: float = 0.0) -> bytes:
    """A serialized event of `kind` stamped `t` (None: no timestamp); `value` makes payloads of a kind distinct.

    Small on purpose (an electrode_state of 8 pins, a 262-byte image): what a segmenter or writer test
    needs is records of a kind, in order, that can be told apart."""
    builders: dict[str, Callable[[], PurpleDropEvent]] = {
        "hv_regulator": lambda: hv(t, value),
        "scan_capacitance": lambda: scan_pins(t, [value]),
        "group_capacitance": lambda: group_capacitance(t, [value]),
        "electrode_state": lambda: drive_group([i == int(value) for i in range(8)], t),
        "image": lambda: image(t, b"\xff\xd8" + int(value).to_bytes(4, "little") * 64 + b"\xff\xd9"),
        "image_transform": lambda: image_transform(t, 1024, int(value) or 768),
        "device_info": lambda: device_info(serial=f"SN{int(value)}"),
        "electrode_layout": lambda: electrode_layout(t, f"layout{value}"),
        "settings": lambda: settings(t, value),
        "temperature_control": lambda: temperature(t, [value]),
        "active_capacitance": lambda: active_capacitance(t, value),
        "duty_cycle_updated": lambda: duty_cycles(t, [int(value)]),
    }
    if kind not in builders:
        raise ValueError(kind)
    return builders[kind]().SerializeToString()


def message(item: PurpleDropEvent | bytes, received: float = 0.0, monotonic: float = 0.0) -> Message:
    """A `Message` as a source hands it to the pipeline, its kind read from the event.

    Given an event, the message carries it decoded (as the websocket and log-file sources do); given
    bytes, it carries only the payload and leaves the decoding to the pipeline."""
    if isinstance(item, bytes):
        return Message(item, received, monotonic, events.peek_kind(item))
    return Message(item.SerializeToString(), received, monotonic, events.kind(item), event=item)
