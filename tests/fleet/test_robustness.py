"""Inputs found by a fuzzing review: each once answered 500 (or left secrets readable); now a clear 4xx."""

import asyncio
import io
import os
import tarfile

import pytest
from aiohttp import DummyCookieJar

from fleet.accounts import service as operators
from fleet.app import create_app
from fleet.config import ServerConfig
from fleet.store.db import FleetDB
from fleet.web.appkeys import CLOCK_KEY, DB_KEY
from tests.fleet.helpers import Clock

FAST = {"password_memory_kib": 1024, "password_time_cost": 1}


async def start(aiohttp_client, tmp_path):
    app = create_app(ServerConfig(database=tmp_path / "data" / "fleet.db", **FAST), clock=Clock())
    client = await aiohttp_client(app, cookie_jar=DummyCookieJar())
    token = operators.create_api_token(app[DB_KEY].db, "fuzz", "admin", "test", app[CLOCK_KEY]())
    return client, {"Authorization": f"Bearer {token}"}


async def raw_status(port, request: bytes) -> bytes:
    """Send raw bytes (a client library would refuse these headers) and return the status line."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(request)
    await writer.drain()
    data = await asyncio.wait_for(reader.read(4096), 5)
    writer.close()
    return data.split(b"\r\n", 1)[0]


async def test_credential_headers_that_are_not_ascii_are_400(aiohttp_client, tmp_path):
    client, _ = await start(aiohttp_client, tmp_path)
    end = b"\r\nConnection: close\r\n\r\n"
    cases = [
        b"GET /api/v1/devices HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer wsa.abc.\xff\xfe" + end,
        b"GET /api/v1/devices HTTP/1.1\r\nHost: x\r\nCookie: wardsight_session=\xff\xfe" + end,
        b"POST /api/v1/tokens HTTP/1.1\r\nHost: x\r\nX-CSRF-Token: \xff\r\nContent-Length: 0" + end,
        b"POST /api/v1/device/heartbeat HTTP/1.1\r\nHost: x\r\nWardSight-Proof: eyJ\xff.e30.x\r\nContent-Length: 0"
        + end,
    ]
    for request in cases:
        status = await raw_status(client.server.port, request)
        assert status.startswith(b"HTTP/1.1 400"), (request, status)


async def test_ids_beyond_sqlite_integers_are_404(aiohttp_client, tmp_path):
    client, admin = await start(aiohttp_client, tmp_path)
    huge = "9" * 30
    for method, path in [("DELETE", f"/api/v1/webhooks/{huge}"), ("GET", f"/api/v1/webhooks/{huge}/deliveries"),
                         ("POST", f"/api/v1/webhooks/deliveries/{huge}/redeliver")]:  # fmt: skip
        resp = await client.request(method, path, headers=admin)
        assert resp.status == 404, (path, await resp.text())
    for query in ("abc", "0", "501", "1e400"):
        resp = await client.get(f"/api/v1/events?limit={query}", headers=admin)
        assert resp.status == 400, (query, await resp.text())


async def test_deeply_nested_inputs_are_400(aiohttp_client, tmp_path):
    client, admin = await start(aiohttp_client, tmp_path)
    deep = "[" * 5000 + "]" * 5000
    resp = await client.post("/api/v1/ota/root", data=deep, headers={**admin, "Content-Type": "application/json"})
    assert resp.status == 400
    job = {"kind": "push_config", "config": "a = " + deep, "target": {"room": "x"}, "expires_in_s": 600}
    resp = await client.post("/api/v1/jobs", json=job, headers=admin)
    assert resp.status == 400
    manifest = ("[" * 5000 + "]" * 5000).encode()
    package = io.BytesIO()
    with tarfile.open(fileobj=package, mode="w") as tar:
        info = tarfile.TarInfo("manifest.json")
        info.size = len(manifest)
        tar.addfile(info, io.BytesIO(manifest))
    resp = await client.post("/api/v1/models", data=package.getvalue(),
                             headers={**admin, "Content-Type": "application/octet-stream"})  # fmt: skip
    assert resp.status == 400, await resp.text()


async def test_a_broken_multipart_upload_is_400(aiohttp_client, tmp_path):
    client, admin = await start(aiohttp_client, tmp_path)
    for content_type in ("multipart/form-data", "multipart/form-data; boundary="):
        resp = await client.post("/api/v1/models", data=b"garbage", headers={**admin, "Content-Type": content_type})
        assert resp.status == 400, (content_type, await resp.text())


@pytest.mark.sqlite_only  # about the SQLite file's mode
def test_the_database_and_its_directory_are_owner_only(tmp_path):
    old = os.umask(0o022)
    try:
        db = FleetDB(tmp_path / "data" / "fleet.db")
        db.close()
    finally:
        os.umask(old)
    assert (tmp_path / "data" / "fleet.db").stat().st_mode & 0o777 == 0o600
    assert (tmp_path / "data").stat().st_mode & 0o077 == 0


async def test_json_bodies_are_capped_by_the_app_wide_limit_on_every_route(aiohttp_client, tmp_path):
    """Found by the restructure's review: routes with their own, larger cap must not lift the app-wide one."""
    client, admin = await start(aiohttp_client, tmp_path)
    padded = {"name": "x", "url": "https://example.org/hook", "pad": "x" * 20_000}  # over the default 16 KiB
    for path in ("/api/v1/webhooks", "/api/v1/tokens", "/api/v1/rollouts"):
        resp = await client.post(path, json=padded, headers=admin)
        assert resp.status == 413, (path, await resp.text())


async def test_device_bodies_are_capped_by_a_smaller_app_wide_limit_before_authentication(aiohttp_client, tmp_path):
    app = create_app(ServerConfig(database=tmp_path / "fleet.db", max_body_bytes=4096, **FAST), clock=Clock())
    client = await aiohttp_client(app)
    body = b"x" * 6000  # under a JWS's own 8 KiB cap, over this server's 4 KiB
    for path in ("/api/v1/enroll", "/api/v1/device/events"):
        resp = await client.post(path, data=body, headers={"Content-Type": "application/jose"})
        assert resp.status == 413, (path, await resp.text())
