"""StateTracker: latest per kind, driven/scan pins in both forms, covered pins, time."""

from __future__ import annotations

import random

from autorec.core.state import StateTracker, covered_from_scan
from tests.support.eventbuilder import electrode_state, event, scan
from tests.support.rulefiles import timed


def test_latest_per_kind_and_time():
    st = StateTracker()
    assert st.time is None and st.latest("hv_regulator") is None and not st.electrodes_known
    hv = event("hv_regulator", 100.0, voltage=90.0)
    assert st.update(100.0, hv) == "hv_regulator"
    dev = event("device_info", connected=True)
    st.update(101.0, dev)
    assert st.latest("hv_regulator") is hv and st.latest_time("hv_regulator") == 100.0
    assert st.latest("device_info") is dev and st.latest_time("device_info") == 101.0
    assert st.time == 101.0
    st.advance(105.5)
    assert st.time == 105.5 and st.latest_time("device_info") == 101.0
    st.update(None, event("settings", frequency=500.0))  # no time at all: carried forward
    assert st.latest_time("settings") == 105.5
    assert st.kinds_seen() == ["settings", "hv_regulator", "device_info"]
    assert list(st.snapshot()) == st.kinds_seen() and st.snapshot()["hv_regulator"] == (100.0, hv)
    assert st.counts == {"hv_regulator": 1, "device_info": 1, "settings": 1}


def test_driven_pins_from_drive_groups_or_legacy():
    st = StateTracker()
    st.update(1.0, electrode_state(drive=[3, 7], scan=[1, 2]))
    assert st.electrodes_known and st.driven_pins == {3, 7} and st.scan_pins == {1, 2}
    st.update(2.0, electrode_state(legacy=[5, 127]))
    assert st.driven_pins == {5, 127} and st.scan_pins == frozenset()
    st.update(3.0, electrode_state())
    assert st.driven_pins == frozenset()


def test_covered_sim_style_capacitance_without_drop_present():
    # Upstream's simulator: empty pins 0, covered ~33 pF (one electrode) or ~218 pF (big drop).
    st = StateTracker()
    st.update(1.0, scan(1.0, {4: 32.76, 5: 32.76, 12: 218.37}))
    assert st.covered_pins == {4, 5, 12}


def test_covered_hardware_style_offset_and_noise():
    rng = random.Random(6)
    noisy = scan(1.0, {40: 30.0, 41: 12.0}, base=3.0, noise=lambda pin: rng.gauss(0, 0.4))
    assert covered_from_scan(noisy.scan_capacitance.measurements) == {40, 41}
    # A pin just a little above the noise is not "clearly above the empty level".
    marginal = scan(1.0, {40: 30.0, 41: 4.5}, base=3.0, noise=lambda pin: rng.gauss(0, 0.4))
    assert covered_from_scan(marginal.scan_capacitance.measurements) == {40}


def test_covered_drop_present_wins():
    st = StateTracker()
    st.update(1.0, scan(1.0, {}, present=[9]))
    assert st.covered_pins == {9}
    st.update(1.2, scan(1.2, {}))
    assert st.covered_pins == frozenset()


def test_fixture_covered_pins_follow_the_driven_electrode(upstream_log):
    st = StateTracker()
    covered_sizes = set()
    driven_then_covered = 0
    last_driven = None
    for t, ev in timed(upstream_log):
        st.update(t, ev)
        if ev.WhichOneof("msg") == "electrode_state":
            last_driven = st.driven_pins
        elif ev.WhichOneof("msg") == "scan_capacitance":
            covered_sizes.add(len(st.covered_pins))
            assert {5, 12} <= st.covered_pins  # two drops that never move
            if last_driven and last_driven <= st.covered_pins:
                driven_then_covered += 1
    assert covered_sizes == {3}  # three drops, never more or fewer
    assert driven_then_covered > 100  # most scans see the drop on the driven electrode
