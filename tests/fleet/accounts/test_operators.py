"""Operators, sessions, CSRF, API tokens, the role matrix and the operator CLI, against the real aiohttp
app and a real SQLite file (argon2 with small costs to keep the tests fast)."""

import asyncio
import hashlib
import json
import secrets
from dataclasses import dataclass
from typing import NamedTuple

import argon2
import pytest
from aiohttp import DummyCookieJar
from click.testing import CliRunner

from fleet import intake
from fleet.accounts import service as operators
from fleet.accounts.cli import operators_cli
from fleet.app import create_app
from fleet.audit import log as audit
from fleet.audit.log import cli_actor
from fleet.auth.operator import COOKIE_NAME, CSRF_HEADER, Role, has_role
from fleet.config import ServerConfig, load_server_config
from fleet.enrollment import tokens
from fleet.jobs import store as jobs
from fleet.ota.rollouts import service as rollouts
from fleet.ota.rollouts.bodies import NewRollout
from fleet.store.db import FleetDB
from fleet.web.appkeys import CLOCK_KEY, CONFIG_KEY, DB_KEY
from fleet.webhooks.store import create_endpoint
from tests.fleet.helpers import api_headers, bearer, insert_device
from wardsight import wire
from wardsight.clictx import Context

PASSWORD = "correct horse battery"
NEW_PASSWORD = "staple battery horse"
FAST_HASHING = {"password_memory_kib": 1024, "password_time_cost": 1}


def make_config(tmp_path, **over):
    fields = dict(
        database=tmp_path / "fleet.db",
        session_idle_seconds=600,
        session_max_seconds=3600,
        max_login_failures=3,
        login_lockout_seconds=300,
        **FAST_HASHING,
    )
    fields.update(over)
    return ServerConfig(**fields)


@pytest.fixture
def config(tmp_path):
    return make_config(tmp_path)


async def start(aiohttp_client, config, clock):
    # No cookie jar: every test sends exactly the cookie it means to (and Secure cookies work over http).
    return await aiohttp_client(create_app(config, clock=clock), cookie_jar=DummyCookieJar())


@pytest.fixture
async def client(aiohttp_client, config, clock):
    return await start(aiohttp_client, config, clock)


def live_db(client):
    return client.server.app[DB_KEY].db


def add_user(client, username, role, password=PASSWORD):
    app = client.server.app
    operators.create_operator(live_db(client), username, password, role, app[CLOCK_KEY](), app[CONFIG_KEY])


def add_token(client, role, name="script"):
    return operators.create_api_token(live_db(client), name, role, "system", client.server.app[CLOCK_KEY]())


@dataclass
class Login:
    cookie: str
    csrf: str

    def headers(self, csrf=True):
        headers = {"Cookie": f"{COOKIE_NAME}={self.cookie}"}
        if csrf:
            headers[CSRF_HEADER] = self.csrf
        return headers


async def try_login(client, username, password=PASSWORD):
    return await client.post("/api/v1/session", json={"username": username, "password": password})


async def login(client, username, password=PASSWORD):
    resp = await try_login(client, username, password)
    assert resp.status == 200, await resp.text()
    return Login(resp.cookies[COOKIE_NAME].value, (await resp.json())["csrf_token"])


async def whoami(client, headers):
    return await client.get("/api/v1/session", headers=headers)


def audit_log(client):
    return [(row["actor"], row["action"], row["target"]) for row in reversed(audit.query(live_db(client)))]


def count(client, table):
    return live_db(client)[table].count


# ---- role matrix ----------------------------------------------------------------------------------------


class Route(NamedTuple):
    method: str
    path: str  # may use the placeholders that fresh_objects returns, e.g. {token_id}
    role: Role | None  # the least role allowed; None: anyone, even anonymous
    body: dict | None = None
    ok: int = 200  # the status for a caller with the role
    session_only: bool = False  # an API token with the role gets 403
    ok_type: str = "application/json"  # the content type of a permitted answer


ROOM_3B12 = {"room": "3B-12"}
ROLLOUT_BODY = {
    "model": "movenet",
    "version": "2.0",
    "selector": {"room": "3B-12"},
    "groups": [{"percent": 100}],
    "success_threshold": 1.0,
    "error_threshold": {"count": 0},
    "in_progress_timeout_s": 600,
}


