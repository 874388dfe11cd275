"""The web console end to end: Debian's Chromium (headless, through Playwright) against a real TLS fleet
server with simulated devices that enroll, heartbeat, run jobs, send their live view and take updates
through the firmware's own client (see ``simfleet.py``)."""

from __future__ import annotations

import csv
import io
import json
import re
import tomllib
from pathlib import Path
from urllib.parse import urlparse

import pytest

pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed (pip install -e '.[dev]')")

from playwright.sync_api import expect

from firmware.identity import IdentityStore
from tests.browser.simfleet import Readings, SimDevice, draw_shape, publish_model, wait_for
from wardsight.bundle import Bundle
from wardsight.device_config import DeviceConfig


def route_exists(sim, path: str) -> bool:
    """Whether the running server serves ``path`` (unauthenticated: a 401 JSON, not aiohttp's plain 404)."""
    import ssl
    import urllib.error
    import urllib.request

    context = ssl.create_default_context(cadata=sim.server.ca_pem)
    try:
        urllib.request.urlopen(sim.url + path, context=context, timeout=5)
    except urllib.error.HTTPError as exc:
        return exc.code != 404 or "json" in (exc.headers.get("Content-Type") or "")
    return True


# ---- the fleet ----------------------------------------------------------------------------------------


def test_sign_in_and_see_the_fleet(open_console, sim):
    page = open_console("alice")
    requests: list[str] = []
    page.on("request", lambda r: requests.append(r.url))
    expect(page.get_by_role("heading", name="Fleet")).to_be_visible()
    table = page.locator("table.fleet")
    for name in ("cam-3b12", "cam-3b14", "cam-3b15", "cam-4a02", "cam-4a03"):
        expect(table.get_by_role("link", name=name)).to_be_visible()
    expect(table.get_by_role("rowgroup").filter(has_text="st-marys / ward 3B")).to_have_count(1)

    def row(name):
        return table.locator("tr", has=page.get_by_role("link", name=name, exact=True))

    expect(row("cam-3b12")).to_contain_text("online")
    expect(row("cam-3b12")).to_contain_text("pose_net 1.0")
    expect(row("cam-3b12")).to_contain_text(re.compile(r"1\d\.\d fps"))
    expect(row("cam-3b12")).to_contain_text(re.compile(r"CPU 5\d °C"))
    expect(row("cam-3b14")).to_contain_text("degraded")
    expect(row("cam-3b14")).to_contain_text("cpu (configured: hailo)")
    expect(row("cam-3b15")).to_contain_text("hot")
    expect(row("cam-4a02")).to_contain_text("acc. 51 °C")
    expect(row("cam-4a03")).to_contain_text("pending approval")
    counts = page.get_by_role("list", name="Device counts")
    expect(counts).to_contain_text(re.compile(r"\d+ devices"))
    expect(counts).to_contain_text(re.compile(r"2 degraded"))

    # A device that goes silent is shown offline, with since when, without a reload.
    sim.devices["cam-4a05"].silent.set()
    try:
        expect(row("cam-4a05")).to_contain_text("offline since", timeout=20000)
        expect(counts).to_contain_text("1 offline")
    finally:
        sim.devices["cam-4a05"].silent.clear()

    # Search and filters.
    page.get_by_label("Search (device, name, room)").fill("4A-")
    expect(row("cam-3b12")).to_have_count(0)
    expect(row("cam-4a02")).to_be_visible()
    page.get_by_label("Search (device, name, room)").fill("")
    page.get_by_label("Status", exact=True).select_option("degraded")
    expect(row("cam-4a02")).to_have_count(0)
    expect(row("cam-3b15")).to_be_visible()
    page.get_by_label("Status", exact=True).select_option("")
    page.get_by_label("Ward").select_option("4A")
    expect(row("cam-3b15")).to_have_count(0)
    # Every asset and call goes to the fleet server itself; nothing broke the CSP.
    assert requests and all(urlparse(u).netloc == urlparse(sim.url).netloc for u in requests)
    assert page.console_errors == []


# ---- alerts -------------------------------------------------------------------------------------------


