"""Event intake from enrolled devices against the real aiohttp app and a real SQLite file."""

import logging

import pytest

from fleet.store.db import FleetDB
from tests.fleet.helpers import counts, enroll_device, event_for, start_default_app
from wardsight import wire


@pytest.fixture
async def client(aiohttp_client, db_path, clock):
    return await start_default_app(aiohttp_client, db_path, clock)


async def test_event_accepted_once(client, db_path, clock):
    device = await enroll_device(client, db_path, clock)
    body = wire.sign_event(event_for(device.device_id), device.key)
    first = await device.post_event(jws=body)
    assert first.status == 201 and (await first.json())["stored"] is True
    again = await device.post_event(jws=body)
    assert again.status == 200 and (await again.json())["stored"] is False
    assert counts(db_path) == (1, 1)
    db = FleetDB(db_path)
    try:
        assert db.recent_events(5)[0]["data"] == {"count": 1, "previous": 0}
        assert db.get_device(device.device_id)["last_seen"] == clock.now
    finally:
        db.close()


async def test_events_signed_by_another_key_or_device_store_nothing(client, db_path, clock, caplog):
    device = await enroll_device(client, db_path, clock)
    other = await enroll_device(client, db_path, clock, name="cam-2")
    stranger = wire.generate_key()
    cases = [
        (wire.sign_event(event_for(device.device_id), stranger), 401, "signature does not verify"),
        (wire.sign_event(event_for(other.device_id), other.key), 403, "only send events it signed itself"),
        ("garbage", 400, "compact JWS"),
    ]
    for body, status, reason in cases:
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="wardsight.fleet"):
            resp = await device.post_event(jws=body)
        assert resp.status == status, (reason, await resp.text())
        assert reason in (await resp.json())["error"]
        assert reason in caplog.text
    assert counts(db_path) == (2, 0)


async def test_bad_device_requests_get_4xx_not_500(client, db_path, clock):
    device = await enroll_device(client, db_path, clock)
    path = "/api/v1/device/events"
    resp = await device.send("POST", path, b"{}", "application/json")
    assert resp.status == 415
    resp = await device.send("POST", path, b"\xff\xfe", "application/jose")
    assert resp.status == 400
    resp = await device.send("POST", path, b"a" * 40_000, "application/jose")
    assert resp.status == 413
    resp = await device.send("POST", "/api/v1/device/heartbeat", b"{not json", "application/json")
    assert resp.status == 400
    resp = await device.send("POST", "/api/v1/device/heartbeat", b'{"device_id": "x", "extra": 1}', "application/json")
    assert resp.status == 400
    resp = await client.post("/api/v1/enroll", data=b"{}", headers={"Content-Type": "application/json"})
    assert resp.status == 415
    assert counts(db_path) == (1, 0)


async def test_event_for_another_room_is_refused(client, db_path, clock):
    device = await enroll_device(client, db_path, clock)
    body = wire.sign_event(event_for(device.device_id, room="ICU-9", app="fall", severity="critical"), device.key)
    resp = await device.post_event(jws=body)
    assert resp.status == 403 and "belongs to room 3B-12" in (await resp.json())["error"]
    assert counts(db_path) == (1, 0)