# Add a row per route (and any object it needs to fresh_objects); every caller below is checked against it.
ROLE_MATRIX = [
    Route("POST", "/api/v1/session", None, {"username": "target", "password": PASSWORD}),
    Route("GET", "/api/v1/session", None),  # anyone may ask; anonymous: {"signed_in": false} (see below)
    Route("DELETE", "/api/v1/session", "viewer", session_only=True),
    Route(
        "POST",
        "/api/v1/session/password",
        "viewer",
        {"current_password": PASSWORD, "new_password": NEW_PASSWORD},
        session_only=True,
    ),
    Route("GET", "/api/v1/operators", "admin"),
    Route("POST", "/api/v1/operators", "admin", {"username": "newcomer", "password": PASSWORD, "role": "viewer"}, 201),
    Route("PATCH", "/api/v1/operators/target", "admin", {"role": "operator"}),
    Route("GET", "/api/v1/api-tokens", "admin"),
    Route("POST", "/api/v1/api-tokens", "admin", {"name": "ci", "role": "viewer"}, 201),
    Route("DELETE", "/api/v1/api-tokens/{token_id}", "admin"),
    Route("GET", "/api/v1/audit", "operator"),
    Route("GET", "/api/v1/audit/verify", "admin"),
    # Enrollment and devices (fleet/enrollment, fleet/devices).
    Route("GET", "/api/v1/tokens", "operator"),
    Route("POST", "/api/v1/tokens", "operator", {"room": "3B-12", "ward": "3B"}, 201),
    Route("DELETE", "/api/v1/tokens/{enroll_token_id}", "operator"),
    Route("GET", "/api/v1/devices", "viewer"),
    Route("GET", "/api/v1/devices/{active_id}", "viewer"),
    Route("POST", "/api/v1/devices/{pending_id}/approve", "operator"),
    Route("POST", "/api/v1/devices/{active_id}/quarantine", "operator", {"reason": "camera moved"}),
    Route("POST", "/api/v1/devices/{quarantined_id}/release", "operator"),
    Route("POST", "/api/v1/devices/{active_id}/revoke", "admin"),
    Route("POST", "/api/v1/devices/{active_id}/reissue", "admin"),
    Route("GET", "/api/v1/events", "viewer"),
    # Webhook endpoints (fleet/webhooks/) and metrics (fleet/health/).
    Route("GET", "/api/v1/webhooks", "operator"),
    Route("POST", "/api/v1/webhooks", "admin", {"name": "nurse-call", "url": "https://10.1.2.3/hook"}, 201),
    Route("PATCH", "/api/v1/webhooks/{webhook_id}", "admin", {"enabled": False}),
    Route("DELETE", "/api/v1/webhooks/{webhook_id}", "admin"),
    Route("GET", "/api/v1/webhooks/{webhook_id}/deliveries", "operator"),
    Route("POST", "/api/v1/webhooks/deliveries/{dead_delivery_id}/redeliver", "admin"),
    Route("GET", "/api/v1/webhooks/public-key", "operator"),
    Route("GET", "/metrics", "viewer", ok_type="text/plain"),
    # Rollouts (fleet/ota/rollouts/).
    Route("POST", "/api/v1/rollouts", "operator", ROLLOUT_BODY, 400),  # nothing published: refused after the role
    Route("GET", "/api/v1/rollouts", "viewer"),
    Route("GET", "/api/v1/rollouts/{rollout_id}", "viewer"),
    Route("POST", "/api/v1/rollouts/{rollout_id}/pause", "operator", {"reason": "matrix"}),
    Route("POST", "/api/v1/rollouts/{paused_rollout_id}/resume", "operator"),
    Route("POST", "/api/v1/rollouts/{rollout_id}/abort", "operator"),
    Route("POST", "/api/v1/rollouts/{rollout_id}/rollback", "operator"),
    # The OTA repository and model library (fleet/ota/): bodies are refused after the role check.
    Route("GET", "/api/v1/ota/status", "viewer"),
    Route("GET", "/api/v1/models", "viewer"),
    Route("POST", "/api/v1/models", "operator", {"not": "a package"}, 415),
    Route("POST", "/api/v1/ota/root", "admin", {"root": {}}, 400),
    Route("POST", "/api/v1/ota/targets", "admin", {}, 400),
    # Alerts, reports and the scene preview (fleet/alerts/, fleet/reports/, fleet/scene/).
    Route("GET", "/api/v1/alerts", "viewer"),
    Route("GET", "/api/v1/alerts/stream", "viewer", ok_type="text/event-stream"),
    Route("POST", "/api/v1/alerts/{alert_id}/acknowledge", "operator", {"note": "on my way"}),
    Route("POST", "/api/v1/alerts/{alert_id}/resolve", "operator"),
    Route("GET", "/api/v1/rooms/3B-12/alerts", "viewer"),
    Route("GET", "/api/v1/reports/hygiene", "viewer"),
    Route("GET", "/api/v1/reports/occupancy?group=shift", "viewer"),
    Route("GET", "/api/v1/reports/falls?format=csv", "viewer", ok_type="text/csv"),
    Route("GET", "/api/v1/devices/{active_id}/scene", "operator"),
    # Maintenance jobs (fleet/jobs/): reboot, rotate_key and factory_reset need an admin.
    Route("GET", "/api/v1/jobs", "viewer"),
    Route(
        "POST", "/api/v1/jobs", "operator", {"kind": "self_test", "target": {"room": "3B-12"}, "expires_in_s": 600}, 201
    ),
    Route("POST", "/api/v1/jobs", "admin", {"kind": "reboot", "target": {"room": "3B-12"}, "expires_in_s": 600}, 201),
    Route("GET", "/api/v1/jobs/{job_batch_id}", "viewer"),
    Route("POST", "/api/v1/jobs/{job_batch_id}/cancel", "operator"),
    Route("GET", "/api/v1/jobs/{job_batch_id}/devices/{active_id}/output", "operator"),
    # The console's helper routes (fleet/console/).
    Route("GET", "/api/v1/fleet/overview", "viewer"),
    Route("GET", "/api/v1/devices/{active_id}/health", "viewer"),
    Route("GET", "/api/v1/devices/{active_id}/config", "operator"),
    # fleet/commissioning/
    Route("GET", "/api/v1/devices/{active_id}/commissioning", "viewer"),
    Route("POST", "/api/v1/devices/{active_id}/commissioning/test-alert", "operator", {}, ok=201),
    Route("POST", "/api/v1/console/qr", "operator", {"text": "wst.abc.def"}, ok_type="image/svg+xml"),
    Route("GET", "/api/v1/console/bundle-ca", "operator"),
]
CALLERS = ["anonymous", "viewer", "operator", "admin", "token:viewer", "token:operator", "token:admin"]


