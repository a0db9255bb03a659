"""The pre-roll ring: time window, byte cap, counted drops, eviction into the snapshot state."""

from __future__ import annotations

from autorec.core.preroll import Buffered, PreRoll


def e(t: float, size: int = 10, kind: str = "hv_regulator") -> Buffered:
    return Buffered(t, bytes(size), kind)


def test_time_window_keeps_entries_at_the_edge():
    evicted: list[Buffered] = []
    ring = PreRoll(10.0, 10**9, on_evict=evicted.append)
    for t in range(0, 21):
        ring.append(e(float(t)))
    assert [x.time for x in ring] == [float(t) for t in range(10, 21)]  # 20 - 10 = 10 kept
    assert [x.time for x in evicted] == [float(t) for t in range(0, 10)]
    assert ring.dropped == 0  # leaving the window is not a loss


def test_byte_cap_drops_oldest_first_and_counts():
    ring = PreRoll(100.0, 35)
    for t in range(5):
        ring.append(e(float(t), 10))
    assert [x.time for x in ring] == [2.0, 3.0, 4.0]
    assert ring.bytes == 30
    assert (ring.dropped, ring.dropped_bytes) == (2, 20)
    assert ring.drops_since(1.0) == (1, 10)


def test_a_single_oversized_entry_is_kept():
    ring = PreRoll(100.0, 5)
    ring.append(e(1.0, 10))
    ring.append(e(2.0, 50))
    assert [x.time for x in ring] == [2.0]
    assert ring.dropped == 1


def test_take_returns_window_and_empties():
    evicted: list[Buffered] = []
    ring = PreRoll(100.0, 10**9, on_evict=evicted.append)
    for t in range(10):
        ring.append(e(float(t)))
    taken = ring.take(4.0)
    assert [x.time for x in taken] == [4.0, 5.0, 6.0, 7.0, 8.0, 9.0]
    assert [x.time for x in evicted] == [0.0, 1.0, 2.0, 3.0]
    assert len(ring) == 0 and ring.bytes == 0


def test_trim_on_quiet_time():
    ring = PreRoll(5.0, 10**9)
    ring.append(e(1.0))
    ring.trim(6.0)
    assert len(ring) == 1
    ring.trim(6.001)
    assert len(ring) == 0
