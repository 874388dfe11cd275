"""The device's FleetClient against a real TLS server whose clock the test moves: renewal, expiry, reissue."""

import time

import pytest

from firmware.identity import IdentityStore
from firmware.transport import NotAuthorizedError
from fleet.cli import create_token
from fleet.config import ServerConfig
from fleet.server import BackgroundServer
from fleet.store.db import FleetDB
from tests.fleet.helpers import Clock, event_for
from wardsight import wire
from wardsight.bundle import Bundle

TTL = 300


@pytest.fixture
def fleet(tmp_path):
    clock = Clock(time.time())
    config = ServerConfig(port=0, database=tmp_path / "fleet.db", credential_ttl_seconds=TTL, nonce_ttl_seconds=60)
    server = BackgroundServer(config, app_clock=clock).start()
    yield server, config, clock
    server.stop()


def credential_id(config, device_id):
    db = FleetDB(config.database)
    try:
        return db.get_device(device_id)["credential_id"]
    finally:
        db.close()


def enrolled(tmp_path, server, config, clock, device_clock=time.time):
    store = IdentityStore(tmp_path / "device")
    token = create_token(config, "3B-12", 600, now=clock())
    identity, _ = store.enroll(Bundle(server.url, token, server.ca_pem), "cam-1")
    _, client = store.client(clock=device_clock, timeout=5.0)
    _, key = store.load()
    return identity, client, key


def send(client, identity, key):
    return client.post_event("", wire.sign_event(event_for(identity.device_id), key))


def test_the_client_renews_at_two_thirds_of_the_credential_life_by_the_server_clock(tmp_path, fleet):
    server, config, clock = fleet
    # The device's clock is ten years behind; renewal must follow the server's clock anyway.
    identity, client, key = enrolled(tmp_path, server, config, clock, lambda: time.time() - 10 * 365 * 86400)
    assert send(client, identity, key).status == 201
    first = credential_id(config, identity.device_id)
    clock.now += TTL * 0.5  # not yet due
    assert send(client, identity, key).status == 201
    assert credential_id(config, identity.device_id) == first
    clock.now += TTL * 0.25  # past two thirds: this reply says "renew", and the client does before its next request
    assert send(client, identity, key).status == 201
    assert send(client, identity, key).status == 201
    assert credential_id(config, identity.device_id) != first
    assert (tmp_path / "device" / "credential.json").stat().st_mode & 0o777 == 0o600


def test_an_expired_credential_needs_an_admin_reissue_and_then_recovers(tmp_path, fleet):
    server, config, clock = fleet
    identity, client, key = enrolled(tmp_path, server, config, clock)
    assert send(client, identity, key).status == 201
    clock.now += TTL + 60  # offline past the credential's life
    with pytest.raises(NotAuthorizedError) as lost:
        send(client, identity, key)
    assert lost.value.code in ("credential_expired", "credential_issued")
    with pytest.raises(NotAuthorizedError):  # still refused: the server has not let it back in
        send(client, identity, key)
    db = FleetDB(config.database)
    db.set_credential(identity.device_id, None, None)  # POST /api/v1/devices/{id}/reissue
    db.close()
    assert send(client, identity, key).status == 201


def test_quarantine_refuses_and_release_restores_through_the_client(tmp_path, fleet):
    server, config, clock = fleet
    identity, client, key = enrolled(tmp_path, server, config, clock)
    assert send(client, identity, key).status == 201
    db = FleetDB(config.database)
    assert db.set_status(identity.device_id, "quarantined", reason="t", by="t", now=clock(), allowed_from=("active",))
    with pytest.raises(NotAuthorizedError) as refused:
        send(client, identity, key)
    assert refused.value.code == "quarantined"
    assert db.set_status(identity.device_id, "active", reason="t", by="t", now=clock(), allowed_from=("quarantined",))
    db.close()
    assert send(client, identity, key).status == 201