def fresh_objects(client):
    """Objects a row may act on, made anew for each row (a row cannot spoil the next one's)."""
    db, now = live_db(client), client.server.app[CLOCK_KEY]()
    plaintext, record = tokens.new_token("3B-12", now, 600)
    client.server.app[DB_KEY].add_token(record)
    devices = {}
    for status in ("pending", "active", "quarantined"):
        device_id = "dev-" + secrets.token_hex(8)
        insert_device(db, device_id, room="3B-12", enrolled_at=now, status=status)
        devices[f"{status}_id"] = device_id
    endpoint, _ = create_endpoint(
        db, name="matrix", url="https://10.9.8.7/hook", format="standard", apps=[], min_severity="info",
        with_hmac=False, created_by="test", now=now, allow_insecure=False,
    )  # fmt: skip
    event = wire.Event(event_id=wire.new_event_id(), device_id=devices["active_id"], room="3B-12", app="fall",
                       type="fall", severity="critical", time=now)  # fmt: skip
    intake.store(client.server.app[DB_KEY], event, now)
    db.execute("UPDATE webhook_deliveries SET status = 'dead' WHERE event_id = ?", [event.event_id])
    dead = next(db.query("SELECT id FROM webhook_deliveries WHERE event_id = ?", [event.event_id]))["id"]
    new_rollout = NewRollout.model_validate(ROLLOUT_BODY)
    rollout_id = rollouts.create_rollout(db, new_rollout, actor="test", now=now)["id"]
    paused_id = rollouts.create_rollout(db, new_rollout, actor="test", now=now)["id"]
    rollouts.apply_command(db, paused_id, "pause", actor="test", now=now)
    batch = jobs.create_batch(
        db, kind="collect_diagnostics", device_ids=[devices["active_id"]], created_by="test", now=now, expires_in_s=600
    )
    return {
        "job_batch_id": batch,
        "alert_id": event.event_id,
        "rollout_id": rollout_id,
        "paused_rollout_id": paused_id,
        "token_id": add_token(client, "viewer", "to-revoke").split(".")[1],
        "enroll_token_id": record.id,
        "webhook_id": endpoint["id"],
        "dead_delivery_id": dead,
        **devices,
    }


async def credentials(client, caller, row):
    """A fresh account (or API token) with the caller's role for each row, logged in."""
    if caller == "anonymous":
        return {}
    role = caller.removeprefix("token:")
    if caller.startswith("token:"):
        return api_headers(client, role)
    username = f"{role}-{row}"
    add_user(client, username, role)
    return (await login(client, username)).headers()


def expected_status(route, caller):
    if route.role is None:
        return route.ok
    if caller == "anonymous":
        return 401
    via_token = caller.startswith("token:")
    role = caller.removeprefix("token:")
    if not has_role(role, route.role) or (via_token and route.session_only):
        return 403
    return route.ok


@pytest.mark.parametrize("caller", CALLERS)
async def test_role_matrix(client, caller):
    add_user(client, "target", "viewer")
    wrong = []
    for row, route in enumerate(ROLE_MATRIX):
        path = route.path.format(**fresh_objects(client))
        headers = await credentials(client, caller, row)
        resp = await client.request(route.method, path, json=route.body, headers=headers)
        expected = expected_status(route, caller)
        content_type = route.ok_type if resp.status == route.ok else "application/json"
        if resp.status != expected or resp.content_type != content_type:
            wrong.append(f"{route.method} {path}: {resp.status} {await resp.text()} (expected {expected})")
    assert not wrong, "\n".join(wrong)


# ---- login, cookies, lockout --------------------------------------------------------------------------


async def test_login_sets_a_strict_cookie_and_stores_only_hashes(client, clock):
    add_user(client, "alice", "admin")
    resp = await try_login(client, "alice")
    assert resp.status == 200
    body = await resp.json()
    assert body["username"] == "alice" and body["role"] == "admin" and len(body["csrf_token"]) >= 32
    cookie = resp.cookies[COOKIE_NAME]
    assert cookie["secure"] and cookie["httponly"] and cookie["samesite"] == "Strict" and cookie["path"] == "/"
    assert len(cookie.value) >= 43  # 256 bits, base64url
    rows = list(live_db(client).query("SELECT * FROM sessions"))
    assert [row["id_hash"] for row in rows] == [hashlib.sha256(cookie.value.encode()).hexdigest()]
    assert cookie.value not in json.dumps(rows)
    stored = next(live_db(client).query("SELECT password_hash FROM operators"))["password_hash"]
    assert stored.startswith("$argon2id$") and "m=1024,t=1" in stored and PASSWORD not in stored
    me = await whoami(client, {"Cookie": f"{COOKIE_NAME}={cookie.value}"})
    assert await me.json() == {
        "signed_in": True,
        "actor": "user:alice",
        "username": "alice",
        "role": "admin",
        "via": "session",
        "csrf_token": body["csrf_token"],
    }
    entry = audit.query(live_db(client), action="login.success")[0]
    assert entry["actor"] == "user:alice" and entry["time"] == clock.now


