"""MQTT events: the recorder's segments, alerts and status on a broker the lab already runs.

Topics, each under `TOPIC/RIG/` (`mqtt.topic` of the rule file, default `autorec`; the rig's
name from `run --rig`, default the host name):

- `available`: `online` when connected, `offline` on a clean stop, and `offline` as the last
  will, which the broker sends when the recorder dies or its link drops. Retained.
- `segments`: JSON `{"type": "new"|"update"|"end", "before": {...}, "after": {...}}` in the
  shape of Frigate's review messages: a segment's id (its name), rules, start, end, evidence in
  words, size, records, file names, close reason. `new` when a segment opens (`before` is the
  same as `after`), `update` when another rule fires into the open segment, `end` when it is
  closed and its files are final.
- `alerts`: JSON `{"type": "raised"|"cleared", "key", "name", "message", "time", "since", ...}`.
- `status`: JSON, retained, every `mqtt.status_every` (default 1 minute), at once when the
  source connects or drops, and when the broker (re)connects: the status file's fields.

Contract:
- Nothing here blocks the recorder. paho-mqtt's client runs its own network thread
  (`loop_start`): connecting, retrying with backoff (1 s doubling up to 30 s), writing and
  reading happen there; `publish` only queues a message and wakes that thread.
- While the broker is unreachable (or too slow to acknowledge), events wait in paho's queue,
  at most `mqtt.max_queued` of them; each one beyond is dropped and counted. Status messages
  are not queued while disconnected (a stale retained status is no use): a fresh one goes out
  on reconnect. `counters()`: `mqtt_published` (acknowledged by the broker), `mqtt_queued`
  (waiting now), `mqtt_dropped`.
- Every message is QoS 1 (at least once): a notification that matters must not be lost to a
  dropped packet, and a duplicate is harmless.
- The user name and password come from the environment (`AUTOREC_MQTT_USERNAME`,
  `AUTOREC_MQTT_PASSWORD`), never from the rule file or the command line; they are never logged.

Why paho-mqtt rather than aiomqtt: aiomqtt runs on the caller's event loop, which here is the
recorder's: every publish, reconnect and keepalive would share the loop that feeds the pipeline,
and a broker that accepts the TCP connection and then stalls would stall awaits on it. paho's own
thread keeps the broker entirely off the recording path, and paho keeps QoS 1 messages across
reconnects by itself; this module only bounds and counts them. (aiomqtt is itself built on paho.)
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import threading
import time
import urllib.parse
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from autorec.core.streamitems import StreamListener
from autorec.readable import evidence_text
from autorec.units import with_iso_times

log = logging.getLogger(__name__)

ENV_USERNAME = "AUTOREC_MQTT_USERNAME"
ENV_PASSWORD = "AUTOREC_MQTT_PASSWORD"
DEFAULT_PORTS = {"mqtt": 1883, "mqtts": 8883}
QOS = 1
# Ticks reach listeners only while the stream is quiet: while it flows, every this many messages look at the clock.
STATUS_CHECK_EVERY = 50
KEEPALIVE = 30  # seconds: the broker sends the last will within 1.5x this after a silent death
CLOSE_WAIT = 3.0  # seconds a clean stop waits for queued messages and `offline` to reach the broker


@dataclass(frozen=True)
class BrokerAddress:
    host: str
    port: int
    tls: bool

    def describe(self) -> str:
        return f"{'mqtts' if self.tls else 'mqtt'}://{self.host}:{self.port}"


def parse_url(url: str) -> BrokerAddress:
    """`mqtt://HOST[:PORT]` or `mqtts://HOST[:PORT]` -> BrokerAddress; ValueError saying what is wrong."""
    if not isinstance(url, str):
        raise ValueError(f"expected a URL like mqtt://broker:1883, got {url!r}")
    parts = urllib.parse.urlsplit(url.strip())
    if "@" in parts.netloc:  # checked first: no message may echo a password
        raise ValueError(
            f"no user or password in the URL: they come from the environment ({ENV_USERNAME}, {ENV_PASSWORD})"
        )
    if parts.scheme not in DEFAULT_PORTS:
        raise ValueError(f"expected a URL like mqtt://broker:1883 (mqtts:// for TLS), got {url!r}")
    if not parts.hostname:
        raise ValueError(f"no broker host in {url!r} (expected mqtt://HOST[:PORT])")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ValueError(f"unexpected path or query in {url!r}: the topic prefix is `topic:`")
    try:
        port = parts.port
    except ValueError as exc:
        raise ValueError(f"{exc} in {url!r}") from None
    return BrokerAddress(parts.hostname, port or DEFAULT_PORTS[parts.scheme], parts.scheme == "mqtts")


def check_topic(prefix: str) -> str:
    """A topic prefix (`autorec`, `lab/autorec`); ValueError if MQTT would refuse or misread it."""
    if not isinstance(prefix, str) or not prefix.strip("/"):
        raise ValueError(f"expected a topic prefix like autorec, got {prefix!r}")
    if any(c in prefix for c in "+#\x00"):
        raise ValueError(f"{prefix!r}: '+', '#' are wildcards and cannot be in a topic we publish to")
    if prefix.startswith("/") or prefix.endswith("/") or "//" in prefix:
        raise ValueError(f"{prefix!r}: no leading, trailing or doubled '/' (an empty topic level)")
    return prefix


class MqttPublisher:
    """A paho-mqtt client on its own network thread, publishing under `PREFIX/RIG/`. See the module docstring."""

    def __init__(
        self,
        address: BrokerAddress,
        prefix: str,
        rig: str,
        *,
        max_queued: int = 1000,
        ca_file: str | None = None,
        environ: Mapping[str, str] | None = None,
        keepalive: int = KEEPALIVE,
    ) -> None:
        import paho.mqtt.client as paho
        from paho.mqtt.enums import CallbackAPIVersion

        self._paho = paho
        self.address = address
        self.base = f"{prefix}/{rig}"
        self.rig = rig
        self.keepalive = keepalive
        env = os.environ if environ is None else environ
        self.client = paho.Client(
            CallbackAPIVersion.VERSION2,
            client_id=f"autorec-{rig}-{os.getpid()}",
            protocol=paho.MQTTv311,
            clean_session=True,
        )
        # The bound is ours (`publish`), not paho's: `online` and the status must get through even when
        # the events queued while the broker was away fill it.
        self.max_queued = max_queued
        self.client.reconnect_delay_set(1, 30)
        if env.get(ENV_USERNAME):
            self.client.username_pw_set(env[ENV_USERNAME], env.get(ENV_PASSWORD) or None)
        if address.tls:
            self.client.tls_set(ca_certs=ca_file)
        self.client.will_set(self.topic("available"), "offline", qos=QOS, retain=True)
        self.client.on_connect = self._on_connect
        self.client.on_connect_fail = self._on_connect_fail
        self.client.on_disconnect = self._on_disconnect
        self.client.on_publish = self._on_publish
        self._lock = threading.Condition()
        self._pending = 0  # handed to paho, not yet acknowledged
        self.published = 0
        self.dropped = 0
        self.connects = 0
        self.is_connected = False
        self._reported_down = False  # one warning per outage, not one per retry
        self._reported_full = False
        self._closing = False
        self.refused: str | None = None  # the broker's reason, while it refuses us
        self.on_connected: Callable[[], None] | None = None  # called on paho's thread: must be quick

    def topic(self, name: str) -> str:
        return f"{self.base}/{name}"

    def start(self) -> MqttPublisher:
        """Connect in the background (never blocks, never raises for an unreachable broker)."""
        self.client.connect_async(self.address.host, self.address.port, keepalive=self.keepalive)
        self.client.loop_start()
        log.info("MQTT: publishing to %s under %s/", self.address.describe(), self.base)
        return self

    def publish(self, name: str, payload: Any, *, retain: bool = False, queue: bool = True) -> bool:
        """Queue `payload` (a str, or JSON-able) on `PREFIX/RIG/name`; never blocks.

        `queue=False`: only while connected (a status, stale once the broker is back). False when
        the message was not queued (dropped and counted, or not connected with `queue=False`)."""
        if not queue and not self.is_connected:
            return False
        data = payload if isinstance(payload, str) else json.dumps(payload, separators=(",", ":"), default=str)
        with self._lock:
            full = queue and self._pending >= self.max_queued
            if not full:
                self._pending += 1
        if full:
            return self._dropped()
        try:
            info = self.client.publish(self.topic(name), data, qos=QOS, retain=retain)
        except Exception as exc:  # a bug or a closed client must not reach the recorder
            info = None
            log.warning("MQTT: cannot publish on %s: %s", self.topic(name), exc)
        if info is not None and info.rc in (self._paho.MQTT_ERR_SUCCESS, self._paho.MQTT_ERR_NO_CONN):
            return True  # sent, or queued until the broker is back (QoS 1)
        with self._lock:
            self._pending -= 1
        return self._dropped()

    def _dropped(self) -> bool:
        with self._lock:
            self.dropped += 1
            self._lock.notify_all()
            first = not self._reported_full
            self._reported_full = True
        if first:
            log.warning(
                "MQTT: %d message(s) already waiting for %s: dropping new ones (counted in mqtt_dropped)",
                self._pending,
                self.address.describe(),
            )
        return False

    def counters(self) -> dict[str, int]:
        with self._lock:
            return {"mqtt_published": self.published, "mqtt_queued": self._pending, "mqtt_dropped": self.dropped}

    def close(self, timeout: float = CLOSE_WAIT) -> bool:
        """Say `offline`, let what is queued go out within `timeout`, disconnect. True if nothing was left."""
        self.publish("available", "offline", retain=True, queue=False)
        self._closing = True
        deadline = time.monotonic() + timeout
        with self._lock:
            while self._pending and self.is_connected and time.monotonic() < deadline:
                self._lock.wait(max(0.0, min(0.1, deadline - time.monotonic())))
            left = self._pending
        self.client.disconnect()
        if not self.is_connected:
            # A broker that took the TCP connection and never answered: paho's thread would wait for it
            # until the keepalive runs out. End the socket so it sees the end now.
            sock = self.client.socket()
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
        self.client.loop_stop()
        if left:
            log.warning("MQTT: %d message(s) not delivered to %s at exit", left, self.address.describe())
        return left == 0

    # -- paho's network thread --------------------------------------------------------------------
    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            # A refused login does not heal by itself: an error, once per reason (paho retries with backoff).
            if self.refused != str(reason_code):
                self.refused = str(reason_code)
                log.error(
                    "MQTT: %s refused the connection: %s (user from %s; recording goes on)",
                    self.address.describe(),
                    reason_code,
                    ENV_USERNAME,
                )
            return
        self.refused = None
        self.is_connected = True
        self.connects += 1
        if self._reported_down or self.connects > 1:
            log.info("MQTT: connected to %s again", self.address.describe())
        else:
            log.info("MQTT: connected to %s", self.address.describe())
        self._reported_down = self._reported_full = False
        self.publish("available", "online", retain=True, queue=False)  # never refused by a full queue
        if self.on_connected is not None:
            self.on_connected()

    def _on_connect_fail(self, client, userdata) -> None:
        self._down("cannot connect")

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        self.is_connected = False
        with self._lock:
            self._lock.notify_all()
        if not self._closing:
            self._down(f"disconnected ({reason_code})")

    def _down(self, what: str) -> None:
        if not self._reported_down:
            self._reported_down = True
            log.warning(
                "MQTT: %s %s; retrying in the background, recording goes on (events queue up to a bound)",
                what,
                self.address.describe(),
            )

    def _on_publish(self, client, userdata, mid, reason_code, properties) -> None:
        with self._lock:
            self._pending = max(0, self._pending - 1)
            self.published += 1
            self._lock.notify_all()


def _evidence_words(rule: str, evidence: Any) -> str:
    return f"{rule}: {evidence_text(rule, evidence)}"


class MqttEvents(StreamListener):
    """The recorder's events on MQTT: a writer segment observer, a stream listener and an alert observer.

    `segment_opened`/`segment_closed` (the writer's `SegmentObserver`, on its thread) publish
    `new` and `end`; `fired` (stream listener) remembers each rule's latest evidence and publishes
    `update` when a rule joins the open segment; `alert(action)` (an `AlertReporter` observer)
    publishes `raised`/`cleared`; `tick` publishes the retained status every `status_every`
    seconds of the monotonic `clock`. `status()` returns the status file's fields.
    """

    def __init__(
        self,
        publisher: MqttPublisher,
        status: Callable[[], dict[str, Any]],
        *,
        status_every: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.publisher = publisher
        self.status = status
        self.status_every = status_every
        self.clock = clock
        self._lock = threading.Lock()
        self._evidence: dict[str, str] = {}  # rule -> its latest firing in words
        self._open: dict[str, Any] | None = None  # the open segment as last published
        self._open_file: Any = None
        self._next_status = 0.0  # due at once
        self._countdown = STATUS_CHECK_EVERY
        publisher.on_connected = self._status_now

    # -- segments (writer thread; `fired` on the recorder's loop) -------------------------------
    def segment_opened(self, segment: Any) -> None:
        with self._lock:
            state = self._state(segment, list(segment.rules), closed=False)
            self._open, self._open_file = state, segment
        self.publisher.publish("segments", {"type": "new", "before": state, "after": state})

    def segment_closed(self, segment: Any) -> None:
        with self._lock:
            before = self._open
            rules = list(segment.rules)
            if before is not None:
                rules += [r for r in before["rules"] if r not in rules]
            after = self._state(segment, rules, closed=True)
            self._open = self._open_file = None
        self.publisher.publish("segments", {"type": "end", "before": before, "after": after})

    def fired(self, t: float, firings: Sequence[Any]) -> None:
        message = None
        with self._lock:
            for f in firings:
                self._evidence[f.rule] = _evidence_words(f.rule, f.evidence)
            before = self._open
            if before is not None:
                joined = [f.rule for f in firings if f.rule not in before["rules"]]
                if joined:
                    rules = before["rules"] + list(dict.fromkeys(joined))
                    after = self._state(self._open_file, rules, closed=False)
                    self._open = after
                    message = {"type": "update", "before": before, "after": after}
        if message is not None:
            self.publisher.publish("segments", message)

    def _state(self, segment: Any, rules: list[str], *, closed: bool) -> dict[str, Any]:
        summary = getattr(segment, "summary", None) or {}
        files = {"log": segment.path.name, "sidecar": segment.sidecar.name} if closed else {"log": segment.partial.name}
        return with_iso_times(
            {
                "id": segment.name,
                "rig": self.publisher.rig,
                "start": segment.start,
                "end": segment.end if closed else None,
                "rules": rules,
                "evidence": [self._evidence[r] for r in rules if r in self._evidence],
                "size": segment.bytes,
                "records": segment.records,
                "part": segment.part,
                "files": files,
                "close_reason": segment.close_reason if closed else None,
                "gaps": summary.get("gaps", 0),
                "dropped": summary.get("dropped", 0),
            }
        )

    # -- alerts ----------------------------------------------------------------------------------
    def alert(self, action: Any) -> None:
        a = action.alert
        payload = {
            "type": action.state,
            "rig": self.publisher.rig,
            "key": a.key,
            "name": a.name,
            "message": action.message,
            "time": action.time,
            "since": a.since,
            "details": dict(a.details),
        }
        self.publisher.publish("alerts", with_iso_times(payload))

    # -- status (the recorder's loop) ------------------------------------------------------------
    def _status_now(self) -> None:
        self._next_status = 0.0  # the next tick sends it (this runs on paho's thread)

    def publish_status(self, **changes: Any) -> None:
        self._next_status = self.clock() + self.status_every
        try:
            status = dict(self.status())
        except Exception:  # a broken callable must not stop the recorder
            log.exception("MQTT: cannot collect the status")
            return
        status.update(changes, rig=self.publisher.rig)
        self.publisher.publish("status", with_iso_times(status), retain=True, queue=False)

    def tick(self, t: float) -> None:
        if self.clock() >= self._next_status and self.publisher.is_connected:
            self.publish_status()

    def message(self, t: float, kind: str | None) -> None:
        self._countdown -= 1
        if self._countdown <= 0:
            self._countdown = STATUS_CHECK_EVERY
            self.tick(t)

    def connected(self, t: float) -> None:
        self._next_status = 0.0

    def disconnected(self, t: float) -> None:
        self._next_status = 0.0

    def counters(self) -> dict[str, int]:
        return self.publisher.counters()

    def close(self, timeout: float = CLOSE_WAIT) -> bool:
        if self.publisher.is_connected:
            self.publish_status(connected=False)  # the last word: the source is stopped
        return self.publisher.close(timeout)


def from_settings(settings: Any, rig: str, status: Callable[[], dict[str, Any]]) -> MqttEvents | None:
    """Started `MqttEvents` for a rule file's `mqtt:` settings (`autorec.core.ruleset.MqttSettings`);
    None after logging why when the client cannot be set up (TLS files): recording goes on without it."""
    try:
        publisher = MqttPublisher(
            parse_url(settings.url),
            settings.topic,
            rig,
            max_queued=settings.max_queued,
            ca_file=settings.ca_file,
        )
    except (OSError, ValueError) as exc:  # ssl.SSLError is an OSError
        log.error("MQTT: cannot set up the client for %s: %s (recording goes on without MQTT)", settings.url, exc)
        return None
    events = MqttEvents(publisher, status, status_every=settings.status_every)
    publisher.start()
    return events
