"""Every device's system image in the console (issue 19, item 3): a column and a filter by version on the fleet page,
the slot, version and SBOM digest on the device page, and a rollout to "the devices on version X" from the Models
page; simulated devices report their systems in their heartbeats through the firmware's client (``simfleet.py``)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed (pip install -e '.[dev]')")

from playwright.sync_api import expect

from tests.browser.simfleet import Readings, publish_model, wait_for
from wardsight import wire

A11Y_CHECK = (Path(__file__).parent / "a11y_check.js").read_text()
SHA = "0123456789abcdef" * 4
NEW = wire.SystemVersion(slot="B", version="2026.12.1", sbom_sha256=SHA)
OLD = wire.SystemVersion(slot="A", version="2026.11.0")
PHONE = 360


@pytest.fixture(scope="module")
def systems(sim):
    """Three more devices in ward 6A: two on the new system (slots B and A), one on the old; the conftest's own
    devices do not report one (as an older agent)."""
    devices = {
        "cam-6a01": sim.add("cam-6a01", "6A-01", Readings(system=NEW), ward="6A"),
        "cam-6a02": sim.add("cam-6a02", "6A-02", Readings(system=NEW.model_copy(update={"slot": "A"})), ward="6A"),
        "cam-6a03": sim.add("cam-6a03", "6A-03", Readings(system=OLD), ward="6A"),
    }
    reported = "SELECT 1 FROM health_latest WHERE device_id = ? AND system_version IS NOT NULL"
    for device in devices.values():
        wait_for(lambda d=device: sim.query(reported, [d.device_id]), what=f"a system from {device.device_id}")
    return devices


def _row(page, name):
    return page.locator("table.fleet tr", has=page.get_by_role("link", name=name, exact=True))


def test_the_system_is_shown_and_filters_the_fleet(open_console, sim, systems):
    page = open_console("victor")  # a viewer sees it
    table = page.locator("table.fleet")
    expect(table.get_by_role("columnheader", name="System", exact=True)).to_be_visible()
    expect(_row(page, "cam-6a01").locator("td.system")).to_have_text("2026.12.1 (slot B)")
    expect(_row(page, "cam-6a02").locator("td.system")).to_have_text("2026.12.1 (slot A)")
    expect(_row(page, "cam-6a03").locator("td.system")).to_have_text("2026.11.0 (slot A)")
    expect(_row(page, "cam-3b12").locator("td.system")).to_have_text("not reported")
    expect(_row(page, "cam-4a03").locator("td.system")).to_have_text("not reported")  # pending: never heard from

    devices = table.locator("tr[data-device]")
    everyone = devices.count()
    version = page.get_by_label("System version", exact=True)
    expect(version.locator("option")).to_have_text(["any system version", "2026.11.0", "2026.12.1", "not reported"])
    version.select_option("2026.12.1")
    expect(devices).to_have_count(2)
    expect(_row(page, "cam-6a01")).to_be_visible()
    expect(_row(page, "cam-6a02")).to_be_visible()
    expect(page.get_by_text("Showing 2 of")).to_be_visible()
    version.select_option("2026.11.0")
    expect(devices).to_have_count(1)
    expect(_row(page, "cam-6a03")).to_be_visible()
    version.select_option("(none)")  # "not reported"
    expect(devices).to_have_count(everyone - 3)
    expect(_row(page, "cam-6a01")).to_have_count(0)
    version.select_option("")
    expect(devices).to_have_count(everyone)
    assert page.evaluate(A11Y_CHECK) == []

    # A link to the devices on one version (e.g. from a rollout), the filter kept across refreshes; a version no
    # device runs any more stays chosen and says so.
    page.goto("/#/fleet?system_version=2026.11.0")
    expect(devices).to_have_count(1)
    expect(page.get_by_label("System version", exact=True)).to_have_value("2026.11.0")
    page.wait_for_timeout(2500)  # a refresh of the overview redraws the table
    expect(devices).to_have_count(1)
    page.goto("/#/fleet?system_version=2025.1.0")
    expect(page.get_by_label("System version", exact=True)).to_have_value("2025.1.0")
    expect(table).to_contain_text("No device matches the filters.")

    page.goto(f"/#/devices/{systems['cam-6a01'].device_id}")
    expect(page.locator("dt:text-is('System') + dd")).to_have_text("2026.12.1 (slot B)")
    expect(page.locator("dt:text-is('System SBOM (sha256)') + dd")).to_have_text(SHA)
    page.goto(f"/#/devices/{systems['cam-6a03'].device_id}")
    expect(page.locator("dt:text-is('System') + dd")).to_have_text("2026.11.0 (slot A)")
    expect(page.locator("dt:text-is('System SBOM (sha256)')")).to_have_count(0)  # the image gave no digest
    assert page.console_errors == []


def test_the_sbom_digest_fits_a_phone(open_console, sim, systems):
    page = open_console("victor", viewport={"width": PHONE, "height": 800})
    page.goto(f"/#/devices/{systems['cam-6a01'].device_id}")
    expect(page.locator("dt:text-is('System SBOM (sha256)') + dd")).to_have_text(SHA)
    width = page.evaluate("() => [document.documentElement.scrollWidth, document.documentElement.clientWidth]")
    assert width[0] <= width[1], width
    assert page.console_errors == []


def test_a_rollout_to_the_devices_on_one_system_version_from_the_models_page(open_console, sim, systems):
    publish_model(sim, "pose_net", "1.1", sim.work / "offline-keys")
    page = open_console("olga", path="#/models")  # an operator
    form = page.locator("form", has=page.get_by_role("heading", name="Start a rollout"))
    form.get_by_label("Model", exact=True).select_option("pose_net")
    form.get_by_label("Version", exact=True).select_option("1.1")
    form.get_by_label("Devices on system version (optional)").fill("2026.12.1")
    form.get_by_label("Groups (comma separated: a count, or a percent of the selection)").fill("100%")
    form.get_by_role("button", name="Start the rollout").click()
    expect(page.locator(".page-status")).to_have_text(re.compile(r"^Rollout ro-[0-9a-f]+ started: pose_net 1\.1 to 2 "))
    (stored,) = sim.query("SELECT id, request FROM rollouts")
    assert '"system_version":"2026.12.1"' in stored["request"]
    targeted = {r["device_id"] for r in sim.query("SELECT device_id FROM rollout_devices WHERE rollout_id = ?",
                                                  [stored["id"]])}  # fmt: skip
    assert targeted == {systems["cam-6a01"].device_id, systems["cam-6a02"].device_id}

    form.get_by_label("Devices on system version (optional)").fill("2026.12.1 beta")
    form.get_by_role("button", name="Start the rollout").click()
    expect(page.locator(".page-status")).to_contain_text("The rollout was refused")
    expect(page.locator(".page-status")).to_contain_text("system_version")
    assert len(sim.query("SELECT id FROM rollouts")) == 1
    assert page.console_errors == []