async def test_cookie_is_not_secure_only_with_insecure_http(aiohttp_client, tmp_path, clock):
    client = await start(aiohttp_client, make_config(tmp_path, insecure_http=True), clock)
    add_user(client, "alice", "viewer")
    resp = await try_login(client, "alice")
    cookie = resp.cookies[COOKIE_NAME]
    assert resp.status == 200 and not cookie["secure"] and cookie["httponly"] and cookie["samesite"] == "Strict"


@pytest.fixture
def verify_calls(monkeypatch):
    calls = []
    original = argon2.PasswordHasher.verify

    def counting(self, hash, password):
        calls.append(hash)
        return original(self, hash, password)

    monkeypatch.setattr(argon2.PasswordHasher, "verify", counting)
    return calls


async def test_wrong_password_and_unknown_user_look_the_same_and_both_spend_a_hash(client, verify_calls):
    add_user(client, "alice", "admin")
    wrong = await try_login(client, "alice", "not the password")
    unknown = await try_login(client, "nobody", "not the password")
    assert wrong.status == unknown.status == 401
    assert await wrong.json() == await unknown.json() == {"error": "invalid username or password"}
    assert len(verify_calls) == 2 and all(h.startswith("$argon2id$") for h in verify_calls)
    assert COOKIE_NAME not in wrong.cookies and count(client, "sessions") == 0
    failures = audit.query(live_db(client), action="login.failure")
    assert [(e["actor"], e["details"]["reason"]) for e in failures] == [
        ("user:nobody", "unknown user"),
        ("user:alice", "wrong password"),
    ]
    assert "not the password" not in json.dumps(audit.query(live_db(client)))


async def test_throttling_refuses_even_the_right_password_until_the_wait_is_over(client, clock):
    add_user(client, "alice", "admin")
    for _ in range(3):
        assert (await try_login(client, "alice", "guess guess guess")).status == 401
    locked = await try_login(client, "alice")
    assert locked.status == 429 and locked.headers["Retry-After"] == "1"
    assert (await try_login(client, "ALICE")).status == 429  # usernames are case-insensitive
    clock.now += 1
    for wait in (2, 4, 8):  # each further failure from here doubles the wait
        assert (await try_login(client, "alice", "guess guess guess")).status == 401
        locked = await try_login(client, "alice")
        assert locked.status == 429 and locked.headers["Retry-After"] == str(wait)
        clock.now += wait - 0.5
        assert (await try_login(client, "alice")).status == 429
        clock.now += 0.5
    assert (await try_login(client, "alice")).status == 200
    locks = audit.query(live_db(client), action="login.locked")
    assert [(e["actor"], e["target"], e["details"]["account"], e["details"]["address"]) for e in locks] == [
        ("system", "user:alice", "alice", "127.0.0.1")
    ] * 4
    # The success cleared the count: two more failures do not throttle.
    for _ in range(2):
        assert (await try_login(client, "alice", "guess guess guess")).status == 401
    assert (await try_login(client, "alice")).status == 200


async def test_unknown_usernames_lock_out_like_real_ones(client):
    for _ in range(3):
        assert (await try_login(client, "ghost", "guess guess guess")).status == 401
    assert (await try_login(client, "ghost", "guess guess guess")).status == 429


async def test_failures_older_than_the_window_are_forgotten(client, clock):
    add_user(client, "alice", "admin")
    for _ in range(2):
        assert (await try_login(client, "alice", "guess guess guess")).status == 401
    clock.now += 301
    for _ in range(2):
        assert (await try_login(client, "alice", "guess guess guess")).status == 401
    assert (await try_login(client, "alice")).status == 200


async def test_parallel_guesses_cannot_exceed_the_limit(client, verify_calls):
    add_user(client, "alice", "admin")
    statuses = await asyncio.gather(*(try_login(client, "alice", f"guess number {i}") for i in range(10)))
    assert sorted(r.status for r in statuses) == [401] * 3 + [429] * 7
    assert len(verify_calls) == 3


async def test_rehash_on_login_when_the_cost_changes(aiohttp_client, tmp_path, clock):
    db = FleetDB(tmp_path / "fleet.db")
    operators.create_operator(db.db, "alice", PASSWORD, "admin", clock(), make_config(tmp_path))
    db.close()
    client = await start(aiohttp_client, make_config(tmp_path, password_memory_kib=2048), clock)
    await login(client, "alice")
    stored = next(live_db(client).query("SELECT password_hash FROM operators"))["password_hash"]
    assert "m=2048,t=1" in stored
    assert audit.query(live_db(client), action="login.success")[0]["details"]["rehashed"] is True
    await login(client, "alice")  # the new hash verifies


