"""Per-request device authentication against the real fleet app: proofs, nonces, credentials, device states."""

import pytest

from fleet.app import create_app
from fleet.auth import device as deviceauth
from fleet.config import ServerConfig
from fleet.store.db import FleetDB
from tests.fleet.helpers import (
    JOSE,
    DeviceSession,
    counts,
    enroll_device,
    enrollment,
    event_for,
    issue_token,
    set_status,
)
from wardsight import wire

TEN_YEARS = 10 * 365.25 * 24 * 3600
EVENTS = "/api/v1/device/events"


@pytest.fixture
def config(db_path):
    return ServerConfig(database=db_path, credential_ttl_seconds=3600, nonce_ttl_seconds=60)


@pytest.fixture
async def client(aiohttp_client, config, clock):
    return await aiohttp_client(create_app(config, clock=clock))


async def error(resp):
    body = await resp.json()
    return resp.status, body.get("code"), body["error"]


# ---- the happy path and what every response carries ------------------------------------------------


async def test_enrolled_device_obtains_a_credential_and_sends_an_event(client, db_path, clock):
    device = await enroll_device(client, db_path, clock)
    resp = await device.post_event()
    assert resp.status == 201, await resp.text()
    assert wire.NONCE_HEADER in resp.headers and float(resp.headers[wire.TIME_HEADER]) == clock.now
    assert counts(db_path) == (1, 1)


async def test_the_first_credential_is_issued_once(client, db_path, clock):
    device = await enroll_device(client, db_path, clock)
    again = DeviceSession(client, device.key, device.device_id)
    resp = await again.obtain_credential()
    assert (await error(resp))[:2] == (401, "credential_issued")


# ---- replay and binding -------------------------------------------------------------------------------


async def test_a_replayed_request_is_refused(client, db_path, clock):
    device = await enroll_device(client, db_path, clock)
    body = wire.sign_event(event_for(device.device_id), device.key).encode()
    proof = device.proof("POST", EVENTS, body)
    first = await device.send("POST", EVENTS, body, "application/jose", proof=proof)
    assert first.status == 201
    again = await device.send("POST", EVENTS, body, "application/jose", proof=proof)
    assert (await error(again))[:2] == (401, "replay")


async def test_a_proof_is_bound_to_body_path_and_method(client, db_path, clock):
    device = await enroll_device(client, db_path, clock)
    body = wire.sign_event(event_for(device.device_id), device.key).encode()
    other_body = wire.sign_event(event_for(device.device_id), device.key).encode()
    wrong_body = await device.send(
        "POST", EVENTS, other_body, "application/jose", proof=device.proof("POST", EVENTS, body)
    )
    assert wrong_body.status == 401 and "body" in (await error(wrong_body))[2]
    wrong_path = await device.send(
        "POST", EVENTS, body, "application/jose", proof=device.proof("POST", "/api/v1/device/heartbeat", body)
    )
    assert wrong_path.status == 401 and "not POST /api/v1/device/events" in (await error(wrong_path))[2]
    wrong_method = await device.send("POST", EVENTS, body, "application/jose", proof=device.proof("PUT", EVENTS, body))
    assert wrong_method.status == 401
    assert counts(db_path) == (1, 0)


async def test_missing_or_foreign_proofs_and_credentials_are_refused(client, db_path, clock):
    a = await enroll_device(client, db_path, clock, name="cam-a")
    b = await enroll_device(client, db_path, clock, name="cam-b")
    body = wire.sign_event(event_for(a.device_id), a.key).encode()
    no_proof = await client.post(EVENTS, data=body, headers={**JOSE, "Authorization": f"WardSight {a.credential}"})
    assert no_proof.status == 401 and "missing WardSight-Proof" in (await error(no_proof))[2]
    # B's credential presented with A's proof: the credential names another device.
    swapped = await a.send("POST", EVENTS, body, "application/jose", credential=b.credential)
    assert swapped.status == 401 and "another device" in (await error(swapped))[2]
    # A proof that claims to be B but is signed with A's key.
    forged = await a.send("POST", EVENTS, body, "application/jose", kid=b.device_id, credential=b.credential)
    assert forged.status == 401 and "signature" in (await error(forged))[2]
    # A's proof without any credential.
    bare = await a.send("POST", EVENTS, body, "application/jose", credential=None)
    assert bare.status == 401 and "missing credential" in (await error(bare))[2]
    # A credential minted by another server's key.
    rogue = deviceauth.issue_credential(wire.generate_key(), a.device_id, a.key.public_key(), clock.now, 600).token
    foreign = await a.send("POST", EVENTS, body, "application/jose", credential=rogue)
    assert foreign.status == 401 and "invalid credential" in (await error(foreign))[2]
    assert counts(db_path) == (2, 0)


