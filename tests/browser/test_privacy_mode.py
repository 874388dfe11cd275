"""Every device's privacy mode in the console (issue 21, item 3): a column and a filter on the fleet page, a fact on
the device page; simulated devices report it in their heartbeats through the firmware's client (``simfleet.py``)."""

from __future__ import annotations

import pytest

pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed (pip install -e '.[dev]')")

from playwright.sync_api import expect

from tests.browser.simfleet import Readings, wait_for

SENSOR_ONLY = "Sensor only (no image reaches the computer)"


def test_the_privacy_mode_is_shown_and_filters_the_fleet(open_console, sim):
    ai_camera = sim.add("cam-5d01", "5D-01", Readings(accelerator="imx500", privacy_mode="sensor-only"))
    older = sim.add("cam-5d02", "5D-02", Readings(privacy_mode=None))  # an agent from before the field
    for device in (ai_camera, older):
        wait_for(lambda d=device: sim.query("SELECT 1 FROM health_latest WHERE device_id = ?", [d.device_id]),
                 what=f"a heartbeat from {device.device_id}")  # fmt: skip
    page = open_console("victor")  # a viewer sees it
    table = page.locator("table.fleet")
    expect(table.get_by_role("columnheader", name="Privacy mode")).to_be_visible()

    def row(name):
        return table.locator("tr", has=page.get_by_role("link", name=name, exact=True))

    expect(row("cam-5d01")).to_contain_text(SENSOR_ONLY)
    expect(row("cam-3b12")).to_contain_text("Blackout at capture")
    expect(row("cam-5d02")).to_contain_text("not reported")
    expect(row("cam-4a03")).to_contain_text("not reported")  # pending: never heard from

    devices = table.locator("tr[data-device]")
    privacy = page.get_by_label("Privacy mode", exact=True)
    privacy.select_option("sensor-only")
    expect(devices).to_have_count(1)
    expect(row("cam-5d01")).to_be_visible()
    privacy.select_option("unknown")
    expect(devices).to_have_count(2)
    expect(row("cam-5d02")).to_be_visible()
    expect(row("cam-4a03")).to_be_visible()
    privacy.select_option("blackout-at-capture")
    expect(row("cam-3b12")).to_be_visible()
    expect(row("cam-5d01")).to_have_count(0)
    expect(row("cam-5d02")).to_have_count(0)

    page.goto(f"/#/devices/{ai_camera.device_id}")
    expect(page.locator("dt:text-is('Privacy mode') + dd")).to_have_text(SENSOR_ONLY)
    assert page.console_errors == []
