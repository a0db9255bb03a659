"""Hand-made PurpleDrop events for segmenter, writer and pipeline tests."""

from __future__ import annotations

from autorec import events
from autorec.proto import PurpleDropEvent


def payload(kind: str, t: float | None = None, value: float = 0.0) -> bytes:
    """A serialized event of `kind` stamped `t` (None: no timestamp); `value` makes payloads distinct."""
    ev = PurpleDropEvent()
    inner = getattr(ev, kind)
    if kind == "hv_regulator":
        inner.voltage = value
    elif kind == "scan_capacitance":
        m = inner.measurements.add()
        m.capacitance = value
    elif kind == "group_capacitance":
        inner.measurements.append(value)
    elif kind == "electrode_state":
        g = inner.drive_groups.add()
        g.electrodes.extend([i == int(value) for i in range(8)])
    elif kind == "image":
        inner.image_data = b"\xff\xd8" + int(value).to_bytes(4, "little") * 64 + b"\xff\xd9"
    elif kind == "image_transform":
        inner.image_width = 1024
        inner.image_height = int(value) or 768
    elif kind == "device_info":
        inner.connected = True
        inner.serial_number = f"SN{int(value)}"
    elif kind == "electrode_layout":
        inner.layout = f"layout{value}"
    elif kind == "settings":
        inner.frequency = value
    elif kind == "temperature_control":
        inner.temperatures.append(value)
    elif kind == "active_capacitance":
        inner.measurement = value
    elif kind == "duty_cycle_updated":
        inner.duty_cycles.append(int(value))
    else:
        raise ValueError(kind)
    if kind == "device_info":
        inner.SetInParent()
    elif t is not None:
        events.set_timestamp(ev, t)
    else:
        inner.SetInParent()
    return ev.SerializeToString()