async def test_a_device_reports_only_its_own_health(client, db_path, clock):
    a = await enroll_device(client, db_path, clock, name="cam-a")
    b = await enroll_device(client, db_path, clock, name="cam-b")
    report = wire.Health(device_id=b.device_id, sent_at=clock.now, uptime_s=5, agent_version="0.1.0", accelerator="cpu")
    resp = await a.send("POST", "/api/v1/device/heartbeat", report.model_dump_json().encode(), "application/json")
    assert resp.status == 403


# ---- clocks and nonces ----------------------------------------------------------------------------------


@pytest.mark.parametrize("skew", [TEN_YEARS, -TEN_YEARS])
async def test_a_device_clock_ten_years_off_still_works_and_replay_is_still_refused(client, db_path, clock, skew):
    key, body = enrollment(issue_token(db_path, clock))
    assert (await client.post("/api/v1/enroll", data=body, headers=JOSE)).status == 201
    device_id = FleetDB(db_path).list_devices()[0]["id"]
    device = DeviceSession(client, key, device_id, device_clock=lambda: max(0.0, clock.now + skew))
    assert (await device.obtain_credential()).status == 200
    event = wire.sign_event(event_for(device_id, time=max(0.0, clock.now + skew)), key).encode()
    proof = device.proof("POST", EVENTS, event)
    assert (await device.send("POST", EVENTS, event, "application/jose", proof=proof)).status == 201
    assert (await error(await device.send("POST", EVENTS, event, "application/jose", proof=proof)))[1] == "replay"
    clock.now += 1800  # half the credential's life by the server's clock: still good, whatever the device thinks
    await device.fetch_nonce()
    assert (await device.post_event()).status == 201


async def test_stale_or_forged_nonces_get_a_fresh_one_to_retry_with(client, db_path, clock, config):
    device = await enroll_device(client, db_path, clock)
    clock.now += config.nonce_ttl_seconds + 1
    stale = device.nonce
    resp = await device.post_event(nonce=stale)
    status, code, _ = await error(resp)
    assert (status, code) == (401, "use_nonce") and resp.headers[wire.NONCE_HEADER] != stale
    assert (await device.post_event()).status == 201  # with the nonce from the refusal
    forged = await device.post_event(nonce="AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA")
    assert (await error(forged))[1] == "use_nonce"


def test_nonces_are_checked_by_the_server_clock_only():
    issuer = deviceauth.NonceIssuer(b"k" * 32, ttl=60)
    nonce = issuer.issue(1000.0)
    assert issuer.valid(nonce, 1000.0) and issuer.valid(nonce, 1060.0)
    assert not issuer.valid(nonce, 1060.01)
    assert not issuer.valid(nonce, 1000.0 - deviceauth.FUTURE_SKEW - 0.01)
    assert not deviceauth.NonceIssuer(b"x" * 32, ttl=60).valid(nonce, 1000.0)
    assert not issuer.valid(nonce[:-2] + ("A" if nonce[-2] != "A" else "B") + nonce[-1], 1000.0)
    assert not issuer.valid("not base64 !", 1000.0)


# ---- credentials: renewal, expiry, reissue --------------------------------------------------------------


async def test_renewal_supersedes_the_old_credential(client, db_path, clock):
    device = await enroll_device(client, db_path, clock)
    old = device.credential
    clock.now += 2400
    resp = await device.renew()
    assert resp.status == 200 and device.credential != old
    grant = wire.CredentialGrant.model_validate(await resp.json())
    assert grant.expires_in == 3600 and grant.server_time == clock.now
    assert (await device.post_event()).status == 201
    stale = await device.post_event(credential=old)
    assert (await error(stale))[:2] == (401, "credential_revoked")
    renew_with_old = await device.send("POST", "/api/v1/device/credential", credential=old)
    assert (await error(renew_with_old))[:2] == (401, "credential_revoked")


