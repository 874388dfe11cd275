"""The commissioning routes against the real app (its real delivery worker and SQLite file), a device speaking
the device API by hand, and a real webhook receiver on loopback that verifies what arrives."""

from __future__ import annotations

import asyncio
import json
import time

import pytest
from aiohttp import web

from fleet.app import create_app
from fleet.audit import log as audit
from fleet.config import ServerConfig
from fleet.web.appkeys import KEYS_KEY
from tests.fleet.helpers import api_headers, enroll_device, event_for, live_db, start_default_app
from wardsight import webhooks, wire

T0 = 1_800_000_000.0
TEST_ALERT = "/api/v1/devices/{}/commissioning/test-alert"


class Receiver:
    """A hospital system's webhook endpoint: records each delivery and answers ``status``."""

    def __init__(self) -> None:
        self.received: list[tuple[dict[str, str], bytes]] = []
        self.status = 200

    async def handle(self, request: web.Request) -> web.Response:
        self.received.append(({k.lower(): v for k, v in request.headers.items()}, await request.read()))
        return web.Response(status=self.status)


@pytest.fixture
async def hospital(aiohttp_server):
    receiver = Receiver()
    app = web.Application()
    app.router.add_post("/hook", receiver.handle)
    server = await aiohttp_server(app)
    return receiver, str(server.make_url("/hook"))


async def commissioning(client, device_id, role="viewer"):
    resp = await client.get(f"/api/v1/devices/{device_id}/commissioning", headers=api_headers(client, role))
    assert resp.status == 200, await resp.text()
    body = await resp.json()
    return body, {c["id"]: (c["status"], c["reason"]) for c in body["checks"]}


async def send_test_alert(client, device_id, role="operator", **kw):
    return await client.post(TEST_ALERT.format(device_id), headers=api_headers(client, role), **kw)


async def heartbeat(device, clock, frames: int, skew: float = 0.3) -> None:
    health = wire.Health(device_id=device.device_id, sent_at=clock.now + skew, uptime_s=clock.now - T0 + 60,
                         agent_version="0.1.0", accelerator="cpu", fps=14.9, frames_processed=frames)  # fmt: skip
    resp = await device.send("POST", wire.HEARTBEAT_PATH, health.model_dump_json().encode(), "application/json")
    assert resp.status == 200, await resp.text()


async def live_view(device, clock, *, zones=True) -> None:
    """A scene snapshot as the device sends it while the zone editor is open: geometry only."""
    triangle = [[0.1, 0.1], [0.5, 0.1], [0.5, 0.5]]
    snapshot = {"time": clock.now, "frame_width": 1280, "frame_height": 720, "people": [],
                "zones": [{"name": "bed-1", "kind": "bed", "polygon": triangle}] if zones else [],
                "privacy_regions": [{"polygon": [[0.6, 0.6], [0.9, 0.6], [0.9, 0.9]]}]}  # fmt: skip
    resp = await device.send("POST", wire.SCENE_PATH, json.dumps(snapshot).encode(), "application/json")
    assert resp.status == 200, await resp.text()