# ---- sessions -----------------------------------------------------------------------------------------


async def test_session_idle_expiry(client, clock):
    add_user(client, "alice", "viewer")
    session = await login(client, "alice")
    for _ in range(3):
        clock.now += 599  # each request restarts the idle timer
        assert (await whoami(client, session.headers())).status == 200
    clock.now += 600
    resp = await whoami(client, session.headers())
    assert resp.status == 401 and "expired" in (await resp.json())["error"]
    assert count(client, "sessions") == 0


async def test_session_absolute_expiry(client, clock):
    add_user(client, "alice", "viewer")
    session = await login(client, "alice")
    for _ in range(6):
        clock.now += 590
        assert (await whoami(client, session.headers())).status == 200
    clock.now += 60  # 3600 s after login, although active a minute ago
    assert (await whoami(client, session.headers())).status == 401


async def test_asking_who_one_is_without_a_credential_is_not_a_refusal(client, caplog):
    """The console asks on every load whether it is signed in: no credential is a plain answer, not a 401 and not a
    warning in the server's log. Every other route still refuses it (401, logged), and so does the session route
    for a credential that is refused."""
    with caplog.at_level("WARNING", logger="wardsight.fleet"):
        resp = await client.get("/api/v1/session")
        assert resp.status == 200 and await resp.json() == {"signed_in": False}
        assert not [r for r in caplog.records if "/api/v1/session" in r.getMessage()]
        for headers in ({"Cookie": f"{COOKIE_NAME}=not-a-session"}, {"Authorization": "Bearer x"}):
            assert (await whoami(client, headers)).status == 401, headers
        assert (await client.get("/api/v1/devices")).status == 401
    refusals = [r.getMessage() for r in caplog.records if "rejected (401)" in r.getMessage()]
    assert len(refusals) == 3 and any(m.startswith("GET /api/v1/devices ") for m in refusals), refusals


async def test_logout_ends_the_session_on_the_server(client):
    add_user(client, "alice", "viewer")
    session = await login(client, "alice")
    assert (await client.delete("/api/v1/session", headers=session.headers(csrf=False))).status == 403
    assert (await whoami(client, session.headers())).status == 200
    resp = await client.delete("/api/v1/session", headers=session.headers())
    assert resp.status == 200 and resp.cookies[COOKIE_NAME].value == ""
    assert resp.cookies[COOKIE_NAME]["max-age"] == "0"
    assert (await whoami(client, session.headers())).status == 401  # a kept copy of the cookie is useless
    assert ("user:alice", "logout", "user:alice") in audit_log(client)


async def test_csrf_is_required_with_a_session_and_not_with_a_token(client):
    add_user(client, "alice", "admin")
    session, other = await login(client, "alice"), await login(client, "alice")
    body = {"username": "bob", "password": PASSWORD, "role": "viewer"}
    cookie_only = session.headers(csrf=False)
    for headers in (cookie_only, {**cookie_only, CSRF_HEADER: "x" * 43}, {**cookie_only, CSRF_HEADER: other.csrf}):
        resp = await client.post("/api/v1/operators", json=body, headers=headers)
        assert resp.status == 403 and CSRF_HEADER in (await resp.json())["error"]
    assert count(client, "operators") == 1
    assert (await client.get("/api/v1/operators", headers=cookie_only)).status == 200  # safe method
    assert (await client.post("/api/v1/operators", json=body, headers=session.headers())).status == 201
    token = add_token(client, "admin")
    resp = await client.post("/api/v1/api-tokens", json={"name": "ci", "role": "viewer"}, headers=bearer(token))
    assert resp.status == 201


# ---- API tokens ---------------------------------------------------------------------------------------


async def test_api_tokens_are_shown_once_stored_hashed_and_revoked_at_once(client, clock):
    add_user(client, "alice", "admin")
    admin = await login(client, "alice")
    resp = await client.post(
        "/api/v1/api-tokens", json={"name": "nightly", "role": "operator"}, headers=admin.headers()
    )
    assert resp.status == 201
    created = await resp.json()
    token = created["token"]
    prefix, token_id, secret = token.split(".")
    assert prefix == "wsa" and token_id == created["id"] and len(secret) == 32  # 192 bits
    row = next(live_db(client).query("SELECT * FROM api_tokens WHERE id = ?", [token_id]))
    assert row["secret_hash"] == hashlib.sha256(secret.encode()).hexdigest() and secret not in json.dumps(row)
    listing = await client.get("/api/v1/api-tokens", headers=admin.headers())
    assert secret not in await listing.text() and "secret_hash" not in await listing.text()
    me = await (await whoami(client, bearer(token))).json()
    assert me == {"signed_in": True, "actor": f"apitoken:{token_id}", "username": None, "role": "operator",
                  "via": "token"}  # fmt: skip
    assert (await client.get("/api/v1/audit", headers=bearer(token))).status == 200
    revoked = await client.delete(f"/api/v1/api-tokens/{token_id}", headers=admin.headers())
    assert revoked.status == 200
    resp = await client.get("/api/v1/audit", headers=bearer(token))
    assert resp.status == 401 and "revoked" in (await resp.json())["error"]
    again = await client.delete(f"/api/v1/api-tokens/{token_id}", headers=admin.headers())
    assert again.status == 409
    assert (await client.delete("/api/v1/api-tokens/nope", headers=admin.headers())).status == 404
    log = audit_log(client)
    assert ("user:alice", "apitoken.create", f"apitoken:{token_id}") in log
    assert ("user:alice", "apitoken.revoke", f"apitoken:{token_id}") in log
    assert secret not in json.dumps(audit.query(live_db(client)))


