"""What the console's job page reads: each device's job carries the device's name, site, ward and room, so targets
read as "cam-3b12 (3B-12)", not as ids."""

import pytest
from aiohttp import DummyCookieJar

from fleet.app import create_app
from fleet.config import ServerConfig
from fleet.web.appkeys import DB_KEY
from tests.fleet.helpers import api_headers, insert_device


@pytest.fixture
async def client(aiohttp_client, db_path, clock):
    config = ServerConfig(database=db_path, password_memory_kib=1024, password_time_cost=1)
    return await aiohttp_client(create_app(config, clock=clock), cookie_jar=DummyCookieJar())


@pytest.mark.sqlite_only  # turns off SQLite foreign keys to forget a device
async def test_a_batchs_jobs_name_their_devices_and_rooms(client):
    db = client.server.app[DB_KEY]
    insert_device(db, "dev-a", name="cam-3b12", room="3B-12", ward="3B", site="st-marys")
    insert_device(db, "dev-b", name="cam-4a02", room="4A-02", ward="4A", site="st-marys")
    operator = api_headers(client, "operator")
    body = {"kind": "collect_diagnostics", "target": {"device_ids": ["dev-b", "dev-a"]}, "expires_in_s": 3600}
    resp = await client.post("/api/v1/jobs", json=body, headers=operator)
    assert resp.status == 201, await resp.text()
    batch_id = (await resp.json())["batch_id"]
    resp = await client.get(f"/api/v1/jobs/{batch_id}", headers=api_headers(client, "viewer"))
    assert resp.status == 200
    view = await resp.json()
    got = {j["device_id"]: (j["device_name"], j["site"], j["ward"], j["room"]) for j in view["jobs"]}
    assert got == {"dev-a": ("cam-3b12", "st-marys", "3B", "3B-12"), "dev-b": ("cam-4a02", "st-marys", "4A", "4A-02")}
    assert view["target"] == {"device_ids": ["dev-b", "dev-a"]}

    # A device forgotten since (deleted row): its job still shows, without a name.
    db.db.conn.execute("PRAGMA foreign_keys = OFF")
    db.db.conn.execute("DELETE FROM devices WHERE id = 'dev-b'")
    view = await (await client.get(f"/api/v1/jobs/{batch_id}", headers=operator)).json()
    assert {j["device_id"]: j["device_name"] for j in view["jobs"]} == {"dev-a": "cam-3b12", "dev-b": None}
