"""The commissioning decisions as tables: facts and a clock in, each check's status and reason out."""

from __future__ import annotations

from dataclasses import replace

import pytest

from fleet.commissioning.checks import (
    DEFAULT_EXPECTED_FPS,
    HEARTBEAT_FRESH_S,
    MAX_CLOCK_SKEW_S,
    MIN_RATE_FRACTION,
    PEOPLE_WINDOW_S,
    TEST_ALERT_VALID_S,
    Check,
    Delivery,
    Facts,
    Heartbeat,
    Layout,
    People,
    Sample,
    TestAlert,
    check_clock,
    check_frame_rate,
    check_layout,
    check_people,
    check_test_alert,
    delivered_rate,
    duration,
    evaluate,
    overall,
    report,
)

NOW = 1_800_000_000.0


def beat(age: float = 10.0, skew: float = 0.2, fps: float | None = 14.9) -> Heartbeat:
    return Heartbeat(received_at=NOW - age, clock_skew_s=skew, fps=fps)


def samples(rate: float, dt: float = 30.0, dropped_share: float = 0.0) -> tuple[Sample, ...]:
    """Two heartbeats ``dt`` apart whose counters rose by ``rate`` frames a second (a share of them dropped)."""
    frames = rate * dt
    dropped = round(frames * dropped_share)
    first = Sample(NOW - 10 - dt, 10_000, 50)
    return first, Sample(NOW - 10, 10_000 + round(frames) - dropped, 50 + dropped)


GOOD = Facts(
    now=NOW,
    heartbeat=beat(),
    samples=samples(15.0),
    people=People(last_seen_at=NOW - 60),
    layout=Layout(zones=3, privacy_regions=1, source="device", at=NOW - 5),
    enabled_webhooks=1,
    test_alert=TestAlert("e1", NOW - 30, (Delivery("nurse-call", True, "delivered", 1, 200),)),
)


def test_a_well_commissioned_device_is_green_on_every_check():
    checks = evaluate(GOOD)
    assert [c.id for c in checks] == ["clock", "frame_rate", "people", "layout", "test_alert"]
    assert [c.status for c in checks] == ["ok"] * 5
    assert overall(checks) == "ok"
    body = report(GOOD)
    assert body["status"] == "ok" and body["expected_fps"] == DEFAULT_EXPECTED_FPS == 15.0
    assert body["thresholds"]["max_clock_skew_s"] == MAX_CLOCK_SKEW_S
    assert body["test_alert"]["deliveries"][0]["endpoint"] == "nurse-call"


@pytest.mark.parametrize(
    ("statuses", "expected"),
    [
        (["ok", "ok"], "ok"),
        (["ok", "unknown"], "unknown"),
        (["unknown", "failing", "ok"], "failing"),
        (["failing"], "failing"),
    ],
)
def test_green_only_when_every_check_holds(statuses, expected):
    assert overall([Check(str(i), "t", s, "r") for i, s in enumerate(statuses)]) == expected


@pytest.mark.parametrize(
    ("heartbeat", "status", "reason"),
    [
        (None, "unknown", "has not sent a heartbeat yet"),
        (beat(age=HEARTBEAT_FRESH_S + 1), "unknown", "No heartbeat for 5 min"),
        (beat(skew=0.0), "ok", "The device clock matches the server's."),
        (beat(skew=-0.04), "ok", "matches"),
        (beat(skew=0.3), "ok", "0.3 s ahead of the server's (up to 2 s is fine)."),
        (beat(skew=MAX_CLOCK_SKEW_S), "ok", "2.0 s ahead of the server's (up to 2 s is fine)"),
        (beat(skew=-MAX_CLOCK_SKEW_S), "ok", "2.0 s behind the server's (up to 2 s is fine)"),
        (beat(skew=2.5), "failing", "2.5 s ahead of the server's (more than 2 s): check that the device can reach"),
        (beat(skew=-7200.0), "failing", "2 h behind the server's"),
        (beat(skew=3 * 86400.0), "failing", "3 days ahead"),
    ],
)
def test_clock(heartbeat, status, reason):
    got = check_clock(replace(GOOD, heartbeat=heartbeat))
    assert (got.status, got.title) == (status, "Clock synchronised")
    assert reason in got.reason


@pytest.mark.parametrize(
    ("rate", "dropped_share", "expected_fps", "status", "reason"),
    [
        (15.0, 0.0, 15.0, "ok", "delivers 15.0 fps; 12.0 fps needed (80% of the 15 fps expected by default)"),
        (12.0, 0.0, 15.0, "ok", "delivers 12.0 fps"),  # exactly 80 %
        (11.8, 0.0, 15.0, "failing", "delivers 11.8 fps; 12.0 fps needed"),
        (15.0, 0.5, 15.0, "ok", "delivers 15.0 fps"),  # dropped frames were delivered by the camera too
        (0.0, 0.0, 15.0, "failing", "delivers no frames"),
        (20.0, 0.0, 30.0, "failing", "24.0 fps needed (80% of the 30 fps configured)"),
    ],
)
def test_frame_rate_between_the_two_latest_heartbeats(rate, dropped_share, expected_fps, status, reason):
    origin = "config" if expected_fps != DEFAULT_EXPECTED_FPS else "default"
    facts = replace(GOOD, samples=samples(rate, dropped_share=dropped_share), expected_fps=expected_fps,
                    expected_from=origin)  # fmt: skip
    got = check_frame_rate(facts)
    assert got.status == status
    assert reason in got.reason