def test_a_live_alert_arrives_and_is_acknowledged_then_resolved(open_console, sim):
    if not route_exists(sim, "/api/v1/alerts"):
        pytest.skip("fleet/alerts is not set up on this server")
    page = open_console("olga", path="#/alerts")
    expect(page.locator("#feed-connection")).to_have_text("connected")
    page.evaluate("window.__same_page = true")
    event_id = sim.devices["cam-3b12"].send_event("fall", "fall", "critical", drop=0.42)
    alert = page.locator(f'[data-alert-id="{event_id}"]')
    expect(alert).to_be_visible(timeout=10000)  # pushed by the server (SSE), no reload
    assert page.evaluate("window.__same_page") is True
    expect(alert).to_contain_text("critical")
    expect(alert).to_contain_text("Fall in room 3B-12")
    expect(page.locator("#alert-announcer")).to_contain_text("New critical fall in room 3B-12")
    expect(page.locator("#alert-count")).not_to_be_hidden()

    alert.get_by_role("button", name=re.compile("^Acknowledge critical fall")).click()
    expect(alert).to_contain_text("Acknowledged by user:olga at")
    alert.get_by_role("button", name=re.compile("^Resolve critical fall")).click()
    expect(alert).to_have_count(0)  # resolved alerts are hidden by default
    page.get_by_label("Show resolved alerts").check()
    expect(alert).to_contain_text("Resolved by user:olga at")
    rows = sim.query("SELECT acknowledged_by, resolved_by FROM alert_states WHERE event_id = ?", [event_id])
    assert rows == [{"acknowledged_by": "user:olga", "resolved_by": "user:olga"}]

    # Per-room history.
    page.get_by_label("Room", exact=True).fill("3B-12")
    page.get_by_role("button", name="Show history").click()
    history = page.get_by_role("table").filter(has_text="Alerts in room 3B-12")
    expect(history).to_contain_text("resolved")
    expect(history).to_contain_text("user:olga")


# ---- enrollment ---------------------------------------------------------------------------------------


def test_enroll_a_device_from_a_token_then_approve_it(open_console, sim, tmp_path):
    page = open_console("olga", path="#/enroll", accept_downloads=True)
    page.get_by_label("Site (optional)").fill("st-marys")
    page.get_by_label("Ward (optional)").fill("4A")
    page.get_by_label("Room", exact=True).fill("4A-07")
    page.get_by_label("New device waits for approval").check()
    page.get_by_role("button", name="Create token").click()
    token = page.locator("#new-token").text_content()
    assert token and token.startswith("wst.")
    qr = page.get_by_role("img", name="QR code of the enrollment bundle")
    expect(qr).to_be_visible()
    assert qr.evaluate("n => n.namespaceURI") == "http://www.w3.org/2000/svg"
    with page.expect_download() as download:
        page.get_by_role("button", name="Download the bundle file").click()
    path = tmp_path / "bundle.json"
    download.value.save_as(path)
    saved = json.loads(path.read_text())
    assert saved["token"] == token and saved["server_url"] == sim.url
    assert saved["ca_pem"] == sim.server.ca_pem  # the device will pin the fleet CA

    # The device enrolls with the downloaded bundle, through the firmware's own code.
    store = IdentityStore(tmp_path / "device")
    store.dir.mkdir()
    identity, status = store.enroll(Bundle.load(path), "cam-4a07")
    assert (identity.room, identity.ward, status) == ("4A-07", "4A", "pending")
    device = SimDevice(store, Readings()).start()
    sim.devices["cam-4a07"] = device
    pending = page.get_by_role("region", name="Devices waiting for approval")
    expect(pending.get_by_role("link", name="cam-4a07")).to_be_visible(timeout=10000)
    pending.get_by_role("button", name="Approve cam-4a07").click()
    expect(pending.get_by_role("link", name="cam-4a07")).to_have_count(0)
    wait_for(lambda: sim.query("SELECT status FROM devices WHERE id = ?", [device.device_id])[0]["status"] == "active")
    page.get_by_role("link", name="Fleet").click()
    row = page.locator("table.fleet tr", has=page.get_by_role("link", name="cam-4a07", exact=True))
    expect(row).to_contain_text("online", timeout=15000)

    # Quarantine from the enrollment page, then release.
    page.get_by_role("link", name="Enrollment").click()
    manage = page.get_by_role("region", name="Quarantine and revoke")
    manage.get_by_role("button", name="Quarantine cam-4a07").click()
    expect(manage.get_by_role("button", name="Release cam-4a07")).to_be_visible()
    manage.get_by_role("button", name="Release cam-4a07").click()
    expect(manage.get_by_role("button", name="Quarantine cam-4a07")).to_be_visible()
    actions = [r["action"] for r in sim.query("SELECT action FROM audit WHERE target = ?", [device.device_id])]
    assert [a for a in actions if a != "device.enroll"] == ["device.approve", "device.quarantine", "device.release"]


# ---- zones --------------------------------------------------------------------------------------------