async def test_expired_and_malformed_tokens_are_refused(client, clock):
    add_user(client, "alice", "admin")
    admin = await login(client, "alice")
    body = {"name": "short", "role": "viewer", "expires_in_seconds": 60}
    token = (await (await client.post("/api/v1/api-tokens", json=body, headers=admin.headers())).json())["token"]
    assert (await whoami(client, bearer(token))).status == 200
    clock.now += 60
    resp = await whoami(client, bearer(token))
    assert resp.status == 401 and "expired" in (await resp.json())["error"]
    valid = add_token(client, "admin")
    prefix, token_id, secret = valid.split(".")
    for header in (
        "Bearer",
        "Basic YWxpY2U6cGFzc3dvcmQ=",
        f"Bearer {prefix}.{token_id}.{secret[:-2]}AA",  # wrong secret
        f"Bearer {prefix}.0000000000000000.{secret}",  # unknown id
        f"Bearer wst.{token_id}.{secret}",
        "Bearer a.b",
    ):
        assert (await whoami(client, {"Authorization": header})).status == 401, header
    # A bad Authorization header is not rescued by a valid session cookie.
    assert (await whoami(client, {**admin.headers(), "Authorization": "Bearer x"})).status == 401


# ---- operator changes ---------------------------------------------------------------------------------


async def test_disabled_user_is_refused_at_once_and_can_be_enabled_again(client):
    add_user(client, "alice", "admin")
    add_user(client, "bob", "operator")
    admin, bob = await login(client, "alice"), await login(client, "bob")
    bob_token = operators.create_api_token(live_db(client), "bobs", "viewer", "user:bob", 1.0)
    resp = await client.patch("/api/v1/operators/bob", json={"disabled": True}, headers=admin.headers())
    assert resp.status == 200 and (await resp.json())["disabled"] is True
    assert (await whoami(client, bob.headers())).status == 401
    assert (await try_login(client, "bob")).status == 401
    assert (await whoami(client, bearer(bob_token))).status == 200  # API tokens are revoked on their own
    assert audit.query(live_db(client), action="operator.update")[0]["details"] == {"disabled": True}
    resp = await client.patch("/api/v1/operators/bob", json={"disabled": False}, headers=admin.headers())
    assert resp.status == 200
    await login(client, "bob")


async def test_role_change_applies_to_the_next_request(client):
    add_user(client, "alice", "admin")
    add_user(client, "bob", "viewer")
    admin, bob = await login(client, "alice"), await login(client, "bob")
    assert (await client.get("/api/v1/audit", headers=bob.headers())).status == 403
    resp = await client.patch("/api/v1/operators/bob", json={"role": "operator"}, headers=admin.headers())
    assert resp.status == 200
    assert (await client.get("/api/v1/audit", headers=bob.headers())).status == 200
    details = audit.query(live_db(client), action="operator.update")[0]["details"]
    assert details == {"role": {"from": "viewer", "to": "operator"}}


async def test_the_last_enabled_admin_cannot_be_removed(client):
    add_user(client, "alice", "admin")
    alice = await login(client, "alice")
    for change in ({"role": "operator"}, {"disabled": True}):
        resp = await client.patch("/api/v1/operators/alice", json=change, headers=alice.headers())
        assert resp.status == 409 and "last enabled admin" in (await resp.json())["error"]
    add_user(client, "carol", "admin")
    resp = await client.patch("/api/v1/operators/carol", json={"disabled": True}, headers=alice.headers())
    assert resp.status == 200
    resp = await client.patch("/api/v1/operators/alice", json={"role": "viewer"}, headers=alice.headers())
    assert resp.status == 409  # carol is disabled, so alice is still the last enabled admin
    for change, status in (({}, 400), ({"role": "operator"}, 404)):
        resp = await client.patch("/api/v1/operators/nobody", json=change, headers=alice.headers())
        assert resp.status == status
    resp = await client.post(
        "/api/v1/operators", json={"username": "carol", "password": PASSWORD, "role": "viewer"}, headers=alice.headers()
    )
    assert resp.status == 409
    listing = await (await client.get("/api/v1/operators", headers=alice.headers())).json()
    assert [(o["username"], o["role"], o["disabled"]) for o in listing["operators"]] == [
        ("alice", "admin", False),
        ("carol", "admin", True),
    ]
    assert "password_hash" not in json.dumps(listing)


