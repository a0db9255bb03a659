"""WebsocketSource against a real websockets server on 127.0.0.1."""

from __future__ import annotations

import asyncio
import socket
import time
from pathlib import Path

import pytest

from autorec import events
from autorec.io.logfile import LogReader, LogWriter
from autorec.io.source import Connected, Disconnected, Message, WebsocketSource
from tests.support.eventbuilder import image
from tests.support.wsfixtures import EventServer, fixture_payloads


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def next_item(source: WebsocketSource, timeout: float = 10.0):
    return await asyncio.wait_for(source.__anext__(), timeout)


async def expect(source: WebsocketSource, cls: type, timeout: float = 10.0):
    item = await next_item(source, timeout)
    assert isinstance(item, cls), f"expected {cls.__name__}, got {item!r}"
    return item


async def messages(source: WebsocketSource, n: int, timeout: float = 10.0) -> list[Message]:
    out = []
    deadline = time.monotonic() + timeout
    while len(out) < n:
        item = await next_item(source, max(0.01, deadline - time.monotonic()))
        assert isinstance(item, Message), f"unexpected {item!r} after {len(out)} messages"
        out.append(item)
    return out


def big_image_event(size: int) -> bytes:
    return image(1_700_000_000.0, bytes(range(256)) * (size // 256)).SerializeToString()


async def until_clients(server: EventServer, n: int = 1) -> None:
    await asyncio.to_thread(server.wait_for_clients, n)


def test_round_trip_stream_to_file_is_byte_identical(stream_log: Path, tmp_path: Path) -> None:
    payloads = fixture_payloads(stream_log)
    out = tmp_path / "stream.bin"

    async def main() -> None:
        with EventServer() as server:
            async with WebsocketSource(server.uri) as source:
                assert isinstance(await next_item(source), Connected)
                await until_clients(server)
                await asyncio.to_thread(server.broadcast, payloads)
                got = await messages(source, len(payloads))
        assert all(m.rejected is None for m in got)
        assert [m.kind for m in got] == [events.peek_kind(p) for p in payloads]
        assert all(m.event is not None and m.event.SerializeToString() == m.payload for m in got)
        assert all(got[i].monotonic <= got[i + 1].monotonic for i in range(len(got) - 1))
        assert source.stats.messages == len(payloads)
        assert source.stats.bytes == sum(map(len, payloads))
        with LogWriter(out) as w:
            for m in got:
                w.write(m.payload)

    asyncio.run(main())
    assert out.read_bytes() == stream_log.read_bytes()
    assert [r.payload for r in LogReader(out)] == payloads


def test_text_garbage_empty_and_big_frames(stream_log: Path) -> None:
    good = fixture_payloads(stream_log)[0]
    big = big_image_event(3 * 1024 * 1024)  # over websockets' 1 MiB default
    garbage = b"\xff\xfe\x00garbage"
    frames: list[bytes | str] = ["hello, text", good, garbage, b"", big, "more text", good]

    async def main() -> None:
        with EventServer() as server:
            async with WebsocketSource(server.uri) as source:
                await expect(source, Connected)
                await until_clients(server)
                await asyncio.to_thread(server.broadcast, frames)
                got = await messages(source, 5)
                stats = source.stats
        assert [m.payload for m in got] == [good, garbage, b"", big, good]
        assert [m.rejected is None for m in got] == [True, False, False, True, True]
        assert "not a PurpleDropEvent" in got[1].rejected and got[1].event is None
        assert got[2].kind is None
        assert got[3].kind == "image" and len(got[3].event.image.image_data) == 3 * 1024 * 1024
        assert (stats.messages, stats.rejected, stats.text_frames) == (3, 2, 2)
        assert stats.rejected_bytes == len(garbage)
        assert stats.gaps == [] and stats.reconnects == 0

    asyncio.run(main())


def test_refused_then_server_appears(stream_log: Path) -> None:
    port = free_port()
    payload = fixture_payloads(stream_log)[0]

    async def main() -> None:
        server = EventServer(greeting=[payload])
        try:
            async with WebsocketSource(f"ws://127.0.0.1:{port}", min_backoff=0.02, max_backoff=0.1) as source:
                gone = await expect(source, Disconnected)
                assert gone.cause == "connection refused"
                server.port = port
                await asyncio.to_thread(server.start)
                back = await expect(source, Connected)
                (m,) = await messages(source, 1)
                assert m.payload == payload
                (gap,) = source.stats.gaps
                assert gap.start == gone.time and gap.end == back.time and gap.cause == "connection refused"
                assert source.stats.failed_attempts >= 1
                assert source.stats.reconnects == 0  # never had a connection before: not a reconnect
        finally:
            await asyncio.to_thread(server.close)

    asyncio.run(main())


def test_dropped_connection_reconnects_and_reports_gap(stream_log: Path) -> None:
    payloads = fixture_payloads(stream_log)[:20]

    async def main() -> None:
        with EventServer() as server:
            async with WebsocketSource(server.uri, min_backoff=0.02, max_backoff=0.2) as source:
                await expect(source, Connected)
                await until_clients(server)
                await asyncio.to_thread(server.broadcast, payloads[:10])
                assert [m.payload for m in await messages(source, 10)] == payloads[:10]
                await asyncio.to_thread(server.drop_connections)
                gone = await expect(source, Disconnected)
                assert gone.cause == "connection lost (no close frame)"
                assert not source.stats.connected
                await expect(source, Connected)
                assert source.stats.connected
                await until_clients(server)
                await asyncio.to_thread(server.broadcast, payloads[10:])
                assert [m.payload for m in await messages(source, 10)] == payloads[10:]
                # a server that dies for a while and comes back on the same port
                await asyncio.to_thread(server.stop)
                await expect(source, Disconnected)
                await asyncio.to_thread(server.start)
                await expect(source, Connected)
            stats = source.stats
            assert stats.reconnects == 2 and stats.connects == 3
            assert len(stats.gaps) == 2 and all(g.end is not None and g.end >= g.start for g in stats.gaps)

    asyncio.run(main())


def test_frame_over_max_size_is_reported_as_the_gap_cause() -> None:
    async def main() -> None:
        with EventServer() as server:
            async with WebsocketSource(server.uri, max_size=1000, min_backoff=0.02) as source:
                await expect(source, Connected)
                await until_clients(server)
                await asyncio.to_thread(server.broadcast, [big_image_event(4096)])
                gone = await expect(source, Disconnected)
                assert "code 1009" in gone.cause and "closed by autorec" in gone.cause
                await expect(source, Connected)  # and it carries on

    asyncio.run(main())


def test_stop_ends_iteration_while_retrying() -> None:
    port = free_port()

    async def main() -> None:
        source = WebsocketSource(f"ws://127.0.0.1:{port}", min_backoff=5.0, max_backoff=5.0)
        await expect(source, Disconnected)
        started = time.monotonic()
        consumer = asyncio.ensure_future(source.__anext__())  # now waiting out a 5 s backoff
        await asyncio.sleep(0)
        source.stop()
        with pytest.raises(StopAsyncIteration):
            await asyncio.wait_for(consumer, 5)
        assert time.monotonic() - started < 4.0
        assert source.stats.gaps[0].end is not None

    asyncio.run(main())


def test_backoff_keeps_retrying_with_cap() -> None:
    port = free_port()

    async def main() -> None:
        source = WebsocketSource(f"ws://127.0.0.1:{port}", min_backoff=0.01, max_backoff=0.02)
        items = []

        async def consume() -> None:
            async for item in source:
                items.append(item)

        consumer = asyncio.ensure_future(consume())
        deadline = time.monotonic() + 10
        while source.stats.failed_attempts < 5:
            assert time.monotonic() < deadline, "source stopped retrying"
            await asyncio.sleep(0.01)
        await source.close()
        await asyncio.wait_for(consumer, 5)
        assert len(items) == 1 and isinstance(items[0], Disconnected)  # one gap however many attempts
        assert len(source.stats.gaps) == 1

    asyncio.run(main())


def test_invalid_uri_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="not a websocket URI"):
        WebsocketSource("http://localhost:7001")


def test_backoff_resets_on_the_first_frame_so_a_flapping_server_is_still_recorded(upstream_log: Path) -> None:
    """A server that drops every connection a moment after sending: each gap stays at the minimum backoff
    (without the reset it doubled on every drop: 0.05, 0.1, ... 3.2 s)."""
    payloads = fixture_payloads(upstream_log)[:10]

    async def main() -> None:
        with EventServer() as server:
            async with WebsocketSource(server.uri, min_backoff=0.05, max_backoff=5.0) as source:
                await expect(source, Connected)
                for i in range(8):
                    await until_clients(server)
                    await asyncio.to_thread(server.broadcast, payloads[i : i + 1])
                    [got] = await messages(source, 1)
                    assert got.payload == payloads[i]
                    await asyncio.to_thread(server.drop_connections)
                    await expect(source, Disconnected)
                    await expect(source, Connected)
            gaps = source.stats.gaps
            assert len(gaps) == 8
            assert max(g.end - g.start for g in gaps) < 1.0, [round(g.end - g.start, 2) for g in gaps]

    asyncio.run(main())


def test_a_server_that_drops_before_sending_anything_still_backs_off() -> None:
    """The reset needs a frame: accept-and-drop servers are not hammered."""

    async def main() -> None:
        with EventServer() as server:
            async with WebsocketSource(server.uri, min_backoff=0.05, max_backoff=5.0) as source:
                await expect(source, Connected)
                for _ in range(5):
                    await until_clients(server)
                    await asyncio.to_thread(server.drop_connections)
                    await expect(source, Disconnected)
                    await expect(source, Connected, timeout=10.0)
            gaps = [g.end - g.start for g in source.stats.gaps]
            assert gaps[-1] > 0.6, gaps  # 0.05 doubled four times: 0.8 s

    asyncio.run(main())


# -- paced reads ---------------------------------------------------------------------------------


def send_spaced(server: EventServer, frames: list[bytes], gap: float) -> None:
    """Broadcast `frames` one at a time, `gap` seconds apart: the stream's own pace, not a wait for the source."""
    for frame in frames:
        server.broadcast([frame])
        time.sleep(gap)


def _small_frames(n: int) -> list[bytes]:
    return [image(1_700_000_000.0 + i, bytes([i % 256]) * 500).SerializeToString() for i in range(n)]


@pytest.mark.parametrize("interval", [0.2, 0.0])
def test_paced_reads_take_a_stream_in_a_few_reads_without_losing_or_reordering(interval: float) -> None:
    # 60 frames 10 ms apart (a rig's sensors and camera, 100 messages a second): paced, each read
    # takes what 0.2 s brought; unpaced (0), nearly every frame is a read of its own.
    frames = _small_frames(60)

    async def main() -> tuple[list[Message], int]:
        with EventServer() as server:
            async with WebsocketSource(server.uri, read_interval=interval) as source:
                await expect(source, Connected)
                await until_clients(server)

                sender = asyncio.ensure_future(asyncio.to_thread(send_spaced, server, frames, 0.01))
                got = await messages(source, len(frames))
                await sender
                # The flow control this pacing leaves to websockets is read from its frame queue.
                assert hasattr(source._ws.recv_messages, "paused") and hasattr(source._ws.recv_messages, "resume")
                return got, source.stats.reads

    got, reads = asyncio.run(main())
    assert [m.payload for m in got] == frames
    if interval:
        assert reads <= 12, reads  # ~0.6 s of stream / 0.2 s, plus the handshake's and stragglers
    else:
        assert reads >= 30, reads


def test_a_backlog_is_read_at_once_whatever_the_interval() -> None:
    # 8 MB arriving together: a read that fills asyncio's buffer is followed at once by the next.
    # Paced after every read, 0.5 s apart, it would take 8 MB / 256 KiB / 2 = 16 s.
    frames = [big_image_event(100_000) for _ in range(80)]

    async def main() -> list[Message]:
        with EventServer() as server:
            async with WebsocketSource(server.uri, read_interval=0.5) as source:
                await expect(source, Connected)
                await until_clients(server)
                sender = asyncio.ensure_future(asyncio.to_thread(server.broadcast, frames))
                got = await messages(source, len(frames), timeout=8.0)
                await sender
                return got

    got = asyncio.run(main())
    assert [m.payload for m in got] == frames


def test_a_paced_frame_is_read_within_the_interval() -> None:
    # A frame sent right after a read waits in the socket until the next read, at most one interval.
    first, second = _small_frames(2)

    async def main() -> tuple[float, float]:
        with EventServer() as server:
            async with WebsocketSource(server.uri, read_interval=0.5) as source:
                await expect(source, Connected)
                await until_clients(server)
                await asyncio.to_thread(server.broadcast, [first])
                a = await expect(source, Message)
                await asyncio.to_thread(server.broadcast, [second])
                b = await expect(source, Message)
                assert (a.payload, b.payload) == (first, second)
                # Closing is not paced: the server's close frame is read as it comes (well within 0.5 s).
                t0 = time.monotonic()
                await source.close()
                assert time.monotonic() - t0 < 0.4
                return a.monotonic, b.monotonic

    a, b = asyncio.run(main())
    assert 0.3 <= b - a <= 0.5 + 1.0, b - a  # held by the pacing, and not much longer


def test_read_interval_is_checked() -> None:
    with pytest.raises(ValueError, match="read_interval"):
        WebsocketSource("ws://127.0.0.1:7001", read_interval=-1)
    with pytest.raises(ValueError, match="read_interval"):
        WebsocketSource("ws://127.0.0.1:7001", read_interval=5)


def test_pacing_never_falls_behind_a_small_socket_buffer() -> None:
    # An untuned receive buffer of ~64 KB holds a third of a second of a 2 MB/s stream: paced every
    # 0.2 s regardless, the source would read ~320 KB/s and fall further behind each second. Reads
    # that take a good part of the buffer are followed at once.
    frames = [big_image_event(100_000) for _ in range(40)]

    async def main() -> list[Message]:
        with EventServer() as server:
            async with WebsocketSource(server.uri, read_interval=0.2) as source:
                await expect(source, Connected)
                await until_clients(server)
                sock = source._ws.transport.get_extra_info("socket")
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 32 * 1024)

                t0 = time.monotonic()
                sender = asyncio.ensure_future(asyncio.to_thread(send_spaced, server, frames, 0.05))  # 2 MB/s for 2 s
                got = await messages(source, len(frames), timeout=20.0)
                await sender
                assert time.monotonic() - t0 < 6.0, "fell behind the stream"
                return got

    got = asyncio.run(main())
    assert [m.payload for m in got] == frames


