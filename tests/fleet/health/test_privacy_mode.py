"""Every device's privacy mode is visible (issue 21, item 3): the heartbeat says it (``sensor-only`` or
``blackout-at-capture``; an older agent says nothing), the fleet keeps the last one reported, the device list,
detail, health and the console's overview show it, and ``?privacy_mode=`` filters by it.

Devices enroll and send heartbeats built by the firmware's own ``build_health`` through the device API of the real
app (aiohttp on loopback, SQLite in a file); an upgraded database from before the column reads as not reported.
"""

from __future__ import annotations

import json
import shutil
import time

import pytest
from pydantic import ValidationError

from firmware.heartbeat import SystemReadings, build_health
from fleet.accounts import service as operators
from fleet.app import create_app
from fleet.config import ServerConfig
from fleet.health.privacy import PRIVACY_FILTERS, privacy_matches
from fleet.store.db import FleetDB
from tests.fleet.helpers import Clock, agent_readings, api_headers, bearer, enroll_device, live_db, start_app
from tests.fleet.test_migrations import OLD_DATABASE
from wardsight import wire

BAD_FILTER = "privacy_mode must be one of sensor-only, blackout-at-capture, unknown"
LISTS = ("/api/v1/devices", "/api/v1/fleet/overview")




def health_of(device, clock, **over) -> wire.Health:
    return build_health(device.device_id, agent_readings(**over), SystemReadings(), uptime_s=60.0, sent_at=clock.now)


async def send(device, body: bytes):
    resp = await device.send("POST", wire.HEARTBEAT_PATH, body, "application/json")
    assert resp.status == 200, await resp.text()


async def get_json(client, path, headers):
    resp = await client.get(path, headers=headers)
    assert resp.status == 200, await resp.text()
    return await resp.json()


async def modes(client, path, headers) -> dict[str, str | None]:
    """The device list at ``path`` (``GET /api/v1/devices`` or the overview) as ``{name: privacy_mode}``."""
    return {d["name"]: d["privacy_mode"] for d in (await get_json(client, path, headers))["devices"]}


# ---- the wire and the device --------------------------------------------------------------------------


def test_the_heartbeat_takes_the_two_modes_and_refuses_any_other():
    base = dict(device_id="dev-1", sent_at=1.8e9, uptime_s=1.0, agent_version="0.1.0", accelerator="cpu")
    for mode in ("sensor-only", "blackout-at-capture"):
        assert wire.Health(**base, privacy_mode=mode).privacy_mode == mode
    assert wire.Health(**base).privacy_mode is None  # an older agent that does not say
    for bad in ("blurred", "SENSOR-ONLY", "sensor_only", "unknown", "", 1):
        with pytest.raises(ValidationError, match="privacy_mode"):
            wire.Health(**base, privacy_mode=bad)
        with pytest.raises(ValidationError, match="privacy_mode"):
            wire.Health.model_validate_json(json.dumps({**base, "privacy_mode": bad}))


def test_the_device_reports_blackout_at_capture_unless_told_otherwise():
    def built(**over):
        return build_health("dev-1", agent_readings(**over), SystemReadings(), uptime_s=1.0, sent_at=1.8e9)

    assert built().privacy_mode == "blackout-at-capture"
    assert built(privacy_mode="sensor-only").privacy_mode == "sensor-only"
    assert json.loads(built(privacy_mode="sensor-only").model_dump_json())["privacy_mode"] == "sensor-only"


def test_the_filter_values_follow_the_wire():
    assert PRIVACY_FILTERS == ("sensor-only", "blackout-at-capture", "unknown")
    assert privacy_matches("sensor-only", None) and privacy_matches(None, None)
    assert privacy_matches("sensor-only", "sensor-only") and not privacy_matches("sensor-only", "blackout-at-capture")
    assert privacy_matches(None, "unknown") and not privacy_matches("blackout-at-capture", "unknown")


# ---- the fleet ----------------------------------------------------------------------------------------