async def test_own_password_change_ends_the_other_sessions(client):
    add_user(client, "alice", "operator")
    here, elsewhere = await login(client, "alice"), await login(client, "alice")
    url = "/api/v1/session/password"
    cases = [
        ({"current_password": "wrong wrong wrong", "new_password": NEW_PASSWORD}, 403),
        ({"current_password": PASSWORD, "new_password": "short"}, 400),
        ({"current_password": PASSWORD, "new_password": PASSWORD}, 400),
    ]
    for body, status in cases:
        assert (await client.post(url, json=body, headers=here.headers())).status == status
    body = {"current_password": PASSWORD, "new_password": NEW_PASSWORD}
    assert (await client.post(url, json=body, headers=here.headers())).status == 200
    assert (await whoami(client, here.headers())).status == 200
    assert (await whoami(client, elsewhere.headers())).status == 401
    assert (await try_login(client, "alice")).status == 401
    await login(client, "alice", NEW_PASSWORD)
    log = audit_log(client)
    assert ("user:alice", "password.change", "user:alice") in log
    assert ("user:alice", "password.change_failure", "user:alice") in log
    assert NEW_PASSWORD not in json.dumps(audit.query(live_db(client)))


async def test_admin_password_reset_ends_the_users_sessions(client):
    add_user(client, "alice", "admin")
    add_user(client, "bob", "viewer")
    admin, bob = await login(client, "alice"), await login(client, "bob")
    resp = await client.patch("/api/v1/operators/bob", json={"password": NEW_PASSWORD}, headers=admin.headers())
    assert resp.status == 200
    assert (await whoami(client, bob.headers())).status == 401
    await login(client, "bob", NEW_PASSWORD)
    assert audit.query(live_db(client), action="operator.update")[0]["details"] == {"password_reset": True}


# ---- bad input ----------------------------------------------------------------------------------------

GOOD = {"username": "newcomer", "password": PASSWORD, "role": "viewer"}
JSON = "application/json"
BAD_BODIES = [
    # body, content type, status, words in the error
    (b'{"username": "newcomer"', JSON, 400, "not valid JSON"),
    (b"", JSON, 400, "not valid JSON"),
    (b"\xff\xfe{}", JSON, 400, "not valid JSON"),
    (b"[" * 5000 + b"]" * 5000, JSON, 400, "not valid JSON"),
    (b"[1, 2]", JSON, 400, "JSON object"),
    (json.dumps(GOOD).encode(), "text/plain", 415, "application/json"),
    (json.dumps(GOOD).encode(), "application/x-www-form-urlencoded", 415, "application/json"),
    (json.dumps({**GOOD, "admin": True}).encode(), JSON, 400, "unknown field 'admin'"),
    (json.dumps({"username": "newcomer", "password": PASSWORD}).encode(), JSON, 400, "missing field 'role'"),
    (json.dumps({**GOOD, "role": "root"}).encode(), JSON, 400, "invalid value for 'role'"),
    (json.dumps({**GOOD, "password": "too short"}).encode(), JSON, 400, "at least 12"),
    (json.dumps({**GOOD, "password": 123456789012345}).encode(), JSON, 400, "invalid value for 'password'"),
    (json.dumps({**GOOD, "username": "Not Valid"}).encode(), JSON, 400, "invalid value for 'username'"),
    (json.dumps({**GOOD, "pad": "x" * 100_000}).encode(), JSON, 413, "too large"),
]


@pytest.mark.parametrize("body, content_type, status, words", BAD_BODIES)
async def test_bad_input_is_4xx_and_stores_nothing(client, body, content_type, status, words):
    add_user(client, "alice", "admin")
    admin = await login(client, "alice")
    before = count(client, "audit"), count(client, "operators")
    resp = await client.post("/api/v1/operators", data=body, headers={**admin.headers(), "Content-Type": content_type})
    assert resp.status == status
    error = (await resp.json())["error"]
    assert words in error and PASSWORD not in error and "too short" not in error
    assert (count(client, "audit"), count(client, "operators")) == before


LOGIN = {"username": "alice", "password": PASSWORD}
BAD_LOGINS = [
    (b'{"username": "alice", ', JSON, 400),
    (json.dumps(LOGIN).encode(), "text/plain", 415),
    (json.dumps({**LOGIN, "remember": True}).encode(), JSON, 400),
    (json.dumps({"username": "alice"}).encode(), JSON, 400),
    (json.dumps({**LOGIN, "username": "a" * 65}).encode(), JSON, 400),
    (json.dumps({**LOGIN, "pad": "x" * 100_000}).encode(), JSON, 413),
]


@pytest.mark.parametrize("body, content_type, status", BAD_LOGINS)
async def test_bad_login_input_is_4xx_and_counts_nothing(client, body, content_type, status):
    add_user(client, "alice", "admin")
    before = count(client, "audit")
    resp = await client.post("/api/v1/session", data=body, headers={"Content-Type": content_type})
    assert resp.status == status and COOKIE_NAME not in resp.cookies
    assert PASSWORD not in await resp.text()
    assert (count(client, "sessions"), count(client, "login_failures"), count(client, "audit")) == (0, 0, before)


# ---- audit routes -------------------------------------------------------------------------------------


