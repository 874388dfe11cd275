"""The device page's commissioning panel in Chromium, against a real TLS fleet server whose webhook goes to a
real receiver on loopback: the checks turn green once the test alert sent from the page reaches it."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed (pip install -e '.[dev]')")

from playwright.sync_api import expect

from fleet.webhooks.store import create_endpoint
from tests.browser.simfleet import Readings, SimFleet, start_sim_fleet, wait_for

A11Y_CHECK = (Path(__file__).parent / "a11y_check.js").read_text()
ZONES = """name = "cam-5c01"
[[zones]]
name = "bed-1"
kind = "bed"
polygon = [[0.1, 0.3], [0.5, 0.3], [0.5, 0.9]]
[[privacy_regions]]
name = "bathroom door"
polygon = [[0.7, 0.0], [1.0, 0.0], [1.0, 0.5]]
"""


class Hospital(ThreadingHTTPServer):
    """The hospital's webhook receiver: keeps every body it is sent and answers 204."""

    def __init__(self) -> None:
        self.bodies: list[bytes] = []
        hospital = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                hospital.bodies.append(self.rfile.read(int(self.headers.get("Content-Length") or 0)))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        super().__init__(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server_address[1]}/hook"


@pytest.fixture(scope="module")
def hospital() -> Iterator[Hospital]:
    server = Hospital()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def sim(tmp_path_factory: pytest.TempPathFactory, hospital: Hospital) -> Iterator[SimFleet]:
    """This module's fleet: one device, and a webhook to the receiver on loopback (hence the insecure flag)."""
    fleet = start_sim_fleet(tmp_path_factory.mktemp("commissioning"), webhook_allow_insecure=True)
    try:
        device = fleet.add("cam-5c01", "5C-01", Readings(fps=14.8), ward="5C")
        device.config_text = ZONES  # the zones and privacy region its live view reports
        db = fleet.db()
        try:
            create_endpoint(db.db, name="nurse-call", url=hospital.url, format="standard", apps=[], min_severity="info",
                            with_hmac=False, created_by="test", now=time.time(), allow_insecure=True)  # fmt: skip
        finally:
            db.close()
        yield fleet
    finally:
        fleet.stop()


def test_the_commissioning_panel_turns_green_after_a_test_alert(open_console, sim, hospital):
    cam = sim.devices["cam-5c01"]
    page = open_console("olga", path=f"#/devices/{cam.device_id}")
    panel = page.get_by_role("region", name="Commissioning")
    checks = panel.get_by_role("list", name="Commissioning checks")
    expect(checks.get_by_role("listitem")).to_have_count(5)
    for title in ("Clock synchronised", "Camera frame rate", "People seen", "Zones and privacy regions"):
        item = checks.get_by_role("listitem").filter(has_text=title)
        expect(item).to_have_attribute("data-status", "ok", timeout=20000)  # the live view reports people and zones
    test_item = checks.locator("[data-check='test_alert']")
    expect(test_item).to_contain_text("Not tested yet")
    expect(panel.locator(".check-summary")).to_contain_text("Not ready yet")

    panel.get_by_role("button", name="Send test alert").click()
    expect(page.locator(".page-status")).to_contain_text("Test alert sent to 1 webhook")
    expect(test_item).to_have_attribute("data-status", "ok", timeout=20000)
    expect(test_item).to_contain_text("reached nurse-call")
    expect(panel.locator(".check-summary")).to_contain_text("Ready: every commissioning check holds.")

    body = json.loads(wait_for(lambda: hospital.bodies, what="the delivery")[0])
    assert body["type"] == "wardsight.system.test_alert" and body["data"]["data"] == {"test": True}
    audit = sim.query("SELECT actor, target FROM audit WHERE action = 'device.commissioning.test_alert'")
    assert audit == [{"actor": "user:olga", "target": cam.device_id}]
    assert page.locator("img").count() == 0  # the privacy invariant: the page shows no picture of the room
    assert page.evaluate(A11Y_CHECK) == []
    assert page.console_errors == []


def test_a_viewer_sees_the_checks_but_cannot_send_a_test_alert(open_console, sim):
    cam = sim.devices["cam-5c01"]
    page = open_console("victor", path=f"#/devices/{cam.device_id}")
    panel = page.get_by_role("region", name="Commissioning")
    expect(panel.get_by_role("list", name="Commissioning checks").get_by_role("listitem")).to_have_count(5)
    expect(panel.get_by_role("button", name="Send test alert")).to_have_count(0)
    expect(panel).to_contain_text("Sending a test alert needs the operator role.")
