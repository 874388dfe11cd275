"""Critical alerts in the console (issue 15): a banner on every page with the room, the camera and how long ago,
the tab title, the room marked on the fleet page until someone acknowledges it, an optional sound and desktop
notification; alerts read as plain labels with the device's name and relative times refreshed each minute; the
device's ``resolved`` closes its fall alert by the system, and a room's repeated falls are one alert."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed (pip install -e '.[dev]')")

from playwright.sync_api import expect

from tests.browser.simfleet import wait_for

A11Y_CHECK = (Path(__file__).parent / "a11y_check.js").read_text()

# Sound and desktop notifications without speakers or a desktop: count what the console asks of them. The
# browser's permission, and how often it was asked, survive a reload (localStorage), as the real ones do.
FAKE_AUDIO_AND_NOTIFICATIONS = """
window.__tones = 0;
window.__notes = [];
window.AudioContext = class {
  constructor() { this.state = "running"; this.currentTime = 0; this.destination = {}; }
  resume() { return Promise.resolve(); }
  createOscillator() {
    return {frequency: {value: 0}, connect: n => n, start: () => { window.__tones += 1; }, stop: () => {}};
  }
  createGain() {
    return {gain: {setValueAtTime: () => {}, exponentialRampToValueAtTime: () => {}}, connect: n => n};
  }
};
window.Notification = class {
  constructor(title, options) { window.__notes.push({title, body: options.body, tag: options.tag}); }
  static get permission() { return localStorage.getItem("test.permission") || "default"; }
  static requestPermission() {
    localStorage.setItem("test.asked", String(Number(localStorage.getItem("test.asked") || 0) + 1));
    localStorage.setItem("test.permission", "granted");
    return Promise.resolve("granted");
  }
  close() {}
};
"""


def banner_line(page, room):
    return page.locator(f'#alert-banner li[data-room="{room}"]')


def fleet_row(page, sim, name):
    return page.locator(f'table.fleet tr[data-device="{sim.devices[name].device_id}"]')


def test_a_critical_alert_is_on_every_page_and_in_the_title_until_someone_acknowledges_it(open_console, sim):
    page = open_console("olga", path="#/fleet")
    expect(page.get_by_role("heading", name="Fleet")).to_be_visible()
    expect(page.locator("#alert-banner")).to_be_hidden()
    expect(page).to_have_title("Fleet · WardSight")

    sim.devices["cam-3b12"].send_event("fall", "fall", "critical", track_id=1, drop=0.4)
    line = banner_line(page, "3B-12")
    expect(line).to_be_visible(timeout=10000)  # pushed by the stream, no reload
    expect(line).to_contain_text("Fall in room 3B-12 · cam-3b12 · just now")
    expect(page).to_have_title("(1) FALL room 3B-12 — Fleet · WardSight")
    row = fleet_row(page, sim, "cam-3b12")
    expect(row).to_have_class(re.compile(r"\balarm\b"))
    expect(row.get_by_role("link", name="Fall, just now")).to_be_visible()
    expect(fleet_row(page, sim, "cam-3b14")).not_to_have_class(re.compile(r"\balarm\b"))

    # The same person still on the floor: the same alert, counted, not a second banner line.
    sim.devices["cam-3b12"].send_event("fall", "still_on_floor", "critical", track_id=1)
    expect(line).to_contain_text("2 alerts, latest: Still on the floor")
    expect(page.locator("#alert-banner li")).to_have_count(1)

    for route, title in (("#/models", "Models and rollouts"), ("#/jobs", "Jobs"), ("#/audit", "Audit log")):
        page.goto(f"/{route}")
        expect(page.locator("#page-title")).to_be_focused()  # the banner does not take the focus
        expect(line).to_be_visible()
        expect(page).to_have_title(f"(1) FALL room 3B-12 — {title} · WardSight")
    assert page.evaluate(A11Y_CHECK) == []

    viewer = open_console("victor", path="#/jobs")
    expect(banner_line(viewer, "3B-12")).to_be_visible()
    expect(banner_line(viewer, "3B-12").get_by_role("button")).to_have_count(0)  # viewers cannot acknowledge

    page.goto("/#/fleet")
    line.get_by_role("button", name="Acknowledge critical fall in room 3B-12").click()
    expect(page.locator("#alert-banner")).to_be_hidden()
    expect(page).to_have_title("Fleet · WardSight")
    expect(row).not_to_have_class(re.compile(r"\balarm\b"))
    expect(viewer.locator("#alert-banner")).to_be_hidden()  # everyone's banner goes
    expect(viewer).to_have_title("Jobs · WardSight")
    rows = sim.query("SELECT acknowledged_by FROM alert_states")
    assert rows == [{"acknowledged_by": "user:olga"}]
    assert page.console_errors == []


def test_alerts_read_as_labels_with_the_camera_name_and_relative_times_that_refresh(open_console, sim):
    page = open_console("olga", path="#/alerts")
    page.clock.install()  # fake timers from the next load: a minute passes at once
    page.reload()
    expect(page.locator("#feed-connection")).to_have_text("connected")
    cam = sim.devices["cam-3b14"]
    first = cam.send_event("fall", "fall", "critical", track_id=3)
    item = page.locator(f'[data-alert-id="{first}"]')
    head = item.locator(".alert-head")
    expect(head).to_contain_text("Fall in room 3B-14 · cam-3b14 · ")
    expect(head).to_contain_text("(just now)")
    expect(head).not_to_contain_text("fall · fall")
    expect(item.locator(".alert-who")).to_contain_text("open for under a minute")
    expect(page.locator("#alert-announcer")).to_have_text("New critical fall in room 3B-14")
    expect(head.get_by_role("link", name="cam-3b14")).to_have_attribute("href", f"#/devices/{cam.device_id}")

    for _ in range(5):  # a looping clip: more falls from the room while the alert is open
        cam.send_event("fall", "fall", "critical", track_id=4)
    cam.send_event("fall", "still_on_floor", "critical", track_id=3)
    expect(item.locator(".alert-group")).to_contain_text(
        "7 alerts from this room since it opened; latest: Still on the floor"
    )
    expect(page.locator('#alert-feed > li[data-room="3B-14"]')).to_have_count(1)
    expect(page.locator("#alert-announcer")).to_have_text("Again: critical still on the floor in room 3B-14 (7 alerts)")

    page.clock.fast_forward("02:05")
    expect(head).to_contain_text("(2 min ago)")
    expect(item.locator(".alert-who")).to_contain_text("open for 2 min")
    expect(banner_line(page, "3B-14")).to_contain_text("Fall in room 3B-14 · cam-3b14 · 2 min ago")
    page.clock.fast_forward("10:00")
    expect(item.locator(".alert-who")).to_contain_text("open for 12 min")


def test_the_devices_resolved_closes_its_fall_alert_by_the_system(open_console, sim):
    page = open_console("olga", path="#/alerts")
    expect(page.locator("#feed-connection")).to_have_text("connected")
    cam = sim.devices["cam-4a02"]
    fall = cam.send_event("fall", "fall", "critical", track_id=9)
    item = page.locator(f'[data-alert-id="{fall}"]')
    expect(item).to_be_visible()
    expect(banner_line(page, "4A-02")).to_be_visible()
    cam.send_event("fall", "resolved", "info", track_id=9, got_up=True)
    expect(item).to_have_count(0)  # resolved alerts are hidden by default
    expect(banner_line(page, "4A-02")).to_have_count(0)
    page.get_by_label("Show resolved alerts").check()
    expect(item.locator(".alert-who")).to_contain_text("Resolved by the system (got up) at")
    entries = wait_for(lambda: sim.query("SELECT actor, action, details FROM audit WHERE target = ?",
                                         [f"event:{fall}"]), what="the audit entry")  # fmt: skip
    assert [(e["actor"], e["action"]) for e in entries] == [("system", "alert.resolve")]
    assert '"reason":"got up"' in entries[0]["details"]


def test_sound_and_desktop_notifications_are_opt_in_asked_once_and_remembered(open_console, sim):
    page = open_console("olga", path="#/jobs")
    page.context.add_init_script(FAKE_AUDIO_AND_NOTIFICATIONS)
    page.reload()
    expect(page.get_by_role("heading", name="Jobs")).to_be_visible()
    sim.devices["cam-3b15"].send_event("fall", "fall", "critical", track_id=1)
    expect(banner_line(page, "3B-15")).to_be_visible()
    sound = page.get_by_label("Sound", exact=True)
    notify = page.get_by_label("Desktop notifications")
    expect(sound).not_to_be_checked()  # off until someone turns them on
    expect(notify).not_to_be_checked()
    assert page.evaluate("[window.__tones, window.__notes.length]") == [0, 0]

    sound.check()
    notify.check()
    expect(notify).to_be_checked()
    assert page.evaluate("localStorage.getItem('test.asked')") == "1"
    sim.devices["cam-4a05"].send_event("fall", "fall", "critical", track_id=2)
    expect(banner_line(page, "4A-05")).to_be_visible()
    page.wait_for_function("window.__notes.length === 1")
    assert page.evaluate("window.__notes[0].title") == "Fall: room 4A-05"
    assert page.evaluate("window.__tones") == 3

    page.reload()  # remembered in this browser; the browser is not asked again
    expect(page.get_by_label("Sound", exact=True)).to_be_checked()
    expect(page.get_by_label("Desktop notifications")).to_be_checked()
    page.get_by_label("Desktop notifications").uncheck()
    page.get_by_label("Desktop notifications").check()
    assert page.evaluate("localStorage.getItem('test.asked')") == "1"
    assert page.evaluate("localStorage.getItem('wardsight.alerts.sound')") == "on"
