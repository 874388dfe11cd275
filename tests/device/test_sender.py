"""The agent's sender keeps events through a dead network and delivers them, in order, when it returns."""

import time

from firmware.identity import IdentityStore
from firmware.sender import EventSender
from fleet.config import ServerConfig
from fleet.enrollment import tokens
from fleet.server import BackgroundServer
from fleet.store.db import FleetDB
from tests.fleet.helpers import free_port
from wardsight import wire
from wardsight.bundle import Bundle


def wait_for(predicate, timeout=20.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


def enrolled_then_offline(tmp_path, room):
    """A device enrolled with a real server on a fixed port, which then goes away: (port, db, identity, key)."""
    port = free_port()
    db_path = tmp_path / "fleet.db"
    plaintext, record = tokens.new_token(room, time.time(), 600)
    db = FleetDB(db_path)
    db.add_token(record)
    db.close()
    server = BackgroundServer(ServerConfig(port=port, database=db_path)).start()
    store = IdentityStore(tmp_path / "device")
    identity, _ = store.enroll(Bundle(server.url, plaintext, server.ca_pem), "cam-" + room.lower())
    _, key = store.load()
    server.stop()  # the network goes away
    return port, db_path, identity, key


def device_post(tmp_path):
    """The agent's authenticated post (pinned TLS, proofs, credential) for the device enrolled in ``tmp_path``."""
    return IdentityStore(tmp_path / "device").client(timeout=2.0)[1].post_event


def submit_events(sender, identity, key, count, app, type_, data_key):
    """``count`` signed events of the enrolled device (at 1.8e9 + n s, data {data_key: n}) to ``sender``; their ids."""
    ids = []
    for n in range(count):
        event = wire.Event(
            event_id=wire.new_event_id(),
            device_id=identity.device_id,
            room=identity.room,
            app=app,
            type=type_,
            time=1_800_000_000.0 + n,
            data={data_key: n},
        )
        ids.append(event.event_id)
        sender.submit(wire.sign_event(event, key))
    return ids


def test_events_survive_a_server_outage(tmp_path):
    port, db_path, identity, key = enrolled_then_offline(tmp_path, "5C-01")

    sender = EventSender(identity.server_url, max_backoff=0.5, post=device_post(tmp_path)).start()
    ids = submit_events(sender, identity, key, 5, "occupancy", "count_changed", "count")
    assert wait_for(lambda: sender.stats.retries >= 2)
    assert sender.pending == 5 and sender.stats.sent == 0

    server = BackgroundServer(ServerConfig(port=port, database=db_path)).start()  # it comes back
    try:
        assert wait_for(lambda: sender.pending == 0)
        sender.stop()
        assert sender.stats.sent == 5 and sender.stats.rejected == 0
        db = FleetDB(db_path)
        stored = [r["event_id"] for r in db.db["events"].rows_where(order_by="received_at")]
        db.close()
        assert stored == ids
    finally:
        server.stop()


def test_overflow_during_a_send_loses_no_unsent_event():
    import threading

    from firmware.transport import Reply

    release = threading.Event()
    delivered = []

    def post(url, jws):
        if jws == "e0":
            release.wait(5)
        delivered.append(jws)
        return Reply(201, {})

    sender = EventSender("http://unused", max_queue=3, post=post).start()
    sender.submit("e0")
    assert wait_for(lambda: delivered == [] and sender.pending == 1)
    time.sleep(0.1)  # e0 is now in flight
    for name in ("e1", "e2", "e3"):  # overflows: e0 (in flight) is the oldest and is dropped from the queue
        sender.submit(name)
    release.set()
    assert wait_for(lambda: sender.pending == 0)
    sender.stop()
    assert delivered == ["e0", "e1", "e2", "e3"]


def test_rate_limited_events_are_retried_not_dropped():
    from firmware.transport import Reply

    replies = [Reply(429, {"error": "slow down"})]
    calls = []

    def post(url, jws):
        calls.append(jws)
        return replies.pop(0) if replies else Reply(201, {})

    sender = EventSender("http://unused", post=post, max_backoff=0.1).start()
    sender.submit("e0")
    assert wait_for(lambda: sender.stats.sent == 1)
    sender.stop()
    assert calls == ["e0", "e0"] and sender.stats.rejected == 0 and sender.stats.retries == 1


def test_outbox_survives_an_agent_restart_and_delivers_in_order_exactly_once(tmp_path):
    from firmware.outbox import SqliteOutbox

    port, db_path, identity, key = enrolled_then_offline(tmp_path, "5C-02")  # down while events are raised

    url = identity.server_url
    outbox_path = tmp_path / "device" / "outbox.db"
    first = EventSender(url, queue=SqliteOutbox(outbox_path), max_backoff=0.2, post=device_post(tmp_path)).start()
    ids = submit_events(first, identity, key, 4, "fall", "fall", "n")
    assert wait_for(lambda: first.stats.retries >= 1)
    first.stop(flush_timeout=0.1)  # the agent is killed (nothing was sent)

    server = BackgroundServer(ServerConfig(port=port, database=db_path)).start()
    try:
        again = EventSender(  # after the restart
            url, queue=SqliteOutbox(outbox_path), max_backoff=0.2, post=device_post(tmp_path)
        ).start()
        assert wait_for(lambda: again.pending == 0)
        again.stop()
        db = FleetDB(db_path)
        stored = [r["event_id"] for r in db.db["events"].rows_where(order_by="received_at")]
        db.close()
        assert stored == ids  # all, in order, once
    finally:
        server.stop()


def test_outbox_bound_drops_the_oldest(tmp_path):
    from firmware.outbox import SqliteOutbox

    box = SqliteOutbox(tmp_path / "o.db", max_entries=3)
    dropped = [box.push(f"e{i}") for i in range(5)]
    assert dropped == [0, 0, 0, 1, 1] and len(box) == 3
    key, jws = box.head()
    assert jws == "e2"
    box.remove(key)
    assert box.head()[1] == "e3"


def test_an_unexpected_error_does_not_end_the_sender():
    from firmware.transport import Reply

    calls = []

    def post(url, jws):
        calls.append(jws)
        if len(calls) == 1:
            raise RuntimeError("a bug in a transport")
        return Reply(201, {})

    sender = EventSender("http://unused", post=post, max_backoff=0.05).start()
    sender.submit("e0")
    assert wait_for(lambda: sender.stats.sent == 1)
    sender.stop()
    assert calls == ["e0", "e0"] and sender.stats.retries == 1
