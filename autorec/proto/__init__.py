"""The PurpleDrop protobuf schema (`purpledrop.proto`) and its generated module.

`purpledrop_pb2.py` is generated and committed so that installing autorec never
needs protoc. Regenerate it after editing the `.proto` with
`python -m autorec.proto.build` (needs the `dev` extra: grpcio-tools).
"""

from autorec.proto import purpledrop_pb2

PurpleDropEvent = purpledrop_pb2.PurpleDropEvent

__all__ = ["PurpleDropEvent", "purpledrop_pb2"]