async def test_audit_route_filters_pages_and_verifies(client, clock):
    add_user(client, "alice", "admin")
    admin = await login(client, "alice")
    for name in ("bob", "carol", "dave"):
        clock.now += 10
        body = {"username": name, "password": PASSWORD, "role": "viewer"}
        assert (await client.post("/api/v1/operators", json=body, headers=admin.headers())).status == 201

    async def entries(query):
        resp = await client.get(f"/api/v1/audit?{query}", headers=admin.headers())
        assert resp.status == 200, await resp.text()
        return await resp.json()

    created = await entries("action=operator.create&actor=user:alice")
    assert [e["target"] for e in created["entries"]] == ["user:dave", "user:carol", "user:bob"]
    assert created["next_before"] is None
    page = await entries("action=operator.create&limit=2")
    assert [e["target"] for e in page["entries"]] == ["user:dave", "user:carol"]
    rest = await entries(f"action=operator.create&limit=2&before={page['next_before']}")
    assert [e["target"] for e in rest["entries"]] == ["user:bob", "user:alice"]
    assert [e["target"] for e in (await entries("q=CAROL"))["entries"]] == ["user:carol"]
    window = await entries(f"since={clock.now - 10}&until={clock.now}&action=operator.create")
    assert [e["target"] for e in window["entries"]] == ["user:carol"]
    assert [e["target"] for e in (await entries("target=user:dave"))["entries"]] == ["user:dave"]
    for query in ("limit=abc", "limit=0", "limit=501", "since=nan", "before=1.5", "colour=red"):
        assert (await client.get(f"/api/v1/audit?{query}", headers=admin.headers())).status == 400, query
    verified = await (await client.get("/api/v1/audit/verify", headers=admin.headers())).json()
    assert verified["ok"] is True and verified["checked"] == count(client, "audit") and verified["head_hash"]


# ---- CLI ----------------------------------------------------------------------------------------------


def all_commands(group, prefix=()):
    for name, command in group.commands.items():
        yield (*prefix, name), command
        if hasattr(command, "commands"):
            yield from all_commands(command, (*prefix, name))


@pytest.mark.parametrize("path", [(), *(p for p, _ in all_commands(operators_cli))], ids=" ".join)
def test_every_operator_command_has_help_with_an_example(path):
    result = CliRunner().invoke(operators_cli, [*path, "--help"])
    assert result.exit_code == 0
    assert "Example:" in result.output and "wardsight fleet operator" in result.output.split("Example:")[1]


ENV = {f"WARDSIGHT_SERVER_{key.upper()}": str(value) for key, value in FAST_HASHING.items()}


def cli(tmp_path, *args, input=None):
    return CliRunner().invoke(operators_cli, list(args), obj=Context(tmp_path / "data", ENV), input=input)


def one_line_error(result, words):
    assert result.exit_code == 1, result.output
    assert words in result.output and "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1


async def test_cli_manages_operators_and_tokens_that_the_server_honours(aiohttp_client, tmp_path, clock):
    assert cli(tmp_path, "add", "alice", "--role", "admin", "--password-stdin", input=PASSWORD + "\n").exit_code == 0
    prompted = cli(tmp_path, "add", "bob", "--role", "viewer", input=f"{PASSWORD}\n{PASSWORD}\n")
    assert prompted.exit_code == 0, prompted.output
    assert PASSWORD not in prompted.output
    one_line_error(cli(tmp_path, "add", "alice", "--role", "viewer", "--password-stdin", input=PASSWORD), "exists")
    one_line_error(cli(tmp_path, "add", "carol", "--role", "viewer", "--password-stdin", input="short\n"), "at least")
    one_line_error(cli(tmp_path, "add", "Not Valid", "--role", "viewer", "--password-stdin", input=PASSWORD), "user")
    one_line_error(cli(tmp_path, "disable", "alice"), "last enabled admin")
    one_line_error(cli(tmp_path, "set-role", "nobody", "--role", "admin"), "no operator 'nobody'")
    assert cli(tmp_path, "set-role", "bob", "--role", "operator").exit_code == 0
    listed = cli(tmp_path, "list")
    assert [json.loads(line)["role"] for line in listed.output.splitlines()] == ["admin", "operator"]
    assert "argon2" not in listed.output
    made = cli(tmp_path, "api-token", "create", "--name", "nightly report", "--role", "viewer")
    assert made.exit_code == 0
    token = made.output.strip()
    assert token.startswith("wsa.")
    assert cli(tmp_path, "disable", "bob").exit_code == 0

    config = load_server_config(tmp_path / "data", None, ENV)
    client = await start(aiohttp_client, config, clock)
    me = await (await whoami(client, bearer(token))).json()
    assert me["role"] == "viewer" and me["via"] == "token"
    assert (await try_login(client, "bob")).status == 401  # disabled
    await login(client, "alice")
    actor = cli_actor()
    log = audit_log(client)
    assert (actor, "operator.create", "user:alice") in log and (actor, "operator.update", "user:bob") in log
    assert any(entry[:2] == (actor, "apitoken.create") for entry in log)
    assert audit.verify(live_db(client)).ok
