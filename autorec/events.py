"""Decoding and inspecting `PurpleDropEvent` messages.

Contracts:
- `decode(payload)` returns a parsed event or raises `DecodeError`; a payload
  that parses but carries no oneof field is rejected too (an empty or garbage
  frame can parse as an empty message).
- `kind(event)` is the name of the oneof field that is set.
- `timestamp(event)` is float epoch seconds, or None when the kind has no
  timestamp field (`device_info`) or the sender left it unset
  (`electrode_state` from pdserver), or outside years 1-9999 (damaged). It
  never raises.
- `peek_kind(payload)` reads the kind from the first bytes without parsing,
  for fast scans of large logs.
"""

from __future__ import annotations

from google.protobuf.message import DecodeError as _ProtoDecodeError

from autorec.proto import PurpleDropEvent
from autorec.proto.purpledrop_pb2 import Timestamp

# Oneof field names in field-number order (field number = index + 1).
KINDS: tuple[str, ...] = (
    "electrode_layout",
    "electrode_state",
    "image",
    "image_transform",
    "settings",
    "scan_capacitance",
    "active_capacitance",
    "hv_regulator",
    "temperature_control",
    "device_info",
    "group_capacitance",
    "duty_cycle_updated",
)
KIND_BY_NUMBER: dict[int, str] = {i + 1: k for i, k in enumerate(KINDS)}
NUMBER_BY_KIND: dict[str, int] = {k: i + 1 for i, k in enumerate(KINDS)}

# Timestamps outside years 1-9999 (what datetime can show) are treated as unset.
MIN_TIMESTAMP = -62_135_596_800.0
MAX_TIMESTAMP = 253_402_300_800.0

# Kinds whose message type has a `timestamp` field.
_TIMESTAMPED = frozenset(k for k in KINDS if k != "device_info")


class DecodeError(ValueError):
    """A payload is not a valid `PurpleDropEvent`."""


def decode(payload: bytes) -> PurpleDropEvent:
    event = PurpleDropEvent()
    try:
        event.ParseFromString(payload)
    except (_ProtoDecodeError, RuntimeError, ValueError) as exc:
        raise DecodeError(f"not a PurpleDropEvent: {exc}") from None
    if event.WhichOneof("msg") is None:
        raise DecodeError("not a PurpleDropEvent: no event field set")
    return event


def is_telemetry_kind(kind: str | None) -> bool:
    """Whether messages of `kind` go to the daily telemetry track (everything but camera frames)."""
    return kind is not None and kind != "image"


def kind(event: PurpleDropEvent) -> str | None:
    return event.WhichOneof("msg")


def timestamp(event: PurpleDropEvent) -> float | None:
    k = event.WhichOneof("msg")
    if k not in _TIMESTAMPED:
        return None
    inner = getattr(event, k)
    if not inner.HasField("timestamp"):
        return None
    ts = inner.timestamp
    t = ts.seconds + ts.nanos * 1e-9
    if not MIN_TIMESTAMP <= t < MAX_TIMESTAMP:
        return None  # damaged (e.g. 2**62): no calendar shows it, and it made every date format raise
    return t


def set_timestamp(event: PurpleDropEvent, t: float) -> bool:
    """Stamp `event` with time `t` in place; False if its kind has no timestamp field."""
    k = event.WhichOneof("msg")
    if k not in _TIMESTAMPED:
        return False
    seconds = int(t // 1)
    nanos = round((t - seconds) * 1e9)
    if nanos >= 1_000_000_000:
        seconds, nanos = seconds + 1, nanos - 1_000_000_000
    ts = getattr(event, k).timestamp
    ts.seconds = seconds
    ts.nanos = nanos
    return True


def peek_kind(payload: bytes | memoryview) -> str | None:
    """The kind named by the first field tag of `payload`, or None.

    A serialized `PurpleDropEvent` starts with the tag of its oneof field
    (wire type 2, length-delimited). Field numbers 1-15 fit in one tag byte.
    """
    if not payload:
        return None
    tag = payload[0]
    if tag & 0x80:  # multi-byte tag: not one of ours
        return None
    if tag & 0x07 != 2:
        return None
    return KIND_BY_NUMBER.get(tag >> 3)


# -- a record's timestamp from its first bytes, without decoding it (info, thumbnails) --------------

# Field number of `timestamp` inside each kind's message (see protocol.md).
_TS_FIELD = {"hv_regulator": 3, "temperature_control": 3, "device_info": None}

ABSENT = "absent"  # the record certainly has no timestamp
UNKNOWN = "unknown"  # the head is too short to tell


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        b = buf[pos]  # IndexError past the end: caller treats as "head too short"
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise ValueError("varint too long")


def head_timestamp(kind: str, head: bytes) -> float | str:
    """The timestamp in the first bytes of a record of `kind`, or ABSENT, or UNKNOWN.

    Relies on protobuf writing fields in field-number order (all official
    implementations do): once a field numbered above `timestamp` shows up,
    the timestamp is not there.
    """
    ts_field = _TS_FIELD.get(kind, 1)
    if ts_field is None:
        return ABSENT
    try:
        _, pos = _varint(head, 1)  # skip the oneof tag byte and the inner message's length
        while pos < len(head):
            key, pos = _varint(head, pos)
            number, wire = key >> 3, key & 7
            if number == ts_field and wire == 2:
                length, pos = _varint(head, pos)
                end = pos + length
                if end > len(head):
                    return UNKNOWN
                return _parse_timestamp(head, pos, end)
            if number > ts_field:
                return ABSENT
            if wire == 0:
                _, pos = _varint(head, pos)
            elif wire == 1:
                pos += 8
            elif wire == 2:
                length, pos = _varint(head, pos)
                pos += length
            elif wire == 5:
                pos += 4
            else:
                return UNKNOWN
    except (IndexError, ValueError):
        return UNKNOWN
    return UNKNOWN


def _parse_timestamp(buf: bytes, pos: int, end: int) -> float | str:
    # The C parser is 4x faster than walking the two varints in Python.
    try:
        ts = Timestamp.FromString(buf[pos:end])
    except _ProtoDecodeError:
        return UNKNOWN
    return ts.seconds + ts.nanos * 1e-9