async def test_each_device_shows_the_mode_it_last_reported_and_the_fleet_filters_by_it(aiohttp_client, tmp_path):
    clock = Clock()
    client = await start_app(aiohttp_client, tmp_path, clock)
    db_path = tmp_path / "fleet.db"
    sensor = await enroll_device(client, db_path, clock, name="cam-sensor", room="3B-12")
    blackout = await enroll_device(client, db_path, clock, name="cam-blackout", room="3B-14")
    old = await enroll_device(client, db_path, clock, name="cam-old", room="3B-15")
    await enroll_device(client, db_path, clock, name="cam-silent", room="3B-16")  # never sends a heartbeat
    await send(sensor, health_of(sensor, clock, privacy_mode="sensor-only").model_dump_json().encode())
    await send(blackout, health_of(blackout, clock).model_dump_json().encode())
    # An agent from before the field: its JSON has no privacy_mode at all.
    old_body = health_of(old, clock).model_dump_json(exclude={"privacy_mode"}).encode()
    assert b"privacy_mode" not in old_body
    await send(old, old_body)
    headers = api_headers(client, "viewer")

    everyone = {"cam-sensor": "sensor-only", "cam-blackout": "blackout-at-capture", "cam-old": None, "cam-silent": None}
    for path in LISTS:
        assert await modes(client, path, headers) == everyone
        assert await modes(client, f"{path}?privacy_mode=", headers) == everyone  # empty: no filter
        assert await modes(client, f"{path}?privacy_mode=sensor-only", headers) == {"cam-sensor": "sensor-only"}
        got = await modes(client, f"{path}?privacy_mode=blackout-at-capture", headers)
        assert got == {"cam-blackout": "blackout-at-capture"}
        assert await modes(client, f"{path}?privacy_mode=unknown", headers) == {"cam-old": None, "cam-silent": None}

    # The overview's summary stays the whole fleet's; the device detail and its health say the mode too.
    overview = await get_json(client, "/api/v1/fleet/overview?privacy_mode=sensor-only", headers)
    assert overview["summary"] == (await get_json(client, "/api/v1/fleet/overview", headers))["summary"]
    assert overview["devices"][0]["health"]["privacy_mode"] == "sensor-only"
    for device, mode in ((sensor, "sensor-only"), (blackout, "blackout-at-capture"), (old, None)):
        assert (await get_json(client, f"/api/v1/devices/{device.device_id}", headers))["privacy_mode"] == mode
        health = await get_json(client, f"/api/v1/devices/{device.device_id}/health", headers)
        assert health["latest"]["privacy_mode"] == mode
    row = live_db(client).execute("SELECT privacy_mode FROM health_latest WHERE device_id = ?", [old.device_id])
    assert row.fetchone() == (None,)

    # The last report wins: the camera is reconfigured, then the agent is rolled back to one that does not say.
    clock.now += 60
    await send(sensor, health_of(sensor, clock, privacy_mode="blackout-at-capture").model_dump_json().encode())
    assert (await modes(client, "/api/v1/devices", headers))["cam-sensor"] == "blackout-at-capture"
    assert await modes(client, "/api/v1/fleet/overview?privacy_mode=sensor-only", headers) == {}
    clock.now += 60
    await send(sensor, health_of(sensor, clock).model_dump_json(exclude={"privacy_mode"}).encode())
    assert (await modes(client, "/api/v1/fleet/overview", headers))["cam-sensor"] is None

    # An operator's action answers with the device view, mode included.
    resp = await client.post(
        f"/api/v1/devices/{blackout.device_id}/quarantine", headers=api_headers(client, "operator")
    )
    assert resp.status == 200, await resp.text()
    assert (await resp.json())["privacy_mode"] == "blackout-at-capture"


@pytest.mark.parametrize("bad", ["blurred", "SENSOR-ONLY", "sensor_only", "none", "null", "sensor-only,unknown"])
async def test_a_filter_value_that_is_not_a_mode_is_a_400_that_says_which_are(aiohttp_client, tmp_path, bad):
    client = await start_app(aiohttp_client, tmp_path, Clock())
    headers = api_headers(client, "viewer")
    for path in LISTS:
        resp = await client.get(path, params={"privacy_mode": bad}, headers=headers)
        assert resp.status == 400
        assert await resp.json() == {"error": BAD_FILTER}
    resp = await client.get("/api/v1/devices?privacy_mode=sensor-only&privacy_mode=blurred", headers=headers)
    assert resp.status == 200  # the first value counts, as for every query parameter
    resp = await client.get("/api/v1/fleet/overview?privacy_mode=unknown")
    assert resp.status == 401  # the filter does not open the list to anyone


async def test_a_heartbeat_with_a_mode_the_fleet_does_not_know_is_refused_and_nothing_changes(aiohttp_client, tmp_path):
    clock = Clock()
    client = await start_app(aiohttp_client, tmp_path, clock)
    device = await enroll_device(client, tmp_path / "fleet.db", clock)
    await send(device, health_of(device, clock, privacy_mode="sensor-only").model_dump_json().encode())
    body = json.loads(health_of(device, clock).model_dump_json())
    body["privacy_mode"] = "blurred"
    resp = await device.send("POST", wire.HEARTBEAT_PATH, json.dumps(body).encode(), "application/json")
    assert resp.status == 400
    assert "privacy_mode" in (await resp.json())["error"]
    got = await get_json(client, f"/api/v1/devices/{device.device_id}", api_headers(client, "viewer"))
    assert got["privacy_mode"] == "sensor-only"


@pytest.mark.sqlite_only  # starts from an old SQLite file
async def test_a_fleet_upgraded_from_before_the_mode_shows_its_devices_as_not_reported(aiohttp_client, tmp_path):
    path = tmp_path / "fleet.db"
    shutil.copyfile(OLD_DATABASE, path)
    config = ServerConfig(database=path, keys_dir=tmp_path / "keys", password_memory_kib=1024, password_time_cost=1)
    client = await aiohttp_client(create_app(config))
    db = FleetDB(path)
    try:
        token = operators.create_api_token(db.db, "upgrade-check", "viewer", "system", time.time())
        assert db.db.conn.execute("SELECT count(*) FROM health_latest WHERE privacy_mode IS NULL").fetchone() == (1,)
    finally:
        db.close()
    (device,) = (await get_json(client, "/api/v1/fleet/overview", bearer(token)))["devices"]
    assert device["health"] is not None and device["privacy_mode"] is None
    unknown = await get_json(client, "/api/v1/devices?privacy_mode=unknown", bearer(token))
    assert [d["id"] for d in unknown["devices"]] == [device["id"]]
