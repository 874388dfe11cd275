"""The commissioning checks as pure decisions: facts about one device and the server's clock in, each check's
verdict (``ok``, ``failing`` or ``unknown``) with a one-line reason out. No I/O: :mod:`fleet.commissioning.facts`
gathers the facts.

The thresholds, and why:

- :data:`MAX_CLOCK_SKEW_S` (2 s): events carry the device's clock, and alert times, report buckets and the
  order of a fall and its follow-ups rest on it. A Raspberry Pi has no battery-backed clock: until time
  sync (NTP) succeeds after a boot its clock is minutes to years off, and once synced it is within
  milliseconds. 2 s leaves room for the heartbeat's trip over the network while catching an unsynced clock.
  The skew is the latest heartbeat's ``sent_at`` minus when the server received it.
- :data:`HEARTBEAT_FRESH_S` (5 min): readings older than this say nothing about the device now (it heartbeats
  every 30 s by default), so the checks built on them are ``unknown``.
- :data:`MIN_RATE_FRACTION` (80 %) of the expected frame rate: the rate the camera delivers (frames analysed
  plus frames dropped because analysis was busy, between the two latest heartbeats). The expected rate is the
  ``source.fps`` of the configuration last applied from the console for a Pi camera or AI Camera, else the
  device default (:data:`DEFAULT_EXPECTED_FPS`, 15 fps). Below 80 % the camera is starved (a loose cable, a
  dark room lengthening the exposure, a network camera on a weak link) and the apps see too few frames.
- :data:`PEOPLE_WINDOW_S` (10 min): someone must have been seen this recently (the occupancy counts the device
  reports, or the live view's people), or be in the room now: the installer walks through the room in view.
- Zones and privacy regions: at least one of each (:data:`REQUIRE_PRIVACY_REGION`), as the device itself last
  reported them (live view) or, when that is older or absent, as in the configuration it last applied. A
  privacy region is required on purpose: it is the installer's deliberate decision about what the camera must
  never analyse (bathroom door, window, a neighbouring bed).
- A test alert (``system`` / ``test_alert``, data ``test: true``) delivered to at least one enabled webhook
  within :data:`TEST_ALERT_VALID_S` (24 h).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal

from wardsight.device_config import SourceConfig

Status = Literal["ok", "failing", "unknown"]

MAX_CLOCK_SKEW_S = 2.0
HEARTBEAT_FRESH_S = 300.0
MIN_RATE_FRACTION = 0.8
DEFAULT_EXPECTED_FPS: float = SourceConfig.model_fields["fps"].default
PEOPLE_WINDOW_S = 600.0
REQUIRE_PRIVACY_REGION = True
TEST_ALERT_VALID_S = 24 * 3600.0


# ---- the facts --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Heartbeat:
    """The device's latest heartbeat as the server stored it."""

    received_at: float  # server clock
    clock_skew_s: float  # device sent_at minus server received_at; positive: the device clock is ahead
    fps: float | None  # frames analysed per second since the agent started


@dataclass(frozen=True)
class Sample:
    """One heartbeat's frame counters (from the health samples)."""

    received_at: float
    frames_processed: int
    frames_dropped: int


@dataclass(frozen=True)
class Layout:
    """The device's zones and privacy regions as the server knows them, and from where."""

    zones: int
    privacy_regions: int
    source: Literal["device", "config"]  # reported by the device (live view) / in the configuration it applied
    at: float  # when the server learnt it (server clock)


@dataclass(frozen=True)
class People:
    last_seen_at: float | None = None  # the latest report of someone in view (server clock)
    in_room: int | None = None  # the room count the device last reported (recently), if any


@dataclass(frozen=True)
class Delivery:
    endpoint: str
    enabled: bool
    status: Literal["pending", "delivered", "dead"]
    attempts: int
    last_status: int | None  # the HTTP status of the latest attempt; None: none yet, or no answer


@dataclass(frozen=True)
class TestAlert:
    __test__ = False  # not a pytest test class

    event_id: str
    sent_at: float
    deliveries: tuple[Delivery, ...] = ()


@dataclass(frozen=True)
class Facts:
    now: float
    heartbeat: Heartbeat | None = None
    samples: tuple[Sample, ...] = ()  # the latest heartbeats' counters, oldest first
    expected_fps: float = DEFAULT_EXPECTED_FPS
    expected_from: Literal["config", "default"] = "default"
    people: People = People()
    layout: Layout | None = None
    enabled_webhooks: int = 0
    test_alert: TestAlert | None = None


@dataclass(frozen=True)
class Check:
    id: str
    title: str
    status: Status
    reason: str


# ---- wording ------------------------------------------------------------------------------------------------


