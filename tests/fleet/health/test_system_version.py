"""Every device's system image is visible (issue 19, item 3): the heartbeat says which slot booted, the image's
version and its SBOM's sha256 (an older agent, or an image without a release file, says nothing); the fleet keeps the
last one reported, the device list, detail, health and the console's overview show it, and ``?system_version=``
filters by it.

Devices enroll and send heartbeats built by the firmware's own code (``read_system`` of a release file and a kernel
command line as the image and the boot leave them, then ``build_health``) through the device API of the real app; an
upgraded database from before the columns reads as not reported.
"""

from __future__ import annotations

import json
import shutil
import time

import pytest

from firmware import system_version
from firmware.heartbeat import SystemReadings, build_health, read_system
from fleet.accounts import service as operators
from fleet.app import create_app
from fleet.config import ServerConfig
from fleet.health.system import is_version, system_matches
from fleet.store.db import FleetDB
from tests.fleet.helpers import Clock, agent_readings, api_headers, bearer, enroll_device, live_db, start_app
from tests.fleet.test_migrations import OLD_DATABASE
from wardsight import wire

SHA_1 = "a" * 64
SHA_2 = "0123456789abcdef" * 4
LISTS = ("/api/v1/devices", "/api/v1/fleet/overview")
BAD_FILTER = "system_version must be a version (letters, digits, _ . + -; at most 32)"


def booted(tmp_path, name, slot, release) -> SystemReadings:
    """What ``read_system`` reads on a device whose image wrote ``release`` and whose boot gave ``rauc.slot=slot``."""
    root = tmp_path / name
    (root / "proc").mkdir(parents=True)
    (root / "proc" / "cmdline").write_text(f"console=tty1 root=/dev/mmcblk0p5 ro rauc.slot={slot} rootwait\n")
    (root / "system-release").write_text(release)
    system_version.read_system_version.cache_clear()
    return read_system(root / "proc", root / "sys", root / "system-release")


def health_of(device, clock, system: SystemReadings | None = None) -> wire.Health:
    return build_health(
        device.device_id, agent_readings(), system or SystemReadings(), uptime_s=60.0, sent_at=clock.now
    )


async def send(device, health: wire.Health, **dump):
    resp = await device.send("POST", wire.HEARTBEAT_PATH, health.model_dump_json(**dump).encode(), "application/json")
    assert resp.status == 200, await resp.text()


async def get_json(client, path, headers):
    resp = await client.get(path, headers=headers)
    assert resp.status == 200, await resp.text()
    return await resp.json()


async def systems(client, path, headers) -> dict[str, dict | None]:
    """The device list at ``path`` as ``{name: system}``."""
    return {d["name"]: d["system"] for d in (await get_json(client, path, headers))["devices"]}


def test_the_filter_takes_exactly_the_reported_version():
    system = {"slot": "A", "version": "2026.12.1", "sbom_sha256": None}
    assert system_matches(system, None) and system_matches(None, None)
    assert system_matches(system, "2026.12.1")
    assert not system_matches(system, "2026.12") and not system_matches(system, "2026.12.10")
    assert not system_matches(None, "2026.12.1")
    assert is_version("2026.12.1") and is_version("1.2.0-rc1+b5")
    assert not any(is_version(v) for v in ("", " 1.0", "1.0 ", "-1", "(none)", "1" * 33, "1.0\n", "1/0"))


