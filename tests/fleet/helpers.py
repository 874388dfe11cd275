"""Shared pieces for tests that talk to the real fleet app as a device would (hand-built, not the firmware)."""

from __future__ import annotations

import socket
from typing import Any

from fleet.accounts import service as operators
from fleet.enrollment import tokens
from fleet.store.db import FleetDB
from fleet.web.appkeys import CLOCK_KEY, DB_KEY
from wardsight import wire

JOSE = {"Content-Type": "application/jose"}
KEEP = object()


class Clock:
    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def issue_token(db_path, clock, room="3B-12", ttl=600.0, **scope):
    plaintext, record = tokens.new_token(room, clock(), ttl, **scope)
    db = FleetDB(db_path)
    db.add_token(record)
    db.close()
    return plaintext


def enrollment(token, key=None, name="cam-1", public_key=None):
    key = key or wire.generate_key()
    req = wire.EnrollmentRequest(
        token=token, public_key=public_key or wire.encode_public_key(key.public_key()), name=name
    )
    return key, wire.sign_enrollment(req, key)


def counts(db_path):
    db = FleetDB(db_path)
    try:
        return db.db["devices"].count, db.db["events"].count
    finally:
        db.close()


def event_for(device_id, **over):
    fields: dict[str, Any] = dict(
        event_id=wire.new_event_id(),
        device_id=device_id,
        room="3B-12",
        app="occupancy",
        type="count_changed",
        time=1_800_000_000.0,
        data={"count": 1, "previous": 0},
    )
    fields.update(over)
    return wire.Event(**fields)


class DeviceSession:
    """One device speaking the device API by hand, so tests can bend any part of a request."""

    def __init__(self, client, key, device_id, device_clock=None) -> None:
        self.client, self.key, self.device_id = client, key, device_id
        self.device_clock = device_clock or (lambda: 1_800_000_000.0)
        self.nonce: str | None = None
        self.credential: str | None = None

    def _learn(self, resp) -> None:
        if wire.NONCE_HEADER in resp.headers:
            self.nonce = resp.headers[wire.NONCE_HEADER]

    async def fetch_nonce(self) -> str:
        resp = await self.client.get("/api/v1/device/nonce")
        assert resp.status == 200
        self._learn(resp)
        self.nonce = (await resp.json())["nonce"]
        return self.nonce

    def proof(self, method, target, body=b"", *, credential=KEEP, nonce=None, key=None, kid=None) -> str:
        """A proof for ``target``: a path, with its query string if it has one (``/api/v1/device/jobs?wait=1``)."""
        cred = self.credential if credential is KEEP else credential
        path, _, query = target.partition("?")
        return wire.sign_proof(
            key or self.key,
            kid or self.device_id,
            method=method,
            path=path,
            query=query,
            body=body,
            nonce=nonce or self.nonce,
            credential=cred,
            now=self.device_clock(),
        )

    async def send(self, method, path, body=b"", content_type=None, *, credential=KEEP, proof=None, **proof_over):
        if self.nonce is None and "nonce" not in proof_over:
            await self.fetch_nonce()
        cred = self.credential if credential is KEEP else credential
        headers = {wire.PROOF_HEADER: proof or self.proof(method, path, body, credential=cred, **proof_over)}
        if cred is not None:
            headers["Authorization"] = f"{wire.AUTH_SCHEME} {cred}"
        if content_type:
            headers["Content-Type"] = content_type
        resp = await self.client.request(method, path, data=body, headers=headers)
        self._learn(resp)
        if resp.status == 401 and proof is None and not proof_over and (await resp.json()).get("code") == "use_nonce":
            # Like the real client: the refusal carries a fresh nonce; try once more with it.
            headers[wire.PROOF_HEADER] = self.proof(method, path, body, credential=cred)
            resp = await self.client.request(method, path, data=body, headers=headers)
            self._learn(resp)
        return resp

    async def obtain_credential(self):
        resp = await self.send("POST", "/api/v1/device/credential", credential=None)
        if resp.status == 200:
            self.credential = (await resp.json())["credential"]
        return resp

    async def renew(self):
        resp = await self.send("POST", "/api/v1/device/credential")
        if resp.status == 200:
            self.credential = (await resp.json())["credential"]
        return resp

    async def post_event(self, event=None, *, jws=None, **over):
        body = (jws or wire.sign_event(event or event_for(self.device_id), self.key)).encode()
        return await self.send("POST", "/api/v1/device/events", body, "application/jose", **over)


