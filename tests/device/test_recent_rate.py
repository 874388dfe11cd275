"""The heartbeat's frame rate is the recent one: a device that slows down after a long run says so at once."""

from __future__ import annotations

import pytest

from firmware.rate import RecentRate


def test_the_rate_is_the_whole_run_while_shorter_than_the_window() -> None:
    rate = RecentRate(started=100.0, window_s=60.0)
    assert rate.rate(110.0, 150) == pytest.approx(15.0)
    assert rate.rate(130.0, 450) == pytest.approx(15.0)


def test_a_slowdown_after_a_long_run_shows_within_one_window() -> None:
    rate = RecentRate(started=0.0, window_s=60.0)
    count = 0
    for t in range(30, 86_400 + 1, 30):  # a day at 15 fps, read every heartbeat
        count += 15 * 30
        assert rate.rate(float(t), count) == pytest.approx(15.0)
    for t in range(86_430, 86_400 + 90 + 1, 30):  # then 3 fps
        count += 3 * 30
        last = rate.rate(float(t), count)
    assert last == pytest.approx(3.0)  # a lifetime average would still say about 15


def test_readings_closer_together_than_the_window_still_span_it() -> None:
    rate = RecentRate(started=0.0, window_s=60.0)
    count = 0
    for t in range(1, 121):  # read every second: 10 fps for 60 s, then 2 fps
        count += 10 if t <= 60 else 2
        last = rate.rate(float(t), count)
    assert last == pytest.approx(2.0)
    assert len(rate._samples) <= 62  # bounded by the window, not the run


def test_no_rate_before_the_agent_has_run_a_few_seconds() -> None:
    """The first heartbeat goes out before the first frame: "measuring", not a live "0.0 fps"."""
    rate = RecentRate(started=5.0)
    assert rate.rate(5.0, 0) is None
    assert rate.rate(9.9, 40) is None
    assert rate.rate(15.0, 150) == pytest.approx(15.0)