def test_frame_rate_with_one_heartbeat_or_a_restart_falls_back_to_the_reported_rate():
    one = replace(GOOD, samples=samples(15.0)[1:])
    assert check_frame_rate(one).status == "ok"  # analysed 14.9 fps since the start: delivered at least that
    assert "at least 14.9 fps" in check_frame_rate(one).reason
    slow = replace(one, heartbeat=beat(fps=3.0))
    assert check_frame_rate(slow).status == "unknown"  # a slow start-up is not yet a slow camera
    assert "after the next heartbeat" in check_frame_rate(slow).reason
    restarted = (Sample(NOW - 40, 90_000, 10), Sample(NOW - 10, 400, 0))
    assert delivered_rate(restarted) is None
    assert delivered_rate((Sample(NOW, 0, 0), Sample(NOW, 10, 0))) is None  # no time between them
    assert check_frame_rate(replace(GOOD, samples=restarted, heartbeat=beat(fps=None))).status == "unknown"
    assert check_frame_rate(replace(GOOD, heartbeat=None)).status == "unknown"
    assert MIN_RATE_FRACTION == 0.8


@pytest.mark.parametrize(
    ("people", "heartbeat", "status", "reason"),
    [
        (People(last_seen_at=NOW - 60), beat(), "ok", "A person was seen 60 s ago."),
        (People(last_seen_at=NOW - PEOPLE_WINDOW_S), None, "ok", "seen 10 min ago"),  # a report even if silent now
        (People(last_seen_at=NOW - PEOPLE_WINDOW_S - 1), beat(), "failing", "Nobody seen in the last 10 min: walk"),
        (People(), beat(), "failing", "Nobody seen in the last 10 min"),
        (People(in_room=1), beat(), "ok", "1 person in the room now"),
        (People(in_room=3), beat(), "ok", "3 people in the room now"),
        (People(in_room=0), beat(), "failing", "Nobody seen"),
        (People(in_room=2), beat(age=HEARTBEAT_FRESH_S + 60), "unknown", "No heartbeat for 6 min"),
        (People(), None, "unknown", "has not sent a heartbeat yet"),
    ],
)
def test_people(people, heartbeat, status, reason):
    got = check_people(replace(GOOD, people=people, heartbeat=heartbeat))
    assert got.status == status
    assert reason in got.reason


@pytest.mark.parametrize(
    ("layout", "status", "reason"),
    [
        (None, "unknown", "Not known yet"),
        (Layout(0, 0, "device", NOW - 5), "failing", "No zones (as the device reported 5.0 s ago): draw"),
        (Layout(0, 2, "config", NOW - 120), "failing", "No zones (in the configuration the device applied 2 min ago)"),
        (
            Layout(2, 0, "device", NOW),
            "failing",
            "2 zones and 0 privacy regions (as the device reported 0.0 s ago): draw a privacy region",
        ),
        (Layout(1, 1, "device", NOW - 3), "ok", "1 zone and 1 privacy region, as the device reported 3.0 s ago."),
        (Layout(4, 2, "config", NOW - 7200), "ok", "4 zones and 2 privacy regions, in the configuration"),
    ],
)
def test_zones_and_privacy_regions(layout, status, reason):
    got = check_layout(replace(GOOD, layout=layout))
    assert got.status == status
    assert reason in got.reason


def sent(*deliveries: Delivery, age: float = 20.0) -> TestAlert:
    return TestAlert("e1", NOW - age, deliveries)


NURSE_OK = Delivery("nurse-call", True, "delivered", 1, 200)
NURSE_PENDING = Delivery("nurse-call", True, "pending", 0, None)
NURSE_RETRYING = Delivery("nurse-call", True, "pending", 2, 503)
NURSE_DEAD = Delivery("nurse-call", True, "dead", 10, 404)
BMS_UNREACHABLE = Delivery("bms", True, "pending", 1, None)


@pytest.mark.parametrize(
    ("test", "webhooks", "status", "reason"),
    [
        (None, 0, "failing", "No enabled webhook: add (or enable)"),
        (None, 2, "unknown", "Not tested yet: send a test alert."),
        (sent(NURSE_OK, age=TEST_ALERT_VALID_S + 1), 1, "unknown", "The last test alert was 24 h ago: send another."),
        (sent(NURSE_OK), 1, "ok", "The test alert sent 20 s ago reached nurse-call."),
        (sent(NURSE_OK, BMS_UNREACHABLE), 2, "ok", "reached nurse-call; bms could not be reached."),
        (sent(replace(NURSE_OK, enabled=False)), 1, "failing", "No enabled webhook got the test alert"),
        (sent(), 1, "failing", "sent before one was enabled"),
        (sent(), 0, "failing", "No enabled webhook: add (or enable)"),
        (sent(NURSE_PENDING), 1, "unknown", "still being delivered: nurse-call has not been tried yet."),
        (sent(NURSE_RETRYING), 1, "unknown", "still being delivered: nurse-call answered HTTP 503."),
        (sent(NURSE_DEAD), 1, "failing", "was not delivered: nurse-call answered HTTP 404."),
    ],
)
def test_test_alert(test, webhooks, status, reason):
    got = check_test_alert(replace(GOOD, test_alert=test, enabled_webhooks=webhooks))
    assert got.status == status
    assert reason in got.reason


@pytest.mark.parametrize(
    ("seconds", "words"),
    [
        (0.44, "0.4 s"),
        (-3.0, "3.0 s"),
        (42.0, "42 s"),
        (300.0, "5 min"),
        (3600.0, "1 h"),
        (12_000.0, "3 h 20 min"),
        (5 * 86400.0, "5 days"),
    ],
)
def test_durations_read_at_a_glance(seconds, words):
    assert duration(seconds) == words
