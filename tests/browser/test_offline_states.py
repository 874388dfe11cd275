"""Offline means offline (issue 15, items 8 and 9): a device not heard from shows no live frame rate or temperature,
only the last values greyed with their age; losing the fleet server shows a banner and keeps the last data, greyed
as stale, until the server answers again."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest

pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed (pip install -e '.[dev]')")

from playwright.sync_api import expect

from tests.browser.simfleet import Readings, SimFleet, start_sim_fleet

BANNER = re.compile(r"^Lost contact with the fleet server since \d\d:\d\d — showing the last data$")


@pytest.fixture(scope="module")
def sim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimFleet]:
    """A small fleet: two heartbeating devices and one enrolled but never heard from."""
    fleet = start_sim_fleet(tmp_path_factory.mktemp("offline"))
    try:
        fleet.add("cam-5c01", "5C-01", Readings(fps=12.3, cpu_temp_c=55.0))
        fleet.add("cam-5c02", "5C-02", Readings(fps=14.0, cpu_temp_c=50.0))
        fleet.add("cam-5c03", "5C-03", start=False)
        yield fleet
    finally:
        fleet.devices.pop("cam-5c03", None)  # never started: nothing to stop
        fleet.stop()


def _row(page, name: str):
    return page.locator("table.fleet tr", has=page.get_by_role("link", name=name, exact=True))


def test_a_silent_device_shows_no_live_readings_only_greyed_last_values(open_console, sim):
    page = open_console("victor")
    row = _row(page, "cam-5c01")
    expect(row.locator("td.fps")).to_have_text(re.compile(r"^1\d\.\d fps$"))
    # Enrolled, never heard from: "not heard from yet" and "never", not "Last heard 20 s ago".
    never = _row(page, "cam-5c03")
    expect(never).to_contain_text("not heard from yet")
    expect(never.locator("td").last).to_have_text("never")

    sim.devices["cam-5c01"].silent.set()
    try:
        fps = row.locator("td.fps")
        expect(fps).to_have_text(re.compile(r"^— \(1\d\.\d fps, \d+ s ago\)$"), timeout=20000)
        expect(fps.locator(".stale-value")).to_have_css("color", "rgb(74, 74, 74)")  # --muted
        expect(row.locator("td.temp")).to_have_text(re.compile(r"^— \(CPU 5\d °C, \d+ s ago\)$"))
        expect(row).to_contain_text("offline since")
        expect(_row(page, "cam-5c02").locator("td.fps")).to_have_text(re.compile(r"^1\d\.\d fps$"))

        # The device page says the same: no live frame rate, the last one greyed with its age.
        row.get_by_role("link", name="cam-5c01", exact=True).click()
        expect(page.get_by_role("heading", name="Device cam-5c01")).to_be_visible()
        health = page.locator("section", has=page.get_by_role("heading", name="Health"))
        frame_rate = health.locator("dt:text-is('Frame rate') + dd")
        expect(frame_rate).to_have_text(re.compile(r"^— \(1\d\.\d fps, \d+ s ago\)$"), timeout=10000)
        expect(page.get_by_text("not heard from yet")).to_have_count(0)
        expect(page.locator("dt:text-is('Last heard') + dd")).to_have_text(re.compile(r"\d+ s ago"))
    finally:
        sim.devices["cam-5c01"].silent.clear()
    expect(_row_on_fleet(page, "cam-5c01").locator("td.fps")).to_have_text(re.compile(r"^1\d\.\d fps$"), timeout=20000)
    assert page.console_errors == []


def _row_on_fleet(page, name: str):
    page.evaluate("location.hash = '#/fleet'")
    return _row(page, name)


def test_losing_the_server_shows_a_banner_and_keeps_the_last_data(open_console, sim):
    page = open_console("victor")
    row = _row(page, "cam-5c02")
    expect(row.locator("td.fps")).to_have_text(re.compile(r"fps"))
    banner = page.locator("#server-banner")
    expect(banner).to_be_hidden()

    page.route("**/api/**", lambda route: route.abort())
    expect(banner).to_be_visible(timeout=10000)
    expect(banner).to_have_text(BANNER)
    expect(banner).to_have_attribute("role", "alert")
    expect(banner).to_have_attribute("aria-live", "polite")
    expect(page.locator("#page")).to_have_class(re.compile(r"\bstale\b"))
    page.wait_for_timeout(2500)  # a few failed refreshes later the table is still there
    expect(row).to_be_visible()
    expect(row.locator("td.fps")).to_have_text(re.compile(r"fps"))
    expect(page.locator("#status")).not_to_contain_text("Cannot load")

    # A device page opened while the server is unreachable is not "Device not found"; it loads once it is back.
    page.evaluate("id => { location.hash = '#/devices/' + id; }", sim.devices["cam-5c02"].device_id)
    expect(page.get_by_role("heading", name=re.compile(r"^Device "))).to_be_visible()
    expect(page.get_by_text("Device not found")).to_have_count(0)

    page.unroute("**/api/**")
    expect(banner).to_be_hidden(timeout=10000)
    expect(page.locator("#page")).not_to_have_class(re.compile(r"\bstale\b"))
    expect(page.get_by_role("heading", name="Device cam-5c02")).to_be_visible(timeout=10000)
    expect(page.get_by_role("heading", name="Health")).to_be_visible()

    # A gateway saying the server is down (503) counts as lost contact too; the device page keeps its data.
    page.route("**/api/**", lambda route: route.fulfill(status=503, body="down"))
    expect(banner).to_have_text(BANNER, timeout=10000)
    expect(page.get_by_role("heading", name="Device cam-5c02")).to_be_visible()
    expect(page.get_by_text("Device not found")).to_have_count(0)
    expect(page.get_by_text("Cannot load health")).to_have_count(0)
    page.unroute("**/api/**")
    expect(banner).to_be_hidden(timeout=10000)
    assert page.console_errors == []