def duration(seconds: float) -> str:
    """``seconds`` in words a person reads at a glance: ``0.4 s``, ``12 s``, ``5 min``, ``3 h 20 min``, ``4 days``."""
    s = abs(seconds)
    if s < 10:
        return f"{s:.1f} s"
    if s < 90:
        return f"{s:.0f} s"
    if s < 3600:
        return f"{s / 60:.0f} min"
    if s < 2 * 86400:
        hours, minutes = divmod(round(s / 60), 60)
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    return f"{s / 86400:.0f} days"


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def _stale(facts: Facts) -> str | None:
    """Why the device's readings say nothing about now (no heartbeat, or an old one); None when they are fresh."""
    hb = facts.heartbeat
    if hb is None:
        return "The device has not sent a heartbeat yet: check that it is powered, on the network and enrolled."
    age = facts.now - hb.received_at
    if age > HEARTBEAT_FRESH_S:
        return f"No heartbeat for {duration(age)}: the device is offline or cannot reach the server."
    return None


# ---- the checks ---------------------------------------------------------------------------------------------


def check_clock(facts: Facts) -> Check:
    title = "Clock synchronised"
    stale = _stale(facts)
    if stale is not None or facts.heartbeat is None:
        return Check("clock", title, "unknown", stale or "")
    skew = facts.heartbeat.clock_skew_s
    if abs(skew) < 0.05:
        return Check("clock", title, "ok", "The device clock matches the server's.")
    apart = f"The device clock is {duration(skew)} {'ahead of' if skew > 0 else 'behind'} the server's"
    if abs(skew) <= MAX_CLOCK_SKEW_S:
        return Check("clock", title, "ok", f"{apart} (up to {MAX_CLOCK_SKEW_S:g} s is fine).")
    return Check(
        "clock",
        title,
        "failing",
        f"{apart} (more than {MAX_CLOCK_SKEW_S:g} s): check that the device can reach the hospital's time"
        " server (NTP).",
    )


def delivered_rate(samples: Sequence[Sample]) -> float | None:
    """Frames per second the camera delivered (analysed + dropped) between the two latest samples; None without
    two samples of the same agent run (a restart resets the counters) a positive time apart."""
    if len(samples) < 2:
        return None
    a, b = samples[-2], samples[-1]
    dt = b.received_at - a.received_at
    frames = (b.frames_processed + b.frames_dropped) - (a.frames_processed + a.frames_dropped)
    if dt <= 0 or b.frames_processed < a.frames_processed or b.frames_dropped < a.frames_dropped:
        return None
    return frames / dt


def check_frame_rate(facts: Facts) -> Check:
    title = "Camera frame rate"
    stale = _stale(facts)
    if stale is not None or facts.heartbeat is None:
        return Check("frame_rate", title, "unknown", stale or "")
    need = MIN_RATE_FRACTION * facts.expected_fps
    origin = "configured" if facts.expected_from == "config" else "expected by default"
    target = f"{need:.1f} fps needed ({MIN_RATE_FRACTION:.0%} of the {facts.expected_fps:g} fps {origin})"
    rate = delivered_rate(facts.samples)
    if rate is None:
        fps = facts.heartbeat.fps
        if fps is not None and fps >= need:  # frames analysed is a lower bound of frames delivered
            return Check("frame_rate", title, "ok", f"The camera delivers at least {fps:.1f} fps; {target}.")
        return Check(
            "frame_rate", title, "unknown", f"Measuring: the rate is known after the next heartbeat ({target})."
        )
    if rate >= need:
        return Check("frame_rate", title, "ok", f"The camera delivers {rate:.1f} fps; {target}.")
    if rate <= 0:
        problem = "The camera delivers no frames"
        hint = "check its cable or stream address and that nothing else uses it."
    else:
        problem = f"The camera delivers {rate:.1f} fps"
        hint = "check the camera's connection and the room's lighting (a dark room lengthens the exposure)."
    return Check("frame_rate", title, "failing", f"{problem}; {target}: {hint}")


def check_people(facts: Facts) -> Check:
    title = "People seen"
    people = facts.people
    if people.last_seen_at is not None and facts.now - people.last_seen_at <= PEOPLE_WINDOW_S:
        ago = max(0.0, facts.now - people.last_seen_at)
        return Check("people", title, "ok", f"A person was seen {duration(ago)} ago.")
    stale = _stale(facts)
    if stale is not None:
        return Check("people", title, "unknown", stale)
    if people.in_room:
        who = "1 person" if people.in_room == 1 else f"{people.in_room} people"
        return Check("people", title, "ok", f"{who} in the room now, by the device's latest count.")
    window = duration(PEOPLE_WINDOW_S)
    return Check(
        "people",
        title,
        "failing",
        f"Nobody seen in the last {window}: walk through the room in view of the camera, then look again.",
    )