def test_draw_a_zone_and_a_privacy_region_and_the_config_job_completes(open_console, sim):
    if not route_exists(sim, "/api/v1/jobs"):
        pytest.skip("fleet/jobs.py is not set up on this server")
    cam = sim.devices["cam-3b15"]
    page = open_console("olga", path=f"#/devices/{cam.device_id}")
    expect(page.get_by_role("heading", name="Zones and privacy regions")).to_be_visible()
    if route_exists(sim, f"/api/v1/devices/{cam.device_id}/scene"):
        expect(page.get_by_text(re.compile(r"2 people in view \(1280\u00d7720\)"))).to_be_visible(timeout=15000)
    # A zone with the mouse...
    page.get_by_label("Shape name").fill("door")
    page.get_by_label("Zone kind").select_option("door")
    draw_shape(page, ((0.1, 0.2), (0.3, 0.2), (0.3, 0.9), (0.1, 0.9)))
    # ... and a privacy region with the keyboard only.
    page.get_by_label("Shape type").select_option("privacy")
    page.get_by_label("Shape name").fill("bathroom door")
    page.get_by_role("button", name="Start a new shape").click()
    for x, y in (("0.7", "0"), ("1", "0"), ("1", "0.5")):
        page.get_by_label("Point x (0 to 1)").fill(x)
        page.get_by_label("Point y (0 to 1)").fill(y)
        page.get_by_label("Point y (0 to 1)").press("Tab")
        page.keyboard.press("Enter")  # focus is on "Add point"
    page.get_by_role("button", name="Finish shape").click()
    shapes = page.get_by_role("list", name="Zones and privacy regions")
    expect(shapes).to_contain_text("Zone door (door), 4 points")
    expect(shapes).to_contain_text("Privacy region bathroom door, 3 points")

    page.get_by_role("button", name="Review changes").click()
    changes = page.get_by_role("list", name="Changes to save")
    expect(changes).to_contain_text("Add zone door (door): 4 points")
    expect(changes).to_contain_text("Add privacy region bathroom door")
    page.get_by_role("button", name="Confirm and save").click()
    expect(page.locator(".job-line[data-state='succeeded']")).to_be_visible(timeout=20000)
    config = DeviceConfig.model_validate(tomllib.loads(cam.config_text or ""))
    assert [(z.name, z.kind, len(z.polygon)) for z in config.zones] == [("door", "door", 4)]
    # The canvas keeps a black margin around the frame, so canvas fractions are near, not equal to, frame ones.
    assert config.zones[0].polygon[0] == pytest.approx((0.1, 0.2), abs=0.03)
    assert [(r.name, r.polygon) for r in config.privacy_regions] == [
        ("bathroom door", [(0.7, 0.0), (1.0, 0.0), (1.0, 0.5)])
    ]

    # The editor starts from the zones and privacy regions the device reports next time.
    page.reload()
    shapes = page.get_by_role("list", name="Zones and privacy regions")
    expect(shapes).to_contain_text("Zone door (door), 4 points")
    expect(shapes).to_contain_text("Privacy region 1 (its name stays on the device), 3 points")
    page.get_by_role("region", name="Jobs").get_by_role("link").first.click()
    expect(page.get_by_role("heading", name=re.compile("^Job batch"))).to_be_visible()
    expect(page.get_by_role("table")).to_contain_text("succeeded")


def test_a_privacy_reducing_config_job_waits_for_a_second_admins_approval(open_console, sim):
    if not route_exists(sim, "/api/v1/jobs"):
        pytest.skip("fleet/jobs.py is not set up on this server")
    import time

    from fleet.accounts import service as accounts
    from tests.browser.simfleet import PASSWORD

    db = sim.db()
    try:
        accounts.create_operator(db.db, "adam", PASSWORD, "admin", time.time(), sim.config)  # a second admin
    finally:
        db.close()
    cam = sim.devices["cam-3b12"]
    config = '[[privacy_regions]]\nname = "window"\npolygon = [[0.8, 0.0], [1.0, 0.0], [1.0, 0.3]]\n'
    page = open_console("alice", path="#/jobs")
    made = page.evaluate(
        """async (body) => {
            const who = await (await fetch("/api/v1/session")).json();
            const resp = await fetch("/api/v1/jobs", {method: "POST", body: JSON.stringify(body),
                headers: {"X-CSRF-Token": who.csrf_token, "Content-Type": "application/json"}});
            return await resp.json();
        }""",
        {"kind": "push_config", "config": config, "target": {"device_ids": [cam.device_id]}, "expires_in_s": 600},
    )
    assert made["status"] == "awaiting_approval", made  # the server has never seen this device's file
    page.goto(f"/#/jobs/{made['batch_id']}")
    expect(page.get_by_text("awaiting a second admin's approval")).to_be_visible()
    expect(page.locator(".privacy-changes")).to_contain_text("does not know this device's current privacy regions")
    expect(page.get_by_role("button", name="Reject")).to_be_visible()
    expect(page.get_by_role("button", name="Approve")).to_have_count(0)  # not for the admin who asked

    other = open_console("adam", path=f"#/jobs/{made['batch_id']}")
    other.get_by_role("button", name="Approve").click()
    expect(other.get_by_role("table")).to_contain_text("succeeded", timeout=20000)
    expect(other.locator(".privacy-changes").locator("..")).to_contain_text("approved by user:adam")
    assert cam.config_text == config and cam.pushed[-1].privacy_approval is not None
    assert cam.pushed[-1].privacy_approval.approved_by == ("user:alice", "user:adam")