async def until(predicate, what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not await predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


# ---- the default configuration -------------------------------------------------------------------------


async def test_with_defaults_a_new_device_is_not_ready_and_each_check_says_why(aiohttp_client, db_path, clock):
    client = await start_default_app(aiohttp_client, db_path, clock)
    device = await enroll_device(client, db_path, clock)
    body, checks = await commissioning(client, device.device_id)
    assert body["device_id"] == device.device_id and body["status"] == "failing"
    assert body["expected_fps"] == 15.0 and body["expected_fps_from"] == "default"
    assert checks["clock"] == ("unknown", checks["clock"][1]) and "not sent a heartbeat" in checks["clock"][1]
    assert checks["frame_rate"][0] == checks["people"][0] == checks["layout"][0] == "unknown"
    assert checks["test_alert"] == (
        "failing",
        "No enabled webhook: add (or enable) the hospital's endpoint, then send a test alert.",
    )

    # A test alert without any webhook is stored (and audited), and the check still says what is missing.
    resp = await send_test_alert(client, device.device_id)
    assert resp.status == 201, await resp.text()
    sent = await resp.json()
    assert sent["webhooks"] == 0 and sent["commissioning"]["status"] == "failing"
    event = live_db(client)["events"].get(sent["event_id"])
    assert (event["app"], event["type"], event["severity"], json.loads(event["data"])) == (
        "system", "test_alert", "info", {"test": True})  # fmt: skip
    assert "No enabled webhook: add" in (await commissioning(client, device.device_id))[1]["test_alert"][1]


async def test_who_may_read_the_checks_and_send_a_test_alert(aiohttp_client, db_path, clock):
    client = await start_default_app(aiohttp_client, db_path, clock)
    device = await enroll_device(client, db_path, clock)
    path = f"/api/v1/devices/{device.device_id}/commissioning"
    assert (await client.get(path)).status == 401
    assert (await client.post(TEST_ALERT.format(device.device_id))).status == 401
    assert (await client.get(path, headers=api_headers(client, "viewer"))).status == 200
    assert (await send_test_alert(client, device.device_id, role="viewer")).status == 403
    assert (await client.get("/api/v1/devices/nope/commissioning", headers=api_headers(client, "viewer"))).status == 404
    assert (await send_test_alert(client, "nope")).status == 404
    bad = await send_test_alert(client, device.device_id, json={"severity": "critical"})
    assert (bad.status, (await bad.json())["error"]) == (400, "unknown field 'severity'")
    assert live_db(client)["events"].count == 0

    first = await send_test_alert(client, device.device_id, json={})
    assert first.status == 201
    again = await send_test_alert(client, device.device_id, role="admin")  # a double click sends one
    assert again.status == 429 and "wait 10 s" in (await again.json())["error"]
    clock.now += 11
    assert (await send_test_alert(client, device.device_id, role="admin")).status == 201
    entries = audit.query(live_db(client), action="device.commissioning.test_alert")
    assert [(e["target"], e["actor"].split(":")[0]) for e in entries] == [(device.device_id, "apitoken")] * 2
    assert {e["details"]["event_id"] for e in entries} == {
        r["event_id"] for r in live_db(client)["events"].rows_where("type = 'test_alert'")}  # fmt: skip

    revoke = await client.post(f"/api/v1/devices/{device.device_id}/revoke", headers=api_headers(client, "admin"))
    assert revoke.status == 200
    clock.now += 11
    refused = await send_test_alert(client, device.device_id)
    assert (refused.status, (await refused.json())["error"]) == (409, "the device is revoked")


# ---- all green -------------------------------------------------------------------------------------------


async def test_a_commissioned_device_turns_green_when_its_test_alert_reaches_the_hospital(
    aiohttp_client, db_path, clock, hospital
):
    receiver, url = hospital
    # The defaults, but for a receiver on loopback (the SSRF guard allows that only with this flag).
    client = await aiohttp_client(create_app(ServerConfig(database=db_path, webhook_allow_insecure=True), clock=clock))
    device = await enroll_device(client, db_path, clock)
    await heartbeat(device, clock, frames=1000)
    clock.now += 30
    await heartbeat(device, clock, frames=1450)  # 450 frames in 30 s: 15 fps
    assert (await device.post_event(event_for(device.device_id, data={"count": 1, "previous": 0}))).status == 201
    await live_view(device, clock)
    body, checks = await commissioning(client, device.device_id)
    assert [checks[k][0] for k in ("clock", "frame_rate", "people", "layout")] == ["ok"] * 4, checks
    assert "0.3 s ahead of the server's" in checks["clock"][1] and "delivers 15.0 fps" in checks["frame_rate"][1]
    assert checks["layout"][1].startswith("1 zone and 1 privacy region, as the device reported")
    assert body["status"] == "failing" and checks["test_alert"][0] == "failing"

    made = await client.post(
        "/api/v1/webhooks", json={"name": "nurse-call", "url": url}, headers=api_headers(client, "admin")
    )
    assert made.status == 201, await made.text()
    assert (await commissioning(client, device.device_id))[1]["test_alert"] == (
        "unknown",
        "Not tested yet: send a test alert.",
    )

    resp = await send_test_alert(client, device.device_id)
    assert resp.status == 201
    sent = await resp.json()
    assert sent["webhooks"] == 1

    async def green() -> bool:
        return (await commissioning(client, device.device_id))[0]["status"] == "ok"

    await until(green, "the test alert's delivery")
    body, checks = await commissioning(client, device.device_id)
    assert checks["test_alert"] == ("ok", "The test alert sent 0.0 s ago reached nurse-call.")
    delivered = {"endpoint": "nurse-call", "enabled": True, "status": "delivered", "attempts": 1, "last_status": 200}
    assert body["test_alert"]["deliveries"] == [delivered]

    # What the hospital got: one signed delivery, marked as a test by its type and its data.
    [(headers, raw)] = receiver.received
    webhooks.verify(headers, raw, public_key=client.server.app[KEYS_KEY].webhook_public_key, now=clock())
    envelope = json.loads(raw)
    assert envelope["type"] == "wardsight.system.test_alert"
    assert envelope["data"]["event_id"] == sent["event_id"] and envelope["data"]["data"] == {"test": True}
    assert (envelope["data"]["severity"], envelope["data"]["room"]) == ("info", "3B-12")


async def test_a_refusing_or_filtering_webhook_keeps_the_check_from_going_green(
    aiohttp_client, db_path, clock, hospital
):
    receiver, url = hospital
    receiver.status = 503
    client = await aiohttp_client(create_app(ServerConfig(database=db_path, webhook_allow_insecure=True), clock=clock))
    device = await enroll_device(client, db_path, clock)
    admin = api_headers(client, "admin")
    assert (await client.post("/api/v1/webhooks", json={"name": "nurse-call", "url": url}, headers=admin)).status == 201
    assert (await send_test_alert(client, device.device_id)).status == 201

    async def tried() -> bool:
        return "answered HTTP 503" in (await commissioning(client, device.device_id))[1]["test_alert"][1]

    await until(tried, "the first delivery attempt")
    status, reason = (await commissioning(client, device.device_id))[1]["test_alert"]
    assert status == "unknown" and reason.endswith("is still being delivered: nurse-call answered HTTP 503.")

    # A test alert goes to every enabled endpoint, whatever its filters (it tests the link, not the filter)...
    patch = await client.patch("/api/v1/webhooks/1", json={"min_severity": "warning", "apps": ["fall"]}, headers=admin)
    assert patch.status == 200, await patch.text()
    clock.now += 11
    resp = await send_test_alert(client, device.device_id)
    assert (await resp.json())["webhooks"] == 1
    # ...and with none enabled, the check says so.
    patch = await client.patch("/api/v1/webhooks/1", json={"enabled": False}, headers=admin)
    assert patch.status == 200, await patch.text()
    clock.now += 11
    resp = await send_test_alert(client, device.device_id)
    assert (await resp.json())["webhooks"] == 0
    status, reason = (await commissioning(client, device.device_id))[1]["test_alert"]
    assert status == "failing" and reason.startswith("No enabled webhook: add (or enable)")


async def test_zones_come_from_the_device_or_the_configuration_it_applied_whichever_is_newer(
    aiohttp_client, db_path, clock
):
    client = await start_default_app(aiohttp_client, db_path, clock)
    device = await enroll_device(client, db_path, clock)
    await live_view(device, clock, zones=False)
    checks = (await commissioning(client, device.device_id))[1]
    assert checks["layout"][0] == "failing" and checks["layout"][1].startswith("No zones (as the device reported")

    # A configuration pushed later and applied by the device: its zones and its Pi camera rate count.
    config = (
        'name = "cam-1"\n[source]\nkind = "picamera"\nfps = 10.0\n'
        '[[zones]]\nname = "bed-1"\nkind = "bed"\npolygon = [[0.1, 0.1], [0.5, 0.1], [0.5, 0.5]]\n'
        '[[zones]]\nname = "door"\nkind = "door"\npolygon = [[0.6, 0.1], [0.9, 0.1], [0.9, 0.5]]\n'
        '[[privacy_regions]]\nname = "bathroom"\npolygon = [[0.6, 0.6], [0.9, 0.6], [0.9, 0.9]]\n'
    )
    clock.now += 60
    db = live_db(client)
    db["job_batches"].insert({"id": "b1", "kind": "push_config", "params": "{}", "config": config, "target": "{}",
                              "created_by": "user:olga", "created_at": clock.now, "expires_at": clock.now + 3600,
                              "status": "running"})  # fmt: skip
    db["jobs"].insert({"id": "j1", "batch_id": "b1", "device_id": device.device_id, "seq": 1, "state": "succeeded",
                       "updated_at": clock.now, "finished_at": clock.now})  # fmt: skip
    clock.now += 120
    body, checks = await commissioning(client, device.device_id)
    assert checks["layout"] == (
        "ok",
        "2 zones and 1 privacy region, in the configuration the device applied 2 min ago.",
    )
    assert (body["expected_fps"], body["expected_fps_from"]) == (10.0, "config")
    assert "bathroom" not in json.dumps(body) and "picamera" not in json.dumps(body)  # never the configuration's text


async def test_people_seen_come_from_the_occupancy_counts_the_device_reports(aiohttp_client, db_path, clock):
    client = await start_default_app(aiohttp_client, db_path, clock)
    device = await enroll_device(client, db_path, clock)

    async def people():
        return (await commissioning(client, device.device_id))[1]["people"]

    async def count(now: int, before: int) -> None:
        event = event_for(device.device_id, time=clock.now, data={"count": now, "previous": before})
        assert (await device.post_event(event)).status == 201

    await heartbeat(device, clock, frames=0)
    assert (await people())[0] == "failing"
    await count(1, 0)
    assert await people() == ("ok", "A person was seen 0.0 s ago.")
    clock.now += 20 * 60  # the patient stays in bed: no new count, but the device still counts one
    await heartbeat(device, clock, frames=100)
    assert await people() == ("ok", "1 person in the room now, by the device's latest count.")
    await count(0, 1)  # they leave
    clock.now += 5 * 60
    assert await people() == ("ok", "A person was seen 5 min ago.")
    clock.now += 6 * 60
    await heartbeat(device, clock, frames=200)
    status, reason = await people()
    assert status == "failing" and reason.startswith("Nobody seen in the last 10 min")
    # Another device's people are not this device's.
    other = await enroll_device(client, db_path, clock, name="cam-2")
    assert (await other.post_event(event_for(other.device_id, time=clock.now))).status == 201
    assert (await people())[0] == "failing"
