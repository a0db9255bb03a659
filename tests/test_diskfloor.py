"""Free-space floor: parsing, default max(1 GB, 5 %), transitions with hysteresis, statvfs edge."""

from __future__ import annotations

import os

import pytest

from autorec.diskfloor import DiskFloor, DiskWatch, MinFree, disk_usage, parse_min_free

GB = 10**9


def test_default_is_the_larger_of_1gb_and_5_percent():
    default = parse_min_free(None)
    assert default.floor(10 * GB) == 1 * GB  # 5 % would be 0.5 GB
    assert default.floor(100 * GB) == 5 * GB  # 5 % beats 1 GB
    assert "whichever is larger" in default.describe()


@pytest.mark.parametrize(
    ("text", "total", "floor"),
    [
        ("2GB", 100 * GB, 2 * GB),
        ("500MiB", GB, 500 * 2**20),
        ("10%", 50 * GB, 5 * GB),
        (" 2.5 % ", 1000, 25),
        (0, GB, 0),
    ],
)
def test_parse_sizes_and_percentages(text, total, floor):
    assert parse_min_free(text).floor(total) == floor


@pytest.mark.parametrize("bad", ["lots", "120%", "-1%", "x%", "5 parsecs"])
def test_bad_values_are_value_errors(bad):
    with pytest.raises(ValueError):
        parse_min_free(bad)


def test_transitions_fire_once_each_way_with_hysteresis():
    floor = DiskFloor(MinFree(bytes=1000, fraction=0.0), margin_fraction=0.1)
    assert floor.update(5000, 10**6) is None
    change = floor.update(999, 10**6)
    assert change is not None and change.state == "below" and change.floor_bytes == 1000
    assert "disk floor reached" in change.message()
    assert floor.below and floor.times_below == 1
    # Still below, then just above the floor but inside the margin: no flapping.
    assert floor.update(10, 10**6) is None
    assert floor.update(1050, 10**6) is None
    assert floor.below
    change = floor.update(1100, 10**6)
    assert change is not None and change.state == "above"
    assert not floor.below
    assert floor.update(999, 10**6).state == "below"
    assert floor.times_below == 2


def test_percentage_floor_follows_filesystem_size():
    floor = DiskFloor(parse_min_free("10%"))
    assert floor.update(11, 100) is None
    assert floor.update(9, 100).state == "below"


def test_force_below_after_enospc():
    floor = DiskFloor(MinFree(bytes=100, fraction=0.0), margin_fraction=0.0)
    floor.update(10**6, 10**7)
    change = floor.force_below()
    assert change is not None and change.state == "below"
    assert floor.force_below() is None  # already below: one alert only
    assert floor.update(10**6, 10**7).state == "above"


def test_disk_usage_reads_statvfs(tmp_path):
    free, total = disk_usage(tmp_path)
    st = os.statvfs(tmp_path)
    assert total == st.f_blocks * st.f_frsize > 0
    assert 0 <= free <= total


def test_from_parsed_settings():
    assert MinFree.from_settings(None, None) == MinFree()
    assert MinFree.from_settings(5 * GB, None).floor(1000 * GB) == 5 * GB
    assert MinFree.from_settings(None, 20.0).floor(10 * GB) == 2 * GB


def test_disk_watch_samples_on_its_interval(tmp_path):
    free, total = disk_usage(tmp_path)
    watch = DiskWatch(tmp_path, DiskFloor(MinFree(bytes=free + 10**12, fraction=0.0)), interval=5.0)
    change = watch.poll(100.0)
    assert change is not None and change.state == "below" and watch.below
    assert watch.floor.last_total == total
    watch.floor.min_free = MinFree(bytes=0, fraction=0.0)
    assert watch.poll(104.0) is None  # not due yet
    assert watch.poll(105.0).state == "above"
    gone = DiskWatch(tmp_path / "missing")
    assert gone.poll(0.0) is None and gone.errors == 1 and "missing" in gone.last_error
