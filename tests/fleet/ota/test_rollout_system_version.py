"""A rollout can target "the devices on system version X" (issue 19, item 3): the selector's ``system_version`` takes
the active devices whose latest heartbeat reports exactly that version, alone or with the other fields; pure, then
through the rollouts API of the real app with devices that report their systems in heartbeats."""

from __future__ import annotations

import pytest

from firmware.heartbeat import SystemReadings, build_health
from fleet.app import create_app
from fleet.config import ServerConfig
from fleet.ota.rollouts.selection import DeviceInfo, Selector, select_devices
from tests.fleet.helpers import agent_readings, api_headers, enroll_device
from tests.fleet.ota.test_rollouts import PUBLISHED, ROLLOUTS, poll, publish, rollout_body
from wardsight import wire

# ---- pure --------------------------------------------------------------------------------------------------


def fleet() -> list[DeviceInfo]:
    return [
        DeviceInfo("new-1", "3B-12", "st-marys", "3B", system_version="2026.12.1"),
        DeviceInfo("new-2", "4A-01", "st-marys", "4A", system_version="2026.12.1"),
        DeviceInfo("old-1", "3B-14", "st-marys", "3B", system_version="2026.11.0"),
        DeviceInfo("silent", "3B-15", "st-marys", "3B"),  # never said (an older agent, not heard from)
        DeviceInfo("held", "3B-16", "st-marys", "3B", status="quarantined", system_version="2026.12.1"),
    ]


def picked(selector: Selector) -> set[str]:
    return set(select_devices(fleet(), selector, "ro-test"))


def test_the_selector_takes_the_active_devices_on_exactly_that_version():
    assert picked(Selector(system_version="2026.12.1")) == {"new-1", "new-2"}  # not the quarantined one
    assert picked(Selector(system_version="2026.11.0")) == {"old-1"}
    assert picked(Selector(system_version="2026.12")) == set()  # exact, not a prefix
    assert picked(Selector(ward="3B", system_version="2026.12.1")) == {"new-1"}  # with the other fields
    assert picked(Selector(ward="3B")) == {"new-1", "old-1", "silent"}  # no version: reported or not
    assert picked(Selector(system_version="2026.12.1", percent=100)) == {"new-1", "new-2"}


# ---- through the API ---------------------------------------------------------------------------------------


@pytest.fixture
async def client(aiohttp_client, db_path, clock, tmp_path):
    client = await aiohttp_client(create_app(ServerConfig(database=db_path), clock=clock))
    publish(client.server.app, clock, tmp_path / "packages", PUBLISHED)
    return client


async def heartbeat(device, clock, version: str | None):
    system = SystemReadings(system=None if version is None else wire.SystemVersion(slot="A", version=version))
    health = build_health(device.device_id, agent_readings(), system, uptime_s=60.0, sent_at=clock.now)
    resp = await device.send("POST", wire.HEARTBEAT_PATH, health.model_dump_json().encode(), "application/json")
    assert resp.status == 200, await resp.text()


async def test_a_rollout_to_the_devices_on_a_system_version_offers_only_them(client, db_path, clock):
    versions = {"3B-12": "2026.12.1", "3B-14": "2026.12.1", "3B-15": "2026.11.0", "3B-16": None, "4A-01": "2026.12.1"}
    devices = {}
    for room, version in versions.items():
        devices[room] = await enroll_device(client, db_path, clock, name=f"cam-{room}", room=room, ward=room[:2])
        await heartbeat(devices[room], clock, version)
    operator = api_headers(client, "operator")

    body = rollout_body(selector={"ward": "3B", "system_version": "2026.12.1"}, groups=[{"percent": 100}])
    resp = await client.post(ROLLOUTS, json=body, headers=operator)
    assert resp.status == 201, await resp.text()
    rollout = await resp.json()
    wanted = {devices["3B-12"].device_id, devices["3B-14"].device_id}
    assert {row["device_id"] for row in rollout["devices"]} == wanted
    assert rollout["selector"]["system_version"] == "2026.12.1"
    for room, device in devices.items():
        offer = await poll(device)
        assert (offer is not None) == (device.device_id in wanted), room

    # The selection is made when the rollout is created: a device updated since is not added to it.
    await heartbeat(devices["3B-15"], clock, "2026.12.1")
    assert await poll(devices["3B-15"]) is None

    # No active device on that version: refused, and nothing is stored.
    body = rollout_body(selector={"system_version": "2027.1.0"}, groups=[{"percent": 100}])
    resp = await client.post(ROLLOUTS, json=body, headers=operator)
    assert resp.status == 400
    assert (await resp.json())["error"] == "no active device matches the selector"


@pytest.mark.parametrize("bad", ["", "2026.12.1 beta", "-1", "1" * 33, 2026])
async def test_a_selector_version_that_cannot_be_one_is_a_400_naming_the_field(client, db_path, clock, bad):
    device = await enroll_device(client, db_path, clock, name="cam-1", room="3B-12", ward="3B")
    await heartbeat(device, clock, "2026.12.1")
    body = rollout_body(selector={"system_version": bad}, groups=[{"percent": 100}])
    resp = await client.post(ROLLOUTS, json=body, headers=api_headers(client, "operator"))
    assert resp.status == 400
    assert "system_version" in (await resp.json())["error"]
    assert (await (await client.get(ROLLOUTS, headers=api_headers(client, "viewer"))).json())["rollouts"] == []