def check_layout(facts: Facts) -> Check:
    title = "Zones and privacy regions"
    layout = facts.layout
    if layout is None:
        return Check(
            "layout",
            title,
            "unknown",
            "Not known yet: the device reports them while an operator has this page open (give it a few"
            " seconds), or once zones are saved below.",
        )
    where = (
        f"as the device reported {duration(facts.now - layout.at)} ago"
        if layout.source == "device"
        else f"in the configuration the device applied {duration(facts.now - layout.at)} ago"
    )
    have = f"{_plural(layout.zones, 'zone')} and {_plural(layout.privacy_regions, 'privacy region')}"
    if layout.zones == 0:
        return Check("layout", title, "failing", f"No zones ({where}): draw the bed, door and other zones below.")
    if REQUIRE_PRIVACY_REGION and layout.privacy_regions == 0:
        return Check(
            "layout",
            title,
            "failing",
            f"{have} ({where}): draw a privacy region over anything the camera must never analyse"
            " (bathroom door, window, a neighbouring bed).",
        )
    return Check("layout", title, "ok", f"{have}, {where}.")


def _delivery_problem(d: Delivery) -> str:
    # No error text: it may name hosts, and viewers read this (operators see it on the Webhooks page).
    if d.last_status is not None:
        return f"{d.endpoint} answered HTTP {d.last_status}"
    if d.attempts:
        return f"{d.endpoint} could not be reached"
    return f"{d.endpoint} has not been tried yet"


NO_WEBHOOK = "No enabled webhook: add (or enable) the hospital's endpoint, then send a test alert."
# Test alerts go to every enabled webhook whatever its filters; none got this one, so they were enabled after it.
FILTERED_OUT = "No enabled webhook got the test alert (it was sent before one was enabled): send another."


def check_test_alert(facts: Facts) -> Check:
    def verdict(status: Status, reason: str) -> Check:
        return Check("test_alert", "Test alert delivered", status, reason)

    test = facts.test_alert
    if test is None or facts.now - test.sent_at > TEST_ALERT_VALID_S:
        if facts.enabled_webhooks == 0:
            return verdict("failing", NO_WEBHOOK)
        if test is None:
            return verdict("unknown", "Not tested yet: send a test alert.")
        return verdict("unknown", f"The last test alert was {duration(facts.now - test.sent_at)} ago: send another.")
    sent = f"The test alert sent {duration(max(0.0, facts.now - test.sent_at))} ago"
    live = [d for d in test.deliveries if d.enabled]
    delivered = [d.endpoint for d in live if d.status == "delivered"]
    problems = "; ".join(_delivery_problem(d) for d in live if d.status != "delivered")
    if delivered:
        return verdict("ok", f"{sent} reached {', '.join(delivered)}" + (f"; {problems}." if problems else "."))
    if not live:
        return verdict("failing", FILTERED_OUT if facts.enabled_webhooks else NO_WEBHOOK)
    if any(d.status == "pending" for d in live):
        return verdict("unknown", f"{sent} is still being delivered: {problems}.")
    return verdict("failing", f"{sent} was not delivered: {problems}.")


CHECKS = (check_clock, check_frame_rate, check_people, check_layout, check_test_alert)


def evaluate(facts: Facts) -> list[Check]:
    """Every check, in the order the console lists them."""
    return [check(facts) for check in CHECKS]


def overall(checks: Sequence[Check]) -> Status:
    """``ok`` (green) when every check holds, ``failing`` when one fails, else ``unknown``."""
    if all(c.status == "ok" for c in checks):
        return "ok"
    return "failing" if any(c.status == "failing" for c in checks) else "unknown"


def thresholds() -> dict[str, Any]:
    """The thresholds, for the API reply (so a reader sees what "ok" meant)."""
    return {
        "max_clock_skew_s": MAX_CLOCK_SKEW_S,
        "heartbeat_fresh_s": HEARTBEAT_FRESH_S,
        "min_rate_fraction": MIN_RATE_FRACTION,
        "default_expected_fps": DEFAULT_EXPECTED_FPS,
        "people_window_s": PEOPLE_WINDOW_S,
        "require_privacy_region": REQUIRE_PRIVACY_REGION,
        "test_alert_valid_s": TEST_ALERT_VALID_S,
    }


def report(facts: Facts) -> dict[str, Any]:
    """The reply of ``GET /api/v1/devices/{id}/commissioning`` (without the device id)."""
    checks = evaluate(facts)
    test = facts.test_alert
    return {
        "now": facts.now,
        "status": overall(checks),
        "checks": [asdict(c) for c in checks],
        "expected_fps": facts.expected_fps,
        "expected_fps_from": facts.expected_from,
        "test_alert": None if test is None else asdict(test),
        "thresholds": thresholds(),
    }
