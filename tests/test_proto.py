"""The committed generated module must describe exactly what purpledrop.proto says."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
from google.protobuf import descriptor_pb2

from autorec import events
from autorec.proto import PurpleDropEvent, purpledrop_pb2
from tests.support.eventbuilder import device_info, electrode_state

PROTO_DIR = Path(purpledrop_pb2.__file__).parent


def _file_proto(module) -> descriptor_pb2.FileDescriptorProto:
    fdp = descriptor_pb2.FileDescriptorProto()
    module.DESCRIPTOR.CopyToProto(fdp)
    return _without_json_names(fdp)


def _without_json_names(fdp: descriptor_pb2.FileDescriptorProto) -> descriptor_pb2.FileDescriptorProto:
    # protoc fills in json_name in descriptor sets; the runtime copy leaves it
    # out. It is derived from the field name, so it carries no information.
    def strip(messages) -> None:
        for m in messages:
            for f in m.field:
                f.ClearField("json_name")
            strip(m.nested_type)

    strip(fdp.message_type)
    return fdp


def test_committed_module_matches_proto(tmp_path: Path) -> None:
    protoc = pytest.importorskip("grpc_tools.protoc")
    rc = protoc.main(["protoc", f"-I{PROTO_DIR}", f"--descriptor_set_out={tmp_path / 'set.pb'}", "purpledrop.proto"])
    assert rc == 0
    fresh = descriptor_pb2.FileDescriptorSet()
    fresh.ParseFromString((tmp_path / "set.pb").read_bytes())
    assert len(fresh.file) == 1
    assert _without_json_names(fresh.file[0]) == _file_proto(purpledrop_pb2)


def test_wire_numbers_match_protocol_notes() -> None:
    oneof = PurpleDropEvent.DESCRIPTOR.oneofs_by_name["msg"]
    numbers = {f.name: f.number for f in oneof.fields}
    assert numbers == events.NUMBER_BY_KIND
    assert PurpleDropEvent.DESCRIPTOR.full_name == "protobuf.PurpleDropEvent"
    active = purpledrop_pb2.ActiveCapacitance.DESCRIPTOR.fields_by_name
    assert (active["baseline"].number, active["measurement"].number, active["calibrated"].number) == (3, 4, 5)
    assert purpledrop_pb2.HvRegulator.DESCRIPTOR.fields_by_name["timestamp"].number == 3


def test_kind_and_timestamp_helpers() -> None:
    ev = device_info(connected=True)
    assert events.kind(ev) == "device_info"
    assert events.timestamp(ev) is None  # no timestamp field: never raises
    assert events.set_timestamp(ev, 5.0) is False

    ev = electrode_state(drive=())
    assert events.timestamp(ev) is None  # pdserver leaves it unset
    assert events.set_timestamp(ev, 1700000000.25)
    assert events.timestamp(ev) == pytest.approx(1700000000.25)

    payload = ev.SerializeToString()
    assert events.peek_kind(payload) == "electrode_state"
    assert events.kind(events.decode(payload)) == "electrode_state"


@pytest.mark.parametrize("payload", [b"", b"\xff\xff\xff", b"hello world", b"\x08\x01"])
def test_decode_rejects_non_events(payload: bytes) -> None:
    with pytest.raises(events.DecodeError):
        events.decode(payload)


def test_regeneration_script_imports() -> None:
    spec = importlib.util.find_spec("autorec.proto.build")
    assert spec is not None and "autorec.proto.build" not in sys.builtin_module_names
