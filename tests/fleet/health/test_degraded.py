"""States that agree (issue 15, item 7): a device counts as degraded for what matters to the apps, not because a
busy machine drops a few frames of its source.

The threshold is the apps' effective frame rate (the heartbeat's ``fps``, frames analysed a second) below
:data:`fleet.health.store.MIN_APP_FPS`. Devices enroll and send heartbeats built by the firmware's own
``build_health`` through the device API of the real app (aiohttp on loopback, SQLite in a file); the console's
overview and the device's health say the state.
"""

from __future__ import annotations

from typing import Any

from firmware.heartbeat import SystemReadings, build_health
from fleet.health.store import FPS_SETTLE_S, HOT_C, MIN_APP_FPS, degraded_reasons
from tests.fleet.helpers import Clock, agent_readings, api_headers, enroll_device, start_app
from wardsight import wire


async def beat(device: Any, clock: Clock, *, uptime_s: float, **over: Any) -> None:
    readings = agent_readings(**over)
    health = build_health(device.device_id, readings, SystemReadings(), uptime_s=uptime_s, sent_at=clock.now)
    resp = await device.send("POST", wire.HEARTBEAT_PATH, health.model_dump_json().encode(), "application/json")
    assert resp.status == 200, await resp.text()


async def overview_of(client: Any, headers: dict[str, str]) -> dict[str, Any]:
    resp = await client.get("/api/v1/fleet/overview", headers=headers)
    assert resp.status == 200, await resp.text()
    return dict(await resp.json())


async def test_dropped_frames_at_a_good_rate_are_online_and_a_slow_device_is_degraded(aiohttp_client, tmp_path):
    clock = Clock()
    client = await start_app(aiohttp_client, tmp_path, clock)
    db_path = tmp_path / "fleet.db"
    busy = await enroll_device(client, db_path, clock, name="cam-busy", room="3B-12")
    slow = await enroll_device(client, db_path, clock, name="cam-slow", room="3B-14")
    # Two heartbeats each, 30 s apart; the busy one drops frames between them (a 30 fps file on 2 cores).
    await beat(busy, clock, uptime_s=60.0, fps=14.0, frames_dropped=400)
    await beat(slow, clock, uptime_s=60.0, fps=3.0)
    clock.now += 30
    await beat(busy, clock, uptime_s=90.0, fps=14.0, frames_dropped=850)
    await beat(slow, clock, uptime_s=90.0, fps=3.0)
    headers = api_headers(client, "viewer")

    body = await overview_of(client, headers)
    rows = {d["name"]: d for d in body["devices"]}
    assert rows["cam-busy"]["health"]["frames_dropped_delta"] == 450  # dropping, and still...
    assert (rows["cam-busy"]["state"], rows["cam-busy"]["health"]["degraded"]) == ("online", [])
    assert (rows["cam-slow"]["state"], rows["cam-slow"]["health"]["degraded"]) == ("degraded", ["slow"])
    # The console says what it was judged against.
    assert (rows["cam-slow"]["health"]["min_app_fps"], rows["cam-slow"]["health"]["hot_c"]) == (MIN_APP_FPS, HOT_C)
    assert body["summary"]["degraded"] == 1
    assert body["summary"]["degraded_devices"] == [{"device_id": slow.device_id, "room": "3B-14", "reasons": ["slow"]}]
    resp = await client.get(f"/api/v1/devices/{slow.device_id}/health", headers=headers)
    assert (await resp.json())["latest"]["degraded"] == ["slow"]

    # The slow device catches up: online again.
    clock.now += 30
    await beat(slow, clock, uptime_s=120.0, fps=MIN_APP_FPS)
    rows = {d["name"]: d for d in (await overview_of(client, headers))["devices"]}
    assert (rows["cam-slow"]["state"], rows["cam-slow"]["health"]["degraded"]) == ("online", [])


async def test_an_agent_that_just_started_is_not_slow_yet(aiohttp_client, tmp_path):
    clock = Clock()
    client = await start_app(aiohttp_client, tmp_path, clock)
    device = await enroll_device(client, tmp_path / "fleet.db", clock, name="cam-new", room="3B-12")
    headers = api_headers(client, "viewer")
    # The agent's first heartbeat goes out before its first frame: 0 fps says nothing yet.
    await beat(device, clock, uptime_s=0.05, fps=0.0, frames_processed=0)
    [row] = (await overview_of(client, headers))["devices"]
    assert (row["state"], row["health"]["degraded"]) == ("online", [])
    # Past the settling time, a camera that delivers nothing is slow.
    clock.now += 30
    await beat(device, clock, uptime_s=FPS_SETTLE_S + 20, fps=0.0, frames_processed=0)
    [row] = (await overview_of(client, headers))["devices"]
    assert (row["state"], row["health"]["degraded"]) == ("degraded", ["slow"])


async def test_an_accelerator_fallback_is_one_reason_not_two(aiohttp_client, tmp_path):
    clock = Clock()
    client = await start_app(aiohttp_client, tmp_path, clock)
    device = await enroll_device(client, tmp_path / "fleet.db", clock, name="cam-hailo", room="3B-12")
    # The agent lists the fallback among its warnings too (firmware.heartbeat.build_health).
    await beat(device, clock, uptime_s=60.0, accelerator="cpu", accelerator_configured="hailo8")
    [row] = (await overview_of(client, api_headers(client, "viewer")))["devices"]
    assert row["health"]["warnings"] == ["accelerator_fallback"]
    assert (row["state"], row["health"]["degraded"]) == ("degraded", ["accelerator_fallback"])


def test_the_reasons_in_order_and_an_unknown_rate_is_not_slow():
    latest = {
        "fps": 2.0,
        "uptime_s": 600.0,
        "warnings": ["camera_reconnect", "accelerator_fallback"],
        "accelerator": "cpu",
        "accelerator_configured": "hailo8",
        "cpu_temp_c": 81.0,
        "frames_dropped_delta": 500,
    }
    assert degraded_reasons(latest) == ["slow", "warnings", "accelerator_fallback", "hot"]
    assert degraded_reasons({"fps": None, "uptime_s": 600.0, "frames_dropped_delta": 500}) == []
    assert degraded_reasons({"fps": MIN_APP_FPS - 0.01, "uptime_s": FPS_SETTLE_S}) == ["slow"]
    assert degraded_reasons({"fps": MIN_APP_FPS - 0.01, "uptime_s": FPS_SETTLE_S - 0.01}) == []
