"""The console's server routes (fleet/console/) with the real app: static files, the fleet overview and a
device's health history, the enrollment QR code and bundle CA, the last pushed configuration; each role."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from aiohttp import DummyCookieJar

from fleet import pki
from fleet.accounts import service as operators
from fleet.app import create_app
from fleet.auth.operator import COOKIE_NAME, CSRF_HEADER
from fleet.config import ServerConfig
from fleet.health.store import record_heartbeat
from fleet.web.appkeys import CLOCK_KEY, CONFIG_KEY, DB_KEY
from tests.fleet.helpers import Clock, enroll_device
from wardsight import wire

PASSWORD = "correct horse battery"


@pytest.fixture
async def client(aiohttp_client, tmp_path):
    config = ServerConfig(database=tmp_path / "fleet.db", password_memory_kib=1024, password_time_cost=1)
    app = create_app(config, clock=Clock())
    return await aiohttp_client(app, cookie_jar=DummyCookieJar())


async def login(client, role):
    app = client.server.app
    operators.create_operator(app[DB_KEY].db, role, PASSWORD, role, app[CLOCK_KEY](), app[CONFIG_KEY])
    resp = await client.post("/api/v1/session", json={"username": role, "password": PASSWORD})
    assert resp.status == 200
    return {
        "Cookie": f"{COOKIE_NAME}={resp.cookies[COOKIE_NAME].value}",
        CSRF_HEADER: (await resp.json())["csrf_token"],
    }


async def test_static_files_are_served_with_their_type_and_nothing_else(client):
    resp = await client.get("/static/page-fleet.js")
    assert resp.status == 200 and resp.content_type == "application/javascript"
    assert "default-src 'self'" in resp.headers["Content-Security-Policy"]
    assert (await client.get("/static/console.css")).content_type == "text/css"
    for bad in ("/static/..%2Fapp.py", "/static/missing.js", "/static/console.html", "/static/.hidden.js"):
        assert (await client.get(bad)).status == 404, bad


async def test_overview_and_health_history_for_viewers(client):
    assert (await client.get("/api/v1/fleet/overview")).status == 401
    viewer = await login(client, "viewer")
    app = client.server.app
    device = await enroll_device(client, app[CONFIG_KEY].database, app[CLOCK_KEY], room="3B-12")
    resp = await client.get("/api/v1/fleet/overview", headers=viewer)
    body = await resp.json()
    assert resp.status == 200 and [d["state"] for d in body["devices"]] == ["online"]
    beat = wire.Health(device_id=device.device_id, sent_at=1_800_000_000.0, uptime_s=5, agent_version="0.1.0",
                       accelerator="cpu", fps=14.5, cpu_temp_c=85.0, models={"pose_net": "1.0"})  # fmt: skip
    record_heartbeat(app[DB_KEY].db, device.device_id, beat, app[CLOCK_KEY]())
    body = await (await client.get("/api/v1/fleet/overview", headers=viewer)).json()
    [row] = body["devices"]
    assert row["state"] == "degraded" and row["health"]["degraded"] == ["hot"] and row["health"]["fps"] == 14.5
    assert body["summary"]["degraded"] == 1
    got = await (await client.get(f"/api/v1/devices/{device.device_id}/health", headers=viewer)).json()
    assert got["latest"]["models"] == {"pose_net": "1.0"} and [s["fps"] for s in got["samples"]] == [14.5]
    assert (await client.get("/api/v1/devices/nope/health", headers=viewer)).status == 404
    assert (await client.get(f"/api/v1/devices/{device.device_id}/health?limit=0", headers=viewer)).status == 400


async def test_qr_code_bundle_ca_and_config_need_an_operator(client):
    viewer, operator = await login(client, "viewer"), await login(client, "operator")
    assert (await client.post("/api/v1/console/qr", json={"text": "x"}, headers=viewer)).status == 403
    assert (await client.get("/api/v1/console/bundle-ca", headers=viewer)).status == 403
    resp = await client.post("/api/v1/console/qr", json={"text": '{"token": "wst.a.b"}'}, headers=operator)
    svg = await resp.text()
    assert resp.status == 200 and resp.content_type == "image/svg+xml"
    assert svg.startswith("<svg") and "<script" not in svg and "style=" not in svg  # the CSP allows no inline style
    no_csrf = {"Cookie": operator["Cookie"]}
    assert (await client.post("/api/v1/console/qr", json={"text": "x"}, headers=no_csrf)).status == 403
    assert (await client.post("/api/v1/console/qr", json={"text": "x" * 3000}, headers=operator)).status == 400
    info = await (await client.get("/api/v1/console/bundle-ca", headers=operator)).json()
    assert info["ca_pem"] is None  # no fleet CA made yet (the TLS server makes it)
    assert info["tuf_root"] is None  # no OTA repository yet ('wardsight ota init' makes it)
    config = client.server.app[CONFIG_KEY]
    pki.ensure_ca(config.keys_dir or config.database.parent / "fleet-keys", now=datetime.now(UTC))
    info = await (await client.get("/api/v1/console/bundle-ca", headers=operator)).json()
    assert info["ca_pem"].startswith("-----BEGIN CERTIFICATE-----") and info["server_url"].startswith("http://")
    app = client.server.app
    device = await enroll_device(client, app[CONFIG_KEY].database, app[CLOCK_KEY], room="3B-12")
    assert (await client.get(f"/api/v1/devices/{device.device_id}/config", headers=viewer)).status == 403
    got = await (await client.get(f"/api/v1/devices/{device.device_id}/config", headers=operator)).json()
    assert got["config"] is None