# ---- rollouts -----------------------------------------------------------------------------------------


def test_start_pause_resume_and_abort_a_rollout(open_console, sim):
    publish_model(sim, "pose_net", "1.1", sim.work / "offline-keys")
    page = open_console("olga", path="#/models")
    library = page.get_by_role("region", name="Model library")
    expect(library.get_by_role("row").filter(has_text="1.1")).to_contain_text("published")
    page.get_by_label("Model", exact=True).select_option("pose_net")
    page.get_by_label("Version", exact=True).select_option("1.1")
    page.get_by_label("Previous version (for roll back, optional)").select_option("1.0")
    page.get_by_label("Ward (optional)").fill("3B")
    page.get_by_label("Groups (comma separated: a count, or a percent of the selection)").fill("1, 100%")
    page.get_by_role("button", name="Start the rollout").click()
    rollout = page.locator("article.rollout").first
    expect(rollout).to_have_attribute("data-status", "running")
    expect(rollout.locator(".group-progress")).to_have_count(2)
    expect(rollout).to_contain_text("Group 1 (1 device, needs 1)")
    expect(rollout).to_contain_text("Group 2 (2 devices, needs 2)")
    expect(rollout.locator(".group-progress").first).to_contain_text(
        re.compile("downloading|downloaded|installed"), timeout=15000
    )

    # The fleet shows the device that is taking the update as updating.
    page.get_by_role("link", name="Fleet").click()
    expect(page.get_by_role("list", name="Device counts")).to_contain_text("1 updating")
    page.get_by_role("link", name="Models & rollouts").click()
    rollout = page.locator("article.rollout").first
    rollout.get_by_role("button", name=re.compile("^Pause rollout")).click()
    expect(rollout).to_have_attribute("data-status", "paused")
    rollout_id = rollout.get_attribute("data-rollout")
    assert sim.query("SELECT status FROM rollouts WHERE id = ?", [rollout_id])[0]["status"] == "paused"
    rollout.get_by_role("button", name=re.compile("^Resume rollout")).click()
    expect(rollout).to_have_attribute("data-status", "running")
    rollout.get_by_role("button", name=re.compile("^Abort rollout")).click()  # confirmed in the dialog
    expect(rollout).to_have_attribute("data-status", "aborted")
    actions = [r["action"] for r in sim.query("SELECT action FROM audit WHERE target LIKE ?", [f"%{rollout_id}"])]
    assert actions[:1] == ["rollout.create"] and "rollout.pause" in actions and "rollout.abort" in actions


# ---- reports ------------------------------------------------------------------------------------------


def test_download_a_report_as_csv(open_console, sim):
    if not route_exists(sim, "/api/v1/reports/falls"):
        pytest.skip("fleet/reports is not set up on this server")
    sim.devices["cam-4a02"].send_event("fall", "fall", "critical", drop=0.5)
    sim.devices["cam-4a02"].send_event("bed_exit", "bed_exit", "warning")
    page = open_console("victor", path="#/reports", accept_downloads=True)  # a viewer may read reports
    page.get_by_label("Report", exact=True).select_option("falls")
    page.get_by_label("Group by").select_option("ward")
    page.get_by_role("button", name="Show").click()
    table = page.get_by_role("table").filter(has_text="Falls and bed exits per ward")
    expect(table).to_contain_text("4A")
    with page.expect_download() as download:
        page.get_by_role("link", name=re.compile("^Download the Falls and bed exits report per ward as CSV")).click()
    assert download.value.suggested_filename.startswith("wardsight-falls-by-ward-")
    rows = list(csv.DictReader(io.StringIO(Path(download.value.path()).read_text(encoding="utf-8"))))
    four_a = next(r for r in rows if r["ward"] == "4A")
    assert any(v not in ("", "0") for k, v in four_a.items() if "fall" in k)