def test_paced_reads_of_a_sped_up_simulator_fake_no_clock_step() -> None:
    # `autorec run --sim --speed 100`: stream time runs 100x the monotonic clock, and the timeline takes
    # a stamp more than 5 s ahead of the last one plus 100x the monotonic time since it arrived for a
    # clock step. A read paced 0.2 s late moves a frame's arrival by up to 20 s of stream time: two
    # frames either side of a 12 s quiet stretch (0.12 s real) taken in one read looked like a forward
    # clock step (and the frame after it, read 0.2 s later, refuted it as an outlier). The simulator's
    # source is paced for its speed.
    from autorec.core.timeline import Timeline
    from autorec.io.source import read_interval_at
    from tests.support.eventbuilder import hv

    speed = 100.0
    timeline: Timeline[Message] = Timeline(rate=speed)

    async def main() -> None:
        with EventServer() as server:
            async with WebsocketSource(server.uri, read_interval=read_interval_at(speed)) as source:
                await expect(source, Connected)
                await until_clients(server)
                t0 = time.monotonic()

                def send() -> None:
                    server.broadcast([hv(1_700_000_000.0 + speed * (time.monotonic() - t0), 100.0).SerializeToString()])

                def stream() -> None:
                    for _ in range(2):
                        reads = source.stats.reads
                        send()
                        deadline = time.monotonic() + 5.0
                        while source.stats.reads == reads:  # read: a paced pause begins now
                            assert time.monotonic() < deadline, "the frame was never read"
                            time.sleep(0.002)
                        time.sleep(0.02)  # the stream's own pace from here on
                        send()
                        time.sleep(0.12)  # 12 s of stream without a frame
                        for _ in range(3):
                            send()
                        time.sleep(0.3)

                sender = asyncio.ensure_future(asyncio.to_thread(stream))
                for m in await messages(source, 2 * 5):
                    timeline.push(events.timestamp(m.event), m.monotonic, m)
                await sender

    asyncio.run(main())
    assert (timeline.steps, timeline.outliers, timeline.holding) == (0, 0, 0), timeline.jumps


@pytest.mark.parametrize("interval", [0.0, 0.5])
def test_the_recorder_api_takes_read_interval(interval: float, tmp_path: Path) -> None:
    # docs/reference/python-api.md offers EventRecorder(uri, read_interval=...): it reaches the source.
    from autorec import EventRecorder
    from tests.support.wsfixtures import wait_until

    frames = _small_frames(20)
    with EventServer() as server:
        with EventRecorder(server.uri, read_interval=interval) as rec:
            rec.start(tmp_path / "x.bin")
            assert rec._capture is not None and rec._capture.source.read_interval == interval
            server.wait_for_clients(1)
            server.broadcast(frames)
            wait_until(lambda: rec.count == len(frames), 10, "the frames")
            assert rec.stop() == len(frames)
    assert [r.payload for r in LogReader(tmp_path / "x.bin")] == frames