async def enroll_device(client, db_path, clock, *, name="cam-1", credential=True, **scope):
    key, body = enrollment(issue_token(db_path, clock, **scope), name=name)
    resp = await client.post("/api/v1/enroll", data=body, headers=JOSE)
    assert resp.status == 201, await resp.text()
    session = DeviceSession(client, key, (await resp.json())["device_id"])
    if credential:
        got = await session.obtain_credential()
        assert got.status == 200, await got.text()
    return session


# ---- shared by the fleet's tests ----------------------------------------------------------------------


def free_port() -> int:
    """A TCP port free on loopback just now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def bearer(token: str) -> dict[str, str]:
    """The Authorization header for an API token."""
    return {"Authorization": f"Bearer {token}"}


def api_headers(client: Any, role: str, name: str = "script") -> dict[str, str]:
    """A new API token with ``role`` on the running test app, as request headers."""
    app = client.server.app
    token = operators.create_api_token(app[DB_KEY].db, name, role, "system", app[CLOCK_KEY]())
    return bearer(token)


def insert_device(db: Any, device_id: str = "dev-1", *, room: str = "3B-12", **columns: Any) -> dict[str, Any]:
    """Insert an enrolled, active device row straight into the ``devices`` table (``db``: a sqlite-utils
    Database or a FleetDB); ``columns`` override or add (ward, site, status, tags, enrolled_at, ...)."""
    table = (db.db if isinstance(db, FleetDB) else db)["devices"]
    row = {
        "id": device_id,
        "name": "cam",
        "room": room,
        "public_key": wire.encode_public_key(wire.generate_key().public_key()),
        "enrolled_at": 0.0,
        "status": "active",
        **columns,
    }
    table.insert(row)
    return row


# ---- the real app, started (alerts, reports, scene) ----------------------------------------------------


async def start_app(aiohttp_client: Any, tmp_path: Any, clock: Any, **config_over: Any) -> Any:
    """The real app from create_app with its database in ``tmp_path`` and cheap password hashing, started
    (without a cookie jar: tests send cookies themselves)."""
    from aiohttp import DummyCookieJar

    from fleet.app import create_app
    from fleet.config import ServerConfig

    config = ServerConfig(database=tmp_path / "fleet.db", password_memory_kib=1024, password_time_cost=1, **config_over)
    return await aiohttp_client(create_app(config, clock=clock), cookie_jar=DummyCookieJar())


async def start_default_app(aiohttp_client: Any, db_path: Any, clock: Any) -> Any:
    """The real app from create_app with the default configuration and its database at ``db_path``, started."""
    from fleet.app import create_app
    from fleet.config import ServerConfig

    return await aiohttp_client(create_app(ServerConfig(database=db_path), clock=clock))


def live_db(client: Any) -> Any:
    """The running test app's database (sqlite-utils)."""
    return client.server.app[DB_KEY].db


def agent_readings(**over: Any) -> Any:
    """What a healthy agent reports of itself (``firmware.heartbeat.AgentReadings``), with ``over`` changed."""
    from firmware.heartbeat import AgentReadings

    fields: dict[str, Any] = dict(
        frames_processed=9000,
        frames_dropped=0,
        fps=14.0,
        stage_ms={"pose": 61.0},
        accelerator="cpu",
        accelerator_configured=None,
        accelerator_temp_c=None,
        models={"movenet-multipose": "1.0"},
        outbox_pending=0,
    )
    fields.update(over)
    return AgentReadings(**fields)


def set_status(
    db_path: Any, device_id: str, status: str, allowed: tuple[str, ...] = ("pending", "active", "quarantined")
) -> None:
    """Set a device's status in the database at ``db_path`` (as an operator's approve / quarantine / revoke does)."""
    db = FleetDB(db_path)
    try:
        assert db.set_status(device_id, status, reason="test", by="test", now=0.0, allowed_from=allowed)
    finally:
        db.close()
