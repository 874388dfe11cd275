"""One commit per device request: the proof's id, the sign of life and the event (or heartbeat) are committed together,
before the reply; a request refused after authentication still spends its proof."""

import asyncio
import sqlite3

import pytest

from fleet import intake
from fleet.app import create_app
from fleet.auth import device_requests
from fleet.config import ServerConfig
from fleet.store.schema import transaction, undo_on_error
from fleet.web.appkeys import DB_KEY
from fleet.web.errors import RejectedError
from tests.fleet.helpers import counts, enroll_device, event_for
from wardsight import wire

pytestmark = pytest.mark.sqlite_only  # counts SQLite commits

EVENTS = "/api/v1/device/events"
HEARTBEAT = "/api/v1/device/heartbeat"


class Seen:
    """What the server had committed when each device reply was about to be sent, read by another connection."""

    def __init__(self, db_path) -> None:
        self.db_path = db_path
        self.statements: list[str] = []
        self.at_reply: list[tuple[str, int, int, int]] = []  # (path, commits so far, events, heartbeat samples)

    def commits(self) -> int:
        return sum(1 for s in self.statements if s.strip().upper() == "COMMIT")

    async def on_prepare(self, request, response) -> None:
        if request.path not in (EVENTS, HEARTBEAT):
            return
        other = sqlite3.connect(self.db_path)  # committed rows only
        try:
            events = other.execute("SELECT count(*) FROM events").fetchone()[0]
            samples = other.execute("SELECT count(*) FROM health_samples").fetchone()[0]
        finally:
            other.close()
        self.at_reply.append((request.path, self.commits(), events, samples))


@pytest.fixture
def seen(db_path):
    return Seen(db_path)


@pytest.fixture
async def client(aiohttp_client, db_path, clock, seen):
    app = create_app(ServerConfig(database=db_path), clock=clock)
    app.on_response_prepare.append(seen.on_prepare)
    client = await aiohttp_client(app)
    client.server.app[DB_KEY].db.conn.set_trace_callback(seen.statements.append)
    return client


async def test_an_event_request_is_one_commit_and_stored_before_the_reply(client, db_path, clock, seen):
    device = await enroll_device(client, db_path, clock)
    await device.fetch_nonce()
    before = seen.commits()
    resp = await device.post_event()
    assert resp.status == 201, await resp.text()
    assert seen.at_reply[-1] == (EVENTS, before + 1, 1, 0)  # one commit, and the event visible to another reader
    rows = client.server.app[DB_KEY].db.conn.execute("SELECT count(*) FROM proof_jti").fetchone()[0]
    assert rows >= 2  # this proof's id was committed with it (the credential request's proof is the other)


async def test_a_heartbeat_is_one_commit_and_stored_before_the_reply(client, db_path, clock, seen):
    device = await enroll_device(client, db_path, clock)
    await device.fetch_nonce()
    before = seen.commits()
    health = wire.Health(
        device_id=device.device_id, sent_at=clock.now, uptime_s=10.0, agent_version="0.4.0", accelerator="cpu"
    )
    statements = len(seen.statements)
    resp = await device.send("POST", HEARTBEAT, health.model_dump_json().encode(), "application/json")
    assert resp.status == 200, await resp.text()
    assert seen.at_reply[-1] == (HEARTBEAT, before + 1, 0, 1)
    ran = [" ".join(s.split()) for s in seen.statements[statements:]]
    assert sum(s.startswith("INSERT INTO presence") for s in ran) == 1  # the sign of life, once
    assert not [s for s in ran if s.startswith("SELECT 1 FROM devices")]  # (the foreign keys check the device)
    statements = len(seen.statements)
    resp = await device.send("POST", HEARTBEAT, health.model_dump_json().encode(), "application/json")
    assert resp.status == 200, await resp.text()
    ran = [" ".join(s.split()) for s in seen.statements[statements:]]
    assert sum(s.startswith("SELECT * FROM devices WHERE id") for s in ran) == 1  # read inside the write only


async def test_an_event_refused_after_authentication_still_spends_its_proof(client, db_path, clock, seen):
    device = await enroll_device(client, db_path, clock)
    body = wire.sign_event(event_for(device.device_id, room="elsewhere"), device.key).encode()
    proof = device.proof("POST", EVENTS, body)
    await device.fetch_nonce()
    before = seen.commits()
    refused = await device.send("POST", EVENTS, body, "application/jose", proof=proof)
    assert refused.status == 403 and "belongs to room" in (await refused.json())["error"]
    assert seen.at_reply[-1] == (EVENTS, before + 1, 0, 0)  # the proof's id and the sign of life, committed
    again = await device.send("POST", EVENTS, body, "application/jose", proof=proof)
    assert (again.status, (await again.json())["code"]) == (401, "replay")
    assert counts(db_path) == (1, 0)