async def test_each_device_shows_the_system_it_last_reported_and_the_fleet_filters_by_version(aiohttp_client, tmp_path):
    clock = Clock()
    client = await start_app(aiohttp_client, tmp_path, clock)
    db_path = tmp_path / "fleet.db"
    new_a = await enroll_device(client, db_path, clock, name="cam-new-a", room="3B-12")
    new_b = await enroll_device(client, db_path, clock, name="cam-new-b", room="3B-14")
    old = await enroll_device(client, db_path, clock, name="cam-old", room="3B-15")
    agent = await enroll_device(client, db_path, clock, name="cam-agent", room="3B-16")
    await enroll_device(client, db_path, clock, name="cam-silent", room="3B-17")  # never sends a heartbeat
    release = f"VERSION=2026.12.1\nSBOM_SHA256={SHA_2}\n"
    await send(new_a, health_of(new_a, clock, booted(tmp_path, "a", "B", release)))
    await send(new_b, health_of(new_b, clock, booted(tmp_path, "b", "A", release)))
    await send(old, health_of(old, clock, booted(tmp_path, "old", "A", f'VERSION="2026.11.0"\nSBOM_SHA256={SHA_1}\n')))
    # An agent from before the field: its JSON has no system at all.
    assert b'"system"' not in health_of(agent, clock).model_dump_json(exclude={"system"}).encode()
    await send(agent, health_of(agent, clock), exclude={"system"})
    headers = api_headers(client, "viewer")

    on_new = {"slot": "B", "version": "2026.12.1", "sbom_sha256": SHA_2, "compatible": None}
    everyone = {
        "cam-new-a": on_new,
        "cam-new-b": {**on_new, "slot": "A"},
        "cam-old": {"slot": "A", "version": "2026.11.0", "sbom_sha256": SHA_1, "compatible": None},
        "cam-agent": None,
        "cam-silent": None,
    }
    for path in LISTS:
        assert await systems(client, path, headers) == everyone
        assert await systems(client, f"{path}?system_version=", headers) == everyone  # empty: no filter
        got = await systems(client, f"{path}?system_version=2026.12.1", headers)
        assert got == {"cam-new-a": everyone["cam-new-a"], "cam-new-b": everyone["cam-new-b"]}
        assert await systems(client, f"{path}?system_version=2026.11.0", headers) == {"cam-old": everyone["cam-old"]}
        assert await systems(client, f"{path}?system_version=2026.12", headers) == {}  # exact, not a prefix
        both = await systems(client, f"{path}?system_version=2026.12.1&privacy_mode=blackout-at-capture", headers)
        assert set(both) == {"cam-new-a", "cam-new-b"}
        assert await systems(client, f"{path}?system_version=2026.12.1&privacy_mode=sensor-only", headers) == {}

    # The overview's summary stays the whole fleet's; the device detail and its health say the system too.
    overview = await get_json(client, "/api/v1/fleet/overview?system_version=2026.11.0", headers)
    assert overview["summary"] == (await get_json(client, "/api/v1/fleet/overview", headers))["summary"]
    latest = overview["devices"][0]["health"]
    assert (latest["system_slot"], latest["system_version"], latest["system_sbom_sha256"]) == ("A", "2026.11.0", SHA_1)
    for device, name in ((new_a, "cam-new-a"), (old, "cam-old"), (agent, "cam-agent")):
        assert (await get_json(client, f"/api/v1/devices/{device.device_id}", headers))["system"] == everyone[name]
        health = await get_json(client, f"/api/v1/devices/{device.device_id}/health", headers)
        assert health["latest"]["system_version"] == (everyone[name] or {}).get("version")
    row = live_db(client).execute(
        "SELECT system_slot, system_version, system_sbom_sha256 FROM health_latest WHERE device_id = ?",
        [agent.device_id],
    )
    assert row.fetchone() == (None, None, None)

    # The last report wins: the old device is updated (and boots its other slot), then its agent is rolled back to
    # one that does not say.
    clock.now += 60
    await send(old, health_of(old, clock, booted(tmp_path, "old-updated", "B", release)))
    got = await systems(client, "/api/v1/devices?system_version=2026.12.1", headers)
    assert got["cam-old"] == on_new and len(got) == 3
    assert await systems(client, "/api/v1/fleet/overview?system_version=2026.11.0", headers) == {}
    clock.now += 60
    await send(old, health_of(old, clock), exclude={"system"})
    assert (await systems(client, "/api/v1/fleet/overview", headers))["cam-old"] is None

    # An operator's action answers with the device view, system included.
    resp = await client.post(f"/api/v1/devices/{new_b.device_id}/quarantine", headers=api_headers(client, "operator"))
    assert resp.status == 200, await resp.text()
    assert (await resp.json())["system"] == everyone["cam-new-b"]


@pytest.mark.parametrize("bad", ["(none)", "2026.12.1 ", "-1", "1" * 33, "2026/12", "a b", "ü1"])
async def test_a_filter_value_that_cannot_be_a_version_is_a_400_that_says_so(aiohttp_client, tmp_path, bad):
    client = await start_app(aiohttp_client, tmp_path, Clock())
    headers = api_headers(client, "viewer")
    for path in LISTS:
        resp = await client.get(path, params={"system_version": bad}, headers=headers)
        assert resp.status == 400
        assert await resp.json() == {"error": BAD_FILTER}
    resp = await client.get("/api/v1/fleet/overview?system_version=2026.12.1")
    assert resp.status == 401  # the filter does not open the list to anyone


@pytest.mark.parametrize(
    "system",
    [
        {"slot": "A", "version": "2026.12.1", "sbom_sha256": SHA_1.upper()},
        {"slot": "A", "version": "2026.12.1 beta", "sbom_sha256": None},
        {"slot": "A B", "version": "2026.12.1"},
        {"version": "2026.12.1", "sbom": SHA_1},
        {"slot": "A"},
        "2026.12.1",
    ],
)
async def test_a_heartbeat_with_a_malformed_system_is_refused_and_nothing_changes(aiohttp_client, tmp_path, system):
    clock = Clock()
    client = await start_app(aiohttp_client, tmp_path, clock)
    device = await enroll_device(client, tmp_path / "fleet.db", clock)
    await send(device, health_of(device, clock, SystemReadings(system=wire.SystemVersion(slot="B", version="1.0"))))
    body = json.loads(health_of(device, clock).model_dump_json())
    body["system"] = system
    resp = await device.send("POST", wire.HEARTBEAT_PATH, json.dumps(body).encode(), "application/json")
    assert resp.status == 400
    assert "system" in (await resp.json())["error"]
    got = await get_json(client, f"/api/v1/devices/{device.device_id}", api_headers(client, "viewer"))
    assert got["system"] == {"slot": "B", "version": "1.0", "sbom_sha256": None, "compatible": None}


@pytest.mark.sqlite_only  # starts from an old SQLite file
async def test_a_fleet_upgraded_from_before_the_columns_shows_its_devices_as_not_reported(aiohttp_client, tmp_path):
    path = tmp_path / "fleet.db"
    shutil.copyfile(OLD_DATABASE, path)
    config = ServerConfig(database=path, keys_dir=tmp_path / "keys", password_memory_kib=1024, password_time_cost=1)
    client = await aiohttp_client(create_app(config))
    db = FleetDB(path)
    try:
        token = operators.create_api_token(db.db, "upgrade-check", "viewer", "system", time.time())
        assert db.db.conn.execute("SELECT count(*) FROM health_latest WHERE system_version IS NULL").fetchone() == (1,)
        indexes = {r[1] for r in db.db.conn.execute("PRAGMA index_list(health_latest)")}
        assert "health_latest_system_version" in indexes
    finally:
        db.close()
    (device,) = (await get_json(client, "/api/v1/fleet/overview", bearer(token)))["devices"]
    assert device["health"] is not None and device["system"] is None
    assert (await get_json(client, "/api/v1/devices?system_version=1.0", bearer(token)))["devices"] == []
