"""Wake-ups between workers (fleet/store/signals.py): two real fleet apps on one PostgreSQL database, as two
``--workers`` processes are, and a device and a console talking to them over HTTP; the listener losing its
connection; a notification sent inside a transaction; payloads past PostgreSQL's limit. On SQLite (one worker)
the features' own tests cover the unchanged in-process wake-ups; here only that nothing goes elsewhere."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from pathlib import Path
from typing import Any

import psycopg
import pytest
from aiohttp import DummyCookieJar

from fleet.alerts.streams import BROKER_KEY
from fleet.app import create_app
from fleet.config import ServerConfig
from fleet.jobs.wakeup import WAITERS_KEY
from fleet.store import signals as signals_module
from fleet.store.pg import PgConnection
from fleet.store.schema import transaction
from fleet.store.signals import ALL, MAX_CHUNKS, MAX_PAYLOAD_BYTES, SIGNALS_KEY, Signals, chunk, items_of
from fleet.web.appkeys import DB_KEY, KEYS_KEY
from tests.fleet.alerts.test_alerts_api import open_stream
from tests.fleet.helpers import DeviceSession, api_headers, enroll_device, free_port
from wardsight import wire

WITHIN = 1.0  # seconds: how soon another worker's wake-up must arrive


@pytest.fixture
def workers_db(fleet_backend: str, pg_url: str) -> str:
    """The one PostgreSQL database two workers share (the SQLite variant is skipped: SQLite has one worker)."""
    if fleet_backend != "postgresql":
        pytest.skip("several workers need PostgreSQL; on SQLite the features' own tests cover the one worker")
    return pg_url


async def start_worker(aiohttp_client: Any, url: str, keys: Path, clock: Any) -> Any:
    config = ServerConfig(database_url=url, keys_dir=keys, database=keys.parent / "unused.db",
                          password_memory_kib=1024, password_time_cost=1)  # fmt: skip
    return await aiohttp_client(create_app(config, clock=clock), cookie_jar=DummyCookieJar())


@pytest.fixture
async def two_workers(aiohttp_client: Any, workers_db: str, tmp_path: Path, clock: Any) -> tuple[Any, Any]:
    """Workers A and B: one database, one keys directory, each with its own listener."""
    a = await start_worker(aiohttp_client, workers_db, tmp_path / "keys", clock)
    b = await start_worker(aiohttp_client, workers_db, tmp_path / "keys", clock)
    for worker in (a, b):
        assert worker.server.app[SIGNALS_KEY].listening
    return a, b


def on(worker: Any, device: DeviceSession) -> DeviceSession:
    """The same device talking to another worker (its key and credential; the nonce comes from that worker)."""
    other = DeviceSession(worker, device.key, device.device_id)
    other.credential = device.credential
    return other


def fall(device_id: str, now: float) -> wire.Event:
    return wire.Event(event_id=wire.new_event_id(), device_id=device_id, room="3B-12", app="fall", type="fall",
                      severity="critical", time=now, data={"drop": 0.4})  # fmt: skip


async def poll_jobs(device: DeviceSession, wait: float) -> list[str]:
    if device.nonce is None:
        await device.fetch_nonce()
    target = f"{wire.JOBS_PATH}?wait={wait:g}"
    resp = await device.send("GET", target)
    assert resp.status == 200, await resp.text()
    return list((await resp.json())["jobs"])


# ---- across workers ------------------------------------------------------------------------------------------


async def test_an_alert_stored_through_one_worker_reaches_a_stream_on_another_within_a_second(two_workers, clock):
    a, b = two_workers
    a.server.app[BROKER_KEY].heartbeat_seconds = 3600  # no timer on A: only a wake-up can deliver
    stream, _ = await open_stream(a, api_headers(a, "viewer"))
    device = on(b, await enroll_device(a, _url(a), clock))
    event = fall(device.device_id, clock.now)
    started = time.monotonic()
    assert (await device.post_event(event)).status == 201
    got = await stream.message(WITHIN)
    assert time.monotonic() - started < WITHIN
    assert got["json"]["kind"] == "alert" and got["json"]["alert"]["event_id"] == event.event_id

    started = time.monotonic()  # an operator's acknowledgement on B wakes A's stream too
    ack = await b.post(f"/api/v1/alerts/{event.event_id}/acknowledge", headers=api_headers(b, "operator"))
    assert ack.status == 200, await ack.text()
    got = await stream.message(WITHIN)
    assert got["json"]["kind"] == "acknowledged" and time.monotonic() - started < WITHIN


async def test_a_job_created_through_one_worker_answers_a_long_poll_on_another_within_a_second(two_workers, clock):
    a, b = two_workers
    device = await enroll_device(a, _url(a), clock)
    assert await poll_jobs(device, 0) == []
    waiting = asyncio.create_task(poll_jobs(device, 10))
    await asyncio.sleep(0.3)
    assert not waiting.done() and a.server.app[WAITERS_KEY].connected(device.device_id)
    assert not b.server.app[WAITERS_KEY].connected(device.device_id)  # (each worker's own view)
    started = time.monotonic()
    body = {"kind": "self_test", "target": {"device_ids": [device.device_id]}, "expires_in_s": 3600}
    created = await b.post("/api/v1/jobs", json=body, headers=api_headers(b, "operator"))
    assert created.status == 201, await created.text()
    (token,) = await asyncio.wait_for(waiting, 5)
    assert time.monotonic() - started < WITHIN
    assert wire.verify_job(token, a.server.app[KEYS_KEY].jobs.public_key()).kind == "self_test"


def _url(client: Any) -> str:
    conn = client.server.app[DB_KEY].db.conn
    assert isinstance(conn, PgConnection)
    return conn.url


# ---- the listener's connection ---------------------------------------------------------------------------------


async def test_a_lost_listener_connection_warns_once_and_reconnects(two_workers, clock, caplog):
    a, b = two_workers
    caplog.set_level(logging.INFO, logger="wardsight.fleet.signals")
    a.server.app[BROKER_KEY].heartbeat_seconds = 3600
    stream, _ = await open_stream(a, api_headers(a, "viewer"))
    device = on(b, await enroll_device(a, _url(a), clock))
    listener = a.server.app[SIGNALS_KEY]
    killed = listener.listener_pid
    with psycopg.connect(_url(a), autocommit=True) as admin:  # what a PostgreSQL restart does to the connection
        assert admin.execute("SELECT pg_terminate_backend(%s)", [killed]).fetchone() == (True,)
    deadline = time.monotonic() + 10
    while not (listener.listening and listener.listener_pid != killed) and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    assert listener.listening and listener.listener_pid not in (None, killed)
    lost = [r for r in caplog.records if r.levelno == logging.WARNING and "listener: no connection" in r.message]
    assert len(lost) == 1 and any("listening for wake-ups" in r.message for r in caplog.records)

    event = fall(device.device_id, clock.now)  # and B's wake-ups reach A again
    assert (await device.post_event(event)).status == 201
    got = await stream.message(WITHIN)
    assert got["json"]["alert"]["event_id"] == event.event_id


async def test_while_postgresql_is_unreachable_everything_is_woken_every_few_seconds_and_one_warning(
    pg_url, monkeypatch, caplog
):
    monkeypatch.setattr(signals_module, "FALLBACK_SECONDS", 0.2)
    monkeypatch.setattr(signals_module, "BACKOFF_SECONDS", 0.05)
    monkeypatch.setattr(signals_module, "READY_TIMEOUT_SECONDS", 0.3)
    caplog.set_level(logging.WARNING, logger="wardsight.fleet.signals")
    heard: list[str] = []
    signals = Signals()
    signals.subscribe("jobs", heard.append)
    conn = PgConnection(pg_url)
    nowhere = f"postgresql://wardsight@127.0.0.1:{free_port()}/postgres"  # nothing listens there
    try:
        async with signals.running(conn, listen_url=nowhere):
            assert not signals.listening
            signals.publish("jobs", "dev-1")  # this worker's own wake-up is not lost meanwhile
            assert heard[-1] == "dev-1"
            heard.clear()
            await asyncio.sleep(1.0)
    finally:
        conn.close()
    assert 3 <= heard.count(ALL) == len(heard) <= 6  # every 0.2 s
    assert len([r for r in caplog.records if "wake-up listener: no connection" in r.message]) == 1  # not once per retry
    assert "wardsight@127.0.0.1" in caplog.records[0].message


# ---- what PostgreSQL delivers ----------------------------------------------------------------------------------


async def test_a_wake_up_published_in_a_transaction_arrives_at_its_commit_and_long_lists_in_chunks(pg_url):
    heard: list[str] = []
    one, other = Signals(), Signals()
    other.subscribe("jobs", heard.append)
    one.subscribe("jobs", lambda payload: None)
    conns = [PgConnection(pg_url), PgConnection(pg_url)]
    try:
        async with one.running(conns[0]), other.running(conns[1]):
            assert one.pg_channel("jobs") == other.pg_channel("jobs") and heard == [ALL]  # (connected: catch up)
            heard.clear()
            with transaction(conns[0]):
                one.publish("jobs", "dev-committed")
                await asyncio.sleep(0.3)  # (a test's own connection: nothing else uses it meanwhile)
                assert heard == []
            await _until(lambda: heard == ["dev-committed"])
            with pytest.raises(RuntimeError), transaction(conns[0]):
                one.publish("jobs", "dev-rolled-back")
                raise RuntimeError
            ids = [f"dev-{n:016x}" for n in range(1000)]  # 20 kB: three payloads
            one.publish_items("jobs", ids)
            await _until(lambda: len(heard) == 4)
            assert [len(p.encode()) <= MAX_PAYLOAD_BYTES for p in heard[1:]] == [True] * 3
            assert [i for p in heard[1:] for i in items_of(p) or ()] == ids  # in order, none lost
    finally:
        for conn in conns:
            conn.close()


async def _until(check: Any, seconds: float = WITHIN) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, "not within the time allowed"
        await asyncio.sleep(0.02)


def test_payloads_fit_pg_notify_or_say_wake_all() -> None:
    assert chunk([]) == [] and chunk(["a", "b", "a"]) == ["a\nb"] and items_of("a\nb") == ["a", "b"]
    assert items_of(ALL) is None
    many = [f"dev-{n:016x}" for n in range(MAX_CHUNKS * MAX_PAYLOAD_BYTES // 20 + 1)]
    assert chunk(many) == [ALL]  # too many to name: wake every poll, each reads the database
    assert chunk(["dev-1", "two\nlines"]) == [ALL] and chunk(["x" * (MAX_PAYLOAD_BYTES + 1)]) == [ALL]
    with pytest.raises(ValueError):
        Signals().publish("jobs", "x" * (MAX_PAYLOAD_BYTES + 1))


async def test_on_sqlite_a_wake_up_is_delivered_at_once_in_this_process() -> None:
    heard: list[str] = []
    signals = Signals()
    signals.subscribe("alerts", heard.append)
    conn = sqlite3.connect(":memory:")
    try:
        async with signals.running(conn):
            signals.publish("alerts")
            assert heard == [ALL] and not signals.listening and signals.listener_pid is None
            with pytest.raises(RuntimeError):  # the channels are fixed once the app runs
                signals.subscribe("jobs", heard.append)
    finally:
        conn.close()
