"""The rig's name: how a recorder is told apart from the lab's other rigs (MQTT topics, metrics).

`run --rig NAME` gives it; by default it is this machine's host name (its first label, so
`rig-3.lab.example.org` is `rig-3`), made safe for a topic level and a label value.
"""

from __future__ import annotations

import re
import socket

RIG_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")


def check_rig_name(name: str) -> str:
    """`name` if it can name a rig; ValueError saying what is allowed otherwise."""
    if not RIG_NAME.match(name):
        raise ValueError(
            f"bad rig name {name!r} (letters, digits, '_', '.', '-'; starting with a letter or digit; at most 64 "
            "characters: it goes into MQTT topics and metric labels)"
        )
    return name


def default_rig_name() -> str:
    """This machine's host name, first label only, with anything a topic level cannot hold replaced by '-'."""
    host = socket.gethostname().split(".")[0]
    name = _UNSAFE.sub("-", host).strip("-_.")[:64]
    return name if name and RIG_NAME.match(name) else "rig"
