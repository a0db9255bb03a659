"""Upstream's log reader, re-implemented for tests: do our logs read in upstream's tools?

`upstream_read(path)` follows upstream EventReader's logic: a length-prefix loop
that stops silently at a short read and parses every record with
`ParseFromString` (which raises on a record upstream could not read).
"""

from __future__ import annotations

import struct
from pathlib import Path

from autorec.proto import PurpleDropEvent


def upstream_read(path: Path) -> list[bytes]:
    """The payloads upstream's reader gets from `path`, in order."""
    out = []
    with open(path, "rb") as f:
        while True:
            header = f.read(4)
            if len(header) < 4:
                return out
            (n,) = struct.unpack("I", header)
            data = f.read(n)
            if len(data) < n:
                return out
            PurpleDropEvent().ParseFromString(data)
            out.append(data)
