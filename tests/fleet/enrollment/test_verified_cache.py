"""Credentials verified once per lifetime (fleet.auth.cache): a cached credential is still judged on every request."""

import pytest

from fleet.app import create_app
from fleet.auth import device as deviceauth
from fleet.auth.cache import Bounded, Verified
from fleet.auth.device_requests import VERIFIED_KEY
from fleet.config import ServerConfig
from tests.fleet.helpers import counts, enroll_device, event_for, set_status
from wardsight import wire

EVENTS = "/api/v1/device/events"
TTL = 3600


@pytest.fixture
async def client(aiohttp_client, db_path, clock):
    config = ServerConfig(database=db_path, credential_ttl_seconds=TTL, nonce_ttl_seconds=60)
    return await aiohttp_client(create_app(config, clock=clock))


@pytest.fixture
def verifications(monkeypatch):
    """How many times a credential's server signature was verified."""
    calls: list[str] = []
    real = deviceauth.read_credential

    def counting(token, server_key):
        calls.append(token)
        return real(token, server_key)

    monkeypatch.setattr(deviceauth, "read_credential", counting)
    return calls


async def cached_device(client, db_path, clock, verifications):
    """An enrolled device whose credential is in the server's cache (verified once, then used without verifying)."""
    device = await enroll_device(client, db_path, clock)
    for _ in range(2):
        resp = await device.post_event()
        assert resp.status == 201, await resp.text()
    assert verifications == [device.credential]  # the second event did not verify it again
    assert client.server.app[VERIFIED_KEY].credentials.get(device.credential, clock.now) is not None
    return device


async def refusal(resp):
    body = await resp.json()
    return resp.status, body.get("code")


async def test_a_cached_credential_is_refused_at_once_after_revocation(client, db_path, clock, verifications):
    device = await cached_device(client, db_path, clock, verifications)
    set_status(db_path, device.device_id, "revoked")
    assert await refusal(await device.post_event()) == (401, "revoked")
    assert counts(db_path) == (1, 2)


async def test_a_cached_credential_is_refused_at_once_after_quarantine(client, db_path, clock, verifications):
    device = await cached_device(client, db_path, clock, verifications)
    set_status(db_path, device.device_id, "quarantined")
    assert await refusal(await device.post_event()) == (403, "quarantined")
    set_status(db_path, device.device_id, "active", allowed=("quarantined",))
    assert (await device.post_event()).status == 201


async def test_a_cached_credential_is_refused_at_once_after_renewal(client, db_path, clock, verifications):
    device = await cached_device(client, db_path, clock, verifications)
    old = device.credential
    assert (await device.renew()).status == 200
    assert await refusal(await device.post_event(credential=old)) == (401, "credential_revoked")
    assert (await device.post_event()).status == 201
    assert verifications[-1] == device.credential


async def test_a_cached_credential_is_refused_once_expired_and_dropped(client, db_path, clock, verifications):
    device = await cached_device(client, db_path, clock, verifications)
    clock.now += TTL
    assert await refusal(await device.post_event()) == (401, "credential_expired")
    assert client.server.app[VERIFIED_KEY].credentials.get(device.credential, clock.now) is None


async def test_a_replayed_proof_is_still_refused_with_a_cached_credential(client, db_path, clock, verifications):
    device = await cached_device(client, db_path, clock, verifications)
    body = wire.sign_event(event_for(device.device_id), device.key).encode()
    proof = device.proof("POST", EVENTS, body)
    assert (await device.send("POST", EVENTS, body, "application/jose", proof=proof)).status == 201
    again = await device.send("POST", EVENTS, body, "application/jose", proof=proof)
    assert await refusal(again) == (401, "replay")
    assert counts(db_path) == (1, 3)


async def test_a_credential_that_does_not_verify_is_never_cached(client, db_path, clock, verifications):
    device = await enroll_device(client, db_path, clock)
    rogue = deviceauth.issue_credential(wire.generate_key(), device.device_id, device.key.public_key(), clock.now, 600)
    for _ in range(2):
        resp = await device.post_event(credential=rogue.token)
        assert resp.status == 401 and "invalid credential" in (await resp.json())["error"]
    assert verifications == [rogue.token, rogue.token]
    assert len(client.server.app[VERIFIED_KEY].credentials) == 0


# ---- the caches themselves ------------------------------------------------------------------------------------


def test_bounded_keeps_the_most_recently_used_until_their_time():
    cache: Bounded[str, int] = Bounded(2)
    cache.put("a", 1, until=100.0)
    cache.put("b", 2, until=100.0)
    assert cache.get("a", 0.0) == 1  # "b" is now the least recently used
    cache.put("c", 3, until=100.0)
    assert (cache.get("a", 0.0), cache.get("b", 0.0), cache.get("c", 0.0)) == (1, None, 3)
    assert cache.get("a", 100.0) is None and len(cache) == 1  # expired: dropped
    with pytest.raises(ValueError, match="at least 1"):
        Bounded(0)


def test_verified_keeps_only_unexpired_credentials_and_decodes_each_device_key_once():
    server = wire.generate_key()
    verified = Verified(server.public_key(), credentials=8)
    device_key = wire.generate_key().public_key()
    token = deviceauth.issue_credential(server, "dev-1", device_key, 1000.0, 60).token
    calls = []

    def verify(tok, key):
        calls.append(tok)
        return deviceauth.read_credential(tok, key)

    assert verified.credential_claims(token, 1000.0, verify)["sub"] == "dev-1"
    assert verified.credential_claims(token, 1059.0, verify)["sub"] == "dev-1"
    assert len(calls) == 1
    assert verified.credential_claims(token, 1060.0, verify)["exp"] == 1060  # verified again, not kept
    assert len(calls) == 2 and len(verified.credentials) == 0
    text = wire.encode_public_key(device_key)
    key, thumbprint = verified.device_key(text)
    assert verified.device_key(text)[0] is key and thumbprint == wire.thumbprint(device_key)
    with pytest.raises(wire.MalformedError):
        verified.device_key(text + "A")