async def test_an_expired_credential_cannot_be_used_or_renewed_until_an_admin_reissues(client, db_path, clock):
    device = await enroll_device(client, db_path, clock)
    clock.now += 3601
    assert (await error(await device.post_event()))[:2] == (401, "credential_expired")
    assert (await error(await device.renew()))[:2] == (401, "credential_expired")
    db = FleetDB(db_path)
    db.set_credential(device.device_id, None, None)  # what POST /api/v1/devices/{id}/reissue does
    db.close()
    device.credential = None
    assert (await device.obtain_credential()).status == 200
    assert (await device.post_event()).status == 201


# ---- device states ----------------------------------------------------------------------------------------


async def test_revoked_device_fails_at_its_next_request(client, db_path, clock):
    device = await enroll_device(client, db_path, clock)
    assert (await device.post_event()).status == 201
    set_status(db_path, device.device_id, "revoked")
    assert (await error(await device.post_event()))[:2] == (401, "revoked")
    assert (await error(await device.renew()))[:2] == (401, "revoked")
    assert counts(db_path) == (1, 1)


async def test_quarantine_blocks_at_once_and_release_restores(client, db_path, clock):
    device = await enroll_device(client, db_path, clock)
    set_status(db_path, device.device_id, "quarantined")
    assert (await error(await device.post_event()))[:2] == (403, "quarantined")
    set_status(db_path, device.device_id, "active", allowed=("quarantined",))
    assert (await device.post_event()).status == 201


@pytest.mark.parametrize("where", ["token", "server"])
async def test_pending_devices_wait_for_approval(aiohttp_client, db_path, clock, where):
    config = ServerConfig(database=db_path, require_approval=where == "server")
    client = await aiohttp_client(create_app(config, clock=clock))
    key, body = enrollment(issue_token(db_path, clock, require_approval=where == "token"))
    resp = await client.post("/api/v1/enroll", data=body, headers=JOSE)
    answer = wire.EnrollmentResponse.model_validate(await resp.json())
    assert resp.status == 201 and answer.status == "pending"
    device = DeviceSession(client, key, answer.device_id)
    assert (await error(await device.obtain_credential()))[:2] == (403, "pending")
    set_status(db_path, answer.device_id, "active", allowed=("pending",))
    assert (await device.obtain_credential()).status == 200
    assert (await device.post_event()).status == 201


# ---- enrollment scope ---------------------------------------------------------------------------------------


async def test_tokens_are_scoped_to_site_ward_and_room(client, db_path, clock):
    token = issue_token(db_path, clock, room="3B-12", site="st-marys", ward="3B")
    key = wire.generate_key()
    wrong = wire.EnrollmentRequest(
        token=token, public_key=wire.encode_public_key(key.public_key()), name="cam", room="ICU-1"
    )
    resp = await client.post("/api/v1/enroll", data=wire.sign_enrollment(wrong, key), headers=JOSE)
    assert resp.status == 403 and "scoped to room 3B-12" in (await resp.json())["error"]
    assert counts(db_path) == (0, 0)
    right = wire.EnrollmentRequest(
        token=token, public_key=wire.encode_public_key(key.public_key()), name="cam", room="3B-12"
    )
    resp = await client.post("/api/v1/enroll", data=wire.sign_enrollment(right, key), headers=JOSE)
    answer = wire.EnrollmentResponse.model_validate(await resp.json())
    assert (answer.site, answer.ward, answer.room, answer.status) == ("st-marys", "3B", "3B-12", "active")


async def test_a_revoked_token_cannot_enroll(client, db_path, clock):
    token = issue_token(db_path, clock)
    db = FleetDB(db_path)
    assert db.revoke_token(token.split(".")[1], clock.now)
    db.close()
    _, body = enrollment(token)
    resp = await client.post("/api/v1/enroll", data=body, headers=JOSE)
    assert resp.status == 401 and "revoked" in (await resp.json())["error"]
