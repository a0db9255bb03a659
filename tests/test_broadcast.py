"""The broadcast server: every client gets every message in order, a slow one loses only its own oldest."""

from __future__ import annotations

import asyncio

from test_sim_support import DEADLINE, receive
from websockets.asyncio.client import connect

from autorec import events
from autorec.io.broadcast import Broadcaster, BroadcastServer
from tests.support.eventbuilder import image, image_transform
from tests.support.polling import wait_until_async


def _pair(i: int, size: int) -> list[bytes]:
    """An image_transform + image pair (frame i) with an image of `size` bytes."""
    it = image_transform(1000.0 + i, width=1024)
    im = image(1000.0 + i, i.to_bytes(4, "big") + b"\0" * size)
    return [it.SerializeToString(), im.SerializeToString()]


def test_slow_client_loses_its_oldest_whole_pairs_and_others_get_everything():
    frames = 600  # 36 MB: more than loopback socket buffers absorb for the stalled client
    published = [m for i in range(frames) for m in _pair(i, 60_000)]

    async def main():
        b = Broadcaster(max_queue_bytes=1_000_000, name="test")
        async with BroadcastServer(b, port=0) as server:
            async with connect(server.uri, max_size=None, max_queue=2) as stalled:
                await asyncio.wait_for(b.wait_for_clients(1), DEADLINE)
                live_task = asyncio.ensure_future(receive(server.uri))
                await asyncio.wait_for(b.wait_for_clients(2), DEADLINE)
                _stalled_stats, live = b.history
                for i in range(frames):
                    b.publish(published[2 * i : 2 * i + 2])
                    # publish at the pace of the live client: it must never be the one dropping
                    await wait_until_async(lambda i=i: live.sent >= 2 * i + 2, DEADLINE, "the live client", interval=0)
                stats = b.stats()
                # the stalled client now reads: it gets only the newest frames, in whole pairs
                late = []
                while True:
                    try:
                        late.append(await asyncio.wait_for(stalled.recv(), 0.5))
                    except asyncio.TimeoutError:
                        break
            await wait_until_async(lambda: b.client_count <= 1, DEADLINE, "the stalled client to go")
        live = [m.payload for m in await live_task]
        return stats, live, late

    stats, live, late = asyncio.run(main())
    assert live == published
    counts = sorted((c["dropped"], c["sent"]) for c in stats["clients"])
    assert counts[0] == (0, len(published))
    dropped = counts[1][0]
    assert dropped > 0
    assert stats["dropped"] == dropped
    # what the slow client got is the tail of the stream, in order, pairs intact
    assert late[-1] == published[-1]
    positions = [published.index(m) for m in late]
    assert positions == sorted(positions)
    for k, m in enumerate(late):
        if events.kind(events.decode(m)) == "image_transform":
            assert late[k + 1] == published[positions[k] + 1]


def test_close_all_and_text_frames():
    async def main():
        b = Broadcaster(name="test")
        async with BroadcastServer(b, port=0) as server:
            got = asyncio.ensure_future(receive(server.uri))
            await asyncio.wait_for(b.wait_for_clients(1), DEADLINE)
            b.publish([b"\x01", "text"])
            await wait_until_async(lambda: b.history[0].sent == 2, DEADLINE, "two messages")
            assert b.close_all() == 1
            msgs = await asyncio.wait_for(got, DEADLINE)
            await wait_until_async(lambda: b.client_count == 0, DEADLINE, "the client to go")
        return [m.payload for m in msgs], b.stats()

    payloads, stats = asyncio.run(main())
    assert payloads == [b"\x01", "text"]
    assert stats["clients"][0]["closed"] is True