# ---- roles --------------------------------------------------------------------------------------------


def test_a_viewer_sees_but_cannot_act(open_console, sim):
    page = open_console("victor")
    cam = sim.devices["cam-3b12"]
    expect(page.get_by_role("link", name="Enrollment")).to_be_hidden()
    expect(page.get_by_role("link", name="Audit log")).to_be_hidden()
    page.goto(f"/#/devices/{cam.device_id}")
    expect(page.get_by_role("heading", name="Health")).to_be_visible()
    expect(page.get_by_role("button", name="Quarantine")).to_have_count(0)
    expect(page.get_by_role("button", name="Review changes")).to_have_count(0)
    expect(page.get_by_text("Read-only: editing zones needs the operator role.")).to_be_visible()
    page.goto("/#/alerts")
    expect(page.get_by_role("button", name=re.compile("^Acknowledge"))).to_have_count(0)
    page.goto("/#/models")
    expect(page.get_by_role("button", name="Start the rollout")).to_have_count(0)
    page.goto("/#/jobs")
    expect(page.get_by_role("button", name="Start the job")).to_have_count(0)
    page.goto("/#/enroll")
    expect(page.get_by_text("Enrollment needs the operator role.")).to_be_visible()

    # The server refuses the same actions when the page is bypassed (the session's own CSRF token).
    attempts = {
        "quarantine": ("POST", f"/api/v1/devices/{cam.device_id}/quarantine", {}),
        "token": ("POST", "/api/v1/tokens", {"room": "3B-99"}),
        "qr": ("POST", "/api/v1/console/qr", {"text": "x"}),
        "bundle-ca": ("GET", "/api/v1/console/bundle-ca", None),
        "job": (
            "POST",
            "/api/v1/jobs",
            {"kind": "self_test", "target": {"device_ids": [cam.device_id]}, "expires_in_s": 600},
        ),
        "rollout": ("POST", "/api/v1/rollouts/ro-x/pause", {}),
        "operators": ("GET", "/api/v1/operators", None),
        "audit": ("GET", "/api/v1/audit", None),
    }
    if route_exists(sim, "/api/v1/alerts"):
        event_id = cam.send_event("mask", "no_mask", "warning")
        attempts["acknowledge"] = ("POST", f"/api/v1/alerts/{event_id}/acknowledge", {})
    statuses = page.evaluate(
        """async (attempts) => {
            const who = await (await fetch("/api/v1/session")).json();
            const out = {};
            for (const [name, [method, path, body]] of Object.entries(attempts)) {
                const init = {method, headers: {"X-CSRF-Token": who.csrf_token}};
                if (body !== null) {
                    init.body = JSON.stringify(body);
                    init.headers["Content-Type"] = "application/json";
                }
                out[name] = (await fetch(path, init)).status;
            }
            return out;
        }""",
        attempts,
    )
    assert statuses == dict.fromkeys(attempts, 403)


# ---- accessibility ------------------------------------------------------------------------------------

A11Y_CHECK = (Path(__file__).parent / "a11y_check.js").read_text()


def test_pages_are_labelled_keyboard_operable_and_readable(open_console, sim):
    page = open_console("alice")
    cam = sim.devices["cam-3b12"]
    for route in ("#/fleet", "#/alerts", f"#/devices/{cam.device_id}", "#/enroll", "#/models", "#/jobs", "#/reports",
                  "#/users", "#/audit"):  # fmt: skip
        page.goto(f"/{route}")
        expect(page.locator("#page-title")).to_be_focused()  # focus moves to the new page's heading
        page.wait_for_timeout(300)
        assert page.evaluate(A11Y_CHECK) == [], route
    # Keyboard: the navigation is reachable by Tab, the skip link comes before it, Enter follows a link.
    page.goto("/#/fleet")
    expect(page.get_by_role("heading", name="Fleet")).to_be_focused()  # the page has finished rendering
    page.locator(".brand").click()
    page.keyboard.press("Tab")
    expect(page.get_by_role("link", name="Fleet")).to_be_focused()
    page.keyboard.press("Shift+Tab")
    expect(page.get_by_role("link", name="Skip to content")).to_be_focused()
    expect(page.get_by_role("link", name="Skip to content")).to_be_in_viewport()  # shown when focused
    page.keyboard.press("Tab")
    page.keyboard.press("Tab")
    page.keyboard.press("Enter")
    expect(page).to_have_url(re.compile("#/alerts$"))
    assert page.console_errors == []
