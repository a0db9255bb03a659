"""Stream time: carried-forward stamps, clamping, clock jumps, the tick clock."""

from __future__ import annotations

import pytest

from autorec.timeline import Timeline


def test_no_time_before_the_first_timestamp():
    tl = Timeline()
    assert tl.stamp(None, 0.0) is None
    assert tl.tick(1.0) is None
    assert tl.stamp(100.0, 1.0) == 100.0


def test_untimed_messages_carry_the_last_time_forward():
    tl = Timeline()
    tl.stamp(100.0)  # offline: no monotonic time
    assert tl.stamp(None) == 100.0
    assert tl.carried == 1
    # live: advanced by the monotonic time since the last message arrived
    tl2 = Timeline()
    tl2.stamp(100.0, 10.0)
    assert tl2.stamp(None, 10.25) == pytest.approx(100.25)


def test_small_backward_steps_are_clamped():
    tl = Timeline()
    tl.stamp(100.0, 0.0)
    assert tl.stamp(99.9, 0.01) == 100.0
    assert tl.clamped == 1
    assert tl.stamp(100.5, 0.5) == 100.5
    assert not tl.jumps


def test_backward_clock_jump_is_absorbed():
    tl = Timeline(jump_threshold=5.0)
    tl.stamp(1000.0)
    assert tl.stamp(1000.5) == 1000.5
    # the rig's clock steps back an hour: time continues, later stamps shifted
    assert tl.stamp(1000.5 - 3600.0) == 1000.5
    assert len(tl.jumps) == 1 and tl.jumps[0].size == pytest.approx(-3600.0)
    assert tl.stamp(1001.5 - 3600.0) == pytest.approx(1001.5)


def test_forward_jump_counted_with_monotonic_times_but_not_absorbed():
    tl = Timeline(jump_threshold=5.0)
    tl.stamp(1000.0, 0.0)
    assert tl.stamp(4600.0, 1.0) == 4600.0  # 1 s elapsed, clock says an hour: counted, time follows
    assert len(tl.jumps) == 1 and tl.jumps[0].size == pytest.approx(3599.0)
    assert tl.stamp(4601.0, 2.0) == 4601.0
    # offline a long quiet period is indistinguishable from a jump: accepted
    off = Timeline(jump_threshold=5.0)
    off.stamp(1000.0)
    assert off.stamp(4600.0) == 4600.0
    assert not off.jumps


def test_a_long_disconnect_is_not_a_jump():
    tl = Timeline(jump_threshold=5.0)
    tl.stamp(1000.0, 0.0)
    assert tl.stamp(1060.0, 60.0) == 1060.0
    assert not tl.jumps


def test_tick_is_last_time_plus_monotonic_elapsed_times_rate():
    tl = Timeline()
    tl.stamp(1000.0, 50.0)
    assert tl.tick(52.5) == pytest.approx(1002.5)
    assert tl.time == 1000.0  # ticks do not move the time line
    fast = Timeline(rate=20.0)
    fast.stamp(1000.0, 50.0)
    assert fast.tick(51.0) == pytest.approx(1020.0)
    assert fast.stamp(1019.0, 51.0) == 1019.0  # 20x stream is not a forward jump
    assert not fast.jumps
