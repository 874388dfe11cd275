"""Enrollment against the real aiohttp app and a real SQLite file (and the console page the app serves)."""

import base64
import logging

import pytest

from fleet.store.db import FleetDB
from tests.fleet.helpers import JOSE, counts, enroll_device, enrollment, issue_token, start_default_app
from wardsight import wire


@pytest.fixture
async def client(aiohttp_client, db_path, clock):
    return await start_default_app(aiohttp_client, db_path, clock)


async def enroll_ok(client, db_path, clock):
    session = await enroll_device(client, db_path, clock)
    return session.key, session.device_id


async def test_enrollment_happy_path(client, db_path, clock):
    key, device_id = await enroll_ok(client, db_path, clock)
    db = FleetDB(db_path)
    device = db.get_device(device_id)
    token_row = next(db.db["tokens"].rows)
    db.close()
    assert device["room"] == "3B-12" and device["public_key"] == wire.encode_public_key(key.public_key())
    # Only the hash of the secret is stored.
    assert token_row["used_at"] == clock.now and len(token_row["secret_hash"]) == 64


async def test_reused_token_is_refused(client, db_path, clock, caplog):
    token = issue_token(db_path, clock)
    _, first = enrollment(token)
    assert (await client.post("/api/v1/enroll", data=first, headers=JOSE)).status == 201
    _, second = enrollment(token, name="cam-2")
    with caplog.at_level(logging.WARNING, logger="wardsight.fleet"):
        resp = await client.post("/api/v1/enroll", data=second, headers=JOSE)
    assert resp.status == 401
    assert (await resp.json())["error"] == "enrollment token already used"
    assert "already used" in caplog.text
    assert counts(db_path)[0] == 1


async def test_expired_token_is_refused(client, db_path, clock, caplog):
    token = issue_token(db_path, clock, ttl=60)
    clock.now += 61
    _, body = enrollment(token)
    with caplog.at_level(logging.WARNING, logger="wardsight.fleet"):
        resp = await client.post("/api/v1/enroll", data=body, headers=JOSE)
    assert resp.status == 401 and "expired" in (await resp.json())["error"]
    assert "expired" in caplog.text
    assert counts(db_path) == (0, 0)


@pytest.mark.parametrize(
    "mangle",
    [
        lambda t: t[:-4] + "AAAA",  # wrong secret
        lambda t: "wst.000000000000." + t.split(".")[2],  # unknown id
        lambda t: "not-a-token-at-all",
    ],
)
async def test_wrong_token_is_refused(client, db_path, clock, mangle):
    _, body = enrollment(mangle(issue_token(db_path, clock)))
    resp = await client.post("/api/v1/enroll", data=body, headers=JOSE)
    assert resp.status == 401
    assert counts(db_path) == (0, 0)


async def test_enrollment_without_key_possession_is_refused(client, db_path, clock, caplog):
    victim = wire.generate_key()
    _, body = enrollment(issue_token(db_path, clock), public_key=wire.encode_public_key(victim.public_key()))
    with caplog.at_level(logging.WARNING, logger="wardsight.fleet"):
        resp = await client.post("/api/v1/enroll", data=body, headers=JOSE)
    assert resp.status == 401 and "possession" in (await resp.json())["error"]
    assert "possession" in caplog.text
    assert counts(db_path) == (0, 0)


async def test_console_page_is_served_with_a_strict_policy(client):
    resp = await client.get("/")
    assert resp.status == 200
    html = await resp.text()
    assert "WardSight fleet console" in html and 'src="/console.js"' in html
    assert "default-src 'self'" in resp.headers["Content-Security-Policy"]
    assert "<style" not in html and "<script>" not in html  # everything inline would be blocked by the CSP
    js = await client.get("/console.js")
    assert js.status == 200 and "textContent" in await js.text()
    css = await client.get("/console.css")
    assert css.status == 200 and css.content_type == "text/css"


@pytest.mark.parametrize("header", [
    {"alg": "EdDSA", "typ": wire.EVENT_TYP, "kid": 123},
    {"alg": "EdDSA", "typ": wire.EVENT_TYP, "kid": "dev-1", "crit": []},
    {"alg": "none", "typ": wire.EVENT_TYP, "kid": "dev-1"},
])  # fmt: skip
async def test_malformed_headers_are_400_with_security_headers(client, header):
    import base64
    import json

    def b64(obj):
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()

    body = f"{b64(header)}.{b64({'a': 1})}.AAAA"
    for path in ("/api/v1/device/events", "/api/v1/enroll"):
        resp = await client.post(path, data=body, headers={**JOSE, wire.PROOF_HEADER: body})
        assert resp.status in (400, 401), await resp.text()
        assert resp.headers["X-Content-Type-Options"] == "nosniff" and resp.headers["Cache-Control"] == "no-store"


async def test_same_key_cannot_enroll_twice_under_another_spelling(client, db_path, clock):
    key = wire.generate_key()
    canonical = wire.encode_public_key(key.public_key())
    _, body = enrollment(issue_token(db_path, clock), key=key)
    assert (await client.post("/api/v1/enroll", data=body, headers=JOSE)).status == 201
    # The last of the 43 characters carries 2 unused bits: flipping one spells the same 32 bytes differently.
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    alias = canonical[:-1] + alphabet[alphabet.index(canonical[-1]) ^ 1]
    assert base64.urlsafe_b64decode(alias + "=") == base64.urlsafe_b64decode(canonical + "=")
    _, again = enrollment(issue_token(db_path, clock), key=key, public_key=alias)
    resp = await client.post("/api/v1/enroll", data=again, headers=JOSE)
    assert resp.status in (400, 409)
    assert counts(db_path)[0] == 1