async def test_a_failure_after_storing_undoes_the_event_but_keeps_the_proof_spent(client, db_path, clock, monkeypatch):
    device = await enroll_device(client, db_path, clock)
    real_store = intake.store

    def store_then_fail(fleet, event, received_at):
        assert real_store(fleet, event, received_at)
        raise RejectedError(409, "refused after storing (test)")

    monkeypatch.setattr(intake, "store", store_then_fail)
    body = wire.sign_event(event_for(device.device_id), device.key).encode()
    proof = device.proof("POST", EVENTS, body)
    resp = await device.send("POST", EVENTS, body, "application/jose", proof=proof)
    assert resp.status == 409
    assert counts(db_path) == (1, 0)  # the event (and its deliveries and alerts) undone
    monkeypatch.setattr(intake, "store", real_store)
    again = await device.send("POST", EVENTS, body, "application/jose", proof=proof)
    assert (again.status, (await again.json())["code"]) == (401, "replay")
    assert (await device.post_event(jws=body.decode())).status == 201  # a fresh proof stores it


def test_undo_on_error_undoes_only_the_block(tmp_path):
    conn = sqlite3.connect(tmp_path / "t.db", isolation_level=None)
    conn.execute("CREATE TABLE t (x)")
    with pytest.raises(RuntimeError, match="open transaction"), undo_on_error(conn):
        pass
    with transaction(conn):
        conn.execute("INSERT INTO t VALUES (1)")
        with pytest.raises(ValueError), undo_on_error(conn):
            conn.execute("INSERT INTO t VALUES (2)")
            raise ValueError("no")
        with undo_on_error(conn):
            conn.execute("INSERT INTO t VALUES (3)")
    assert [r[0] for r in conn.execute("SELECT x FROM t ORDER BY x")] == [1, 3]


async def test_requests_arriving_together_share_a_commit_each_reply_after_it(client, db_path, clock, seen):
    devices = [await enroll_device(client, db_path, clock, name=f"cam-{n}") for n in range(6)]
    for device in devices:
        await device.fetch_nonce()
    before, replies = seen.commits(), len(seen.at_reply)
    answers = await asyncio.gather(*(device.post_event() for device in devices))
    assert [r.status for r in answers] == [201] * 6
    committed = seen.commits() - before
    assert 1 <= committed < 6  # grouped (how many per commit depends on how the requests arrived)
    for n, (_, _, events, _) in enumerate(sorted(seen.at_reply[replies:], key=lambda r: r[2])):
        assert events >= n + 1  # each reply saw its own event, and those answered before it, committed
    assert counts(db_path) == (6, 6)  # (devices, events)


async def test_a_revocation_while_the_signatures_are_checked_is_not_missed(client, db_path, clock, monkeypatch):
    device = await enroll_device(client, db_path, clock)
    await device.fetch_nonce()
    fleet = client.server.app[DB_KEY]
    real_check = device_requests._check_signatures

    async def check_then_revoke(app, record, signed):  # an operator's revocation lands while the thread checks
        await real_check(app, record, signed)
        fleet.set_status(device.device_id, "revoked", reason="test", by="test", now=clock(), allowed_from=("active",))

    monkeypatch.setattr(device_requests, "_check_signatures", check_then_revoke)
    resp = await device.post_event()
    assert (resp.status, (await resp.json())["code"]) == (401, "revoked")  # decided again on the row as it is now
    assert counts(db_path) == (1, 0)  # (devices, events): not stored
    monkeypatch.setattr(device_requests, "_check_signatures", real_check)
    again = await device.post_event()
    assert (again.status, (await again.json())["code"]) == (401, "revoked")


async def test_a_change_between_requests_is_decided_on_the_row_as_it_is(client, db_path, clock):
    """Requests are first decided on the device's row as the server last read it; the row read inside the write
    decides: a quarantine lands at once, and a lifted one (or a renewed credential) is not refused on a stale row."""
    device = await enroll_device(client, db_path, clock)
    assert (await device.post_event()).status == 201  # (the server now holds this row as last read)
    fleet = client.server.app[DB_KEY]
    fleet.set_status(device.device_id, "quarantined", reason="t", by="t", now=clock(), allowed_from=("active",))
    refused = await device.post_event()
    assert (refused.status, (await refused.json())["code"]) == (403, "quarantined")
    fleet.set_status(device.device_id, "active", reason="t", by="t", now=clock(), allowed_from=("quarantined",))
    assert (await device.post_event()).status == 201  # (refused on the row last read, accepted on the row as it is)
    assert counts(db_path) == (1, 2)
