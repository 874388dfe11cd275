"""Periodic tasks run in one worker at a time (issue 17): :class:`fleet.store.leader.Leadership` on a real
PostgreSQL database, and the real fleet app run as two workers on one database (the offline monitor, a periodic
step of our own through :func:`fleet.web.tasks.periodic`). A worker "dies" the way PostgreSQL sees it: its
session ends (its app shuts down, or the server terminates its backend)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from fleet.app import create_app
from fleet.config import ServerConfig
from fleet.store.leader import Leadership, lock_key, with_keepalives
from fleet.web.appkeys import DB_KEY
from fleet.web.tasks import leadership_of, periodic
from tests.fleet.helpers import Clock, insert_device

# Each test puts its database on PostgreSQL itself (pg_url); the automatic second run on PostgreSQL would only
# repeat it (tests/conftest.py).
pytestmark = pytest.mark.sqlite_only

T0 = 1_800_000_000.0
MONITOR = "wardsight-offline-monitor"


def schema_of(url: str) -> str:
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute("SELECT current_schema()").fetchone()
    assert row is not None
    return str(row[0])


def terminate_holder(url: str, name: str) -> int:
    """End (as a crash or a fail-over would) the session holding the lock of task ``name``; its pid."""
    import psycopg

    key = lock_key(name, schema_of(url)) & 0xFFFF_FFFF_FFFF_FFFF
    with psycopg.connect(url, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted AND classid = %s AND objid = %s"
            " AND objsubid = 1",
            [key >> 32, key & 0xFFFF_FFFF],
        ).fetchall()
        assert len(rows) == 1, rows
        conn.execute("SELECT pg_terminate_backend(%s)", [rows[0][0]])
    return int(rows[0][0])


def soon(predicate: Callable[[], bool], timeout: float = 5.0) -> bool:
    """Whether ``predicate`` comes true within ``timeout`` (a closed session's locks are freed once its server
    process has ended, a moment after the client closed it: the next try of a worker takes the task)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


async def wait_for(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError("timed out")
        await asyncio.sleep(0.02)


# ---- Leadership on one database ----------------------------------------------------------------------------------


def test_exactly_one_of_two_workers_runs_a_task_and_the_other_takes_over_when_it_is_closed(pg_url: str) -> None:
    a, b = Leadership(pg_url), Leadership(pg_url)
    try:
        assert a.leads("offline") and not b.leads("offline")
        for _ in range(3):  # the holder keeps it, the other keeps being refused
            assert a.leads("offline") and not b.leads("offline")
        assert b.leads("rollouts") and not a.leads("rollouts")  # one lock per task: the tasks spread
        assert (a.holds("offline"), a.holds("rollouts"), b.holds("offline"), b.holds("rollouts")) == (
            True,
            False,
            False,
            True,
        )
        a.close()  # its session ends: PostgreSQL frees its locks
        assert not a.leads("offline")  # and a closed one never leads again
        assert soon(lambda: b.leads("offline")) and b.leads("rollouts")
    finally:
        a.close()
        b.close()


def test_a_dead_holders_task_is_taken_over_and_it_reconnects_as_a_follower(
    pg_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    clock = Clock(T0)
    a, b = Leadership(pg_url, clock=clock), Leadership(pg_url, clock=clock)
    caplog.set_level(logging.INFO, logger="wardsight.fleet.leader")
    try:
        assert a.connect() and a.contact_since() == T0
        assert a.leads("offline") and not b.leads("offline")
        clock.now = T0 + 10
        terminate_holder(pg_url, "offline")  # the holder's process died: the server ended its session
        assert soon(lambda: b.leads("offline"))  # taken over at the other's next try
        assert not a.leads("offline")  # its session is gone: it stops leading, it does not go on
        assert not a.holds("offline")
        assert a.contact_since() == T0 + 10  # no contact now
        clock.now = T0 + 20
        assert not a.leads("offline")  # reconnected, and the task is b's now
        assert a.contact_since() == T0 + 20
        b.close()
        assert soon(lambda: a.leads("offline"))
    finally:
        a.close()
        b.close()
    said = [(r.levelname, r.getMessage().split(": ", 1)[-1]) for r in caplog.records]
    assert said == [
        ("INFO", "this worker takes offline over"),  # b (a's first lead at start-up is no news)
        (
            "WARNING",
            "lost the periodic tasks' connection (terminating connection due to administrator command);"
            " gave up offline, reconnecting at the next try",
        ),  # once
        ("INFO", f"the periodic tasks' connection to {pg_url} is back"),
        ("INFO", "this worker takes offline over"),  # a again, once b is gone
    ], said


def test_an_unreachable_database_is_logged_once_and_never_leads(caplog: pytest.LogCaptureFixture) -> None:
    import socket

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    gone = Leadership(f"postgresql://nobody:secret@127.0.0.1:{port}/fleet")
    with caplog.at_level(logging.WARNING, logger="wardsight.fleet.leader"):
        assert not gone.connect()
        assert not gone.leads("offline") and not gone.leads("offline")
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 1 and "cannot reach" in warnings[0] and "secret" not in warnings[0]


def test_on_sqlite_the_only_worker_always_leads_and_opens_nothing() -> None:
    alone = Leadership(None)
    assert not alone.shared and alone.connect()
    assert alone.leads("offline") and alone.holds("offline") and alone.contact_since() is None


def test_lock_keys_are_stable_64_bit_and_differ_by_task_and_schema() -> None:
    key = lock_key("wardsight-offline-monitor", "public")
    assert key == lock_key("wardsight-offline-monitor", "public") == 2256134919889924573
    assert -(2**63) <= key < 2**63
    assert len({key, lock_key("wardsight-rollout-ticker", "public"), lock_key("wardsight-offline-monitor", "t1")}) == 3


def test_keepalives_are_added_to_the_url_without_touching_what_it_says() -> None:
    url = "postgresql://u@h:5/db?options=-csearch_path%3Dt1&keepalives_idle=60"
    got = with_keepalives(url)
    assert got.startswith(url + "&keepalives=1&keepalives_interval=5")
    assert got.count("keepalives_idle") == 1 and "tcp_user_timeout=30000" in got
    assert with_keepalives("postgresql://u@h/db").startswith("postgresql://u@h/db?keepalives=1&")


# ---- two workers: the real app twice on one PostgreSQL schema ---------------------------------------------------


def worker(tmp_path: Path, pg_url: str, clock: Clock, **config: Any) -> web.Application:
    settings = ServerConfig(database=tmp_path / "fleet.db", database_url=pg_url, keys_dir=tmp_path / "keys", **config)
    return create_app(settings, clock=clock)


def counting(app: web.Application, runs: dict[int, int]) -> None:
    """A periodic step of the test's own on ``app``, counting its runs per app."""
    runs[id(app)] = 0

    def step(app: web.Application) -> None:
        runs[id(app)] += 1

    app.cleanup_ctx.append(periodic(step, lambda app: 0.02, name="test-counter", what="counting"))


async def test_a_periodic_step_runs_in_one_worker_and_moves_when_it_stops(
    aiohttp_client: Any, tmp_path: Path, pg_url: str
) -> None:
    runs: dict[int, int] = {}
    apps = [worker(tmp_path, pg_url, Clock(T0)) for _ in range(2)]
    for app in apps:
        counting(app, runs)
    clients = [await aiohttp_client(app) for app in apps]
    await wait_for(lambda: sum(runs.values()) >= 10)
    await asyncio.sleep(0.2)
    leader = next(i for i, app in enumerate(apps) if runs[id(app)])
    other = apps[1 - leader]
    assert runs[id(other)] == 0  # ten and more runs, all in one worker
    await clients[leader].close()  # the leader stops (its session ends)
    await wait_for(lambda: runs[id(other)] >= 5)
    assert leadership_of(other) is not None and leadership_of(other).holds("test-counter")  # type: ignore[union-attr]


def offline_events(app: web.Application) -> list[str]:
    rows = (
        app[DB_KEY]
        .db.conn.execute("SELECT device_id FROM events WHERE type = 'device_offline' ORDER BY device_id")
        .fetchall()
    )
    return [r[0] for r in rows]


async def test_two_workers_announce_a_silent_device_once_and_the_survivor_goes_on(
    aiohttp_client: Any, tmp_path: Path, pg_url: str
) -> None:
    clocks = [Clock(T0), Clock(T0)]  # two hosts: their clocks need not agree
    apps = [worker(tmp_path, pg_url, c, offline_grace_seconds=5, offline_check_seconds=0.05) for c in clocks]
    clients = [await aiohttp_client(app) for app in apps]
    insert_device(apps[0][DB_KEY], "dev-a", enrolled_at=T0, last_seen=T0)
    await wait_for(lambda: any(leadership_of(app).holds(MONITOR) for app in apps))  # type: ignore[union-attr]
    leader = next(i for i, app in enumerate(apps) if leadership_of(app).holds(MONITOR))  # type: ignore[union-attr]
    follower = 1 - leader
    clocks[follower].now = T0 + 6  # past the grace period in the other worker's view: it does not check
    await asyncio.sleep(0.3)
    assert offline_events(apps[0]) == []
    clocks[leader].now = T0 + 6
    await wait_for(lambda: offline_events(apps[0]) == ["dev-a"])
    await asyncio.sleep(0.3)  # a dozen more checks in each worker
    assert offline_events(apps[0]) == ["dev-a"]

    await clients[leader].close()  # the leader stops; the other takes the monitor over
    survivor = apps[follower]
    insert_device(survivor[DB_KEY], "dev-b", enrolled_at=T0 + 6, last_seen=T0 + 6)
    await wait_for(lambda: leadership_of(survivor).holds(MONITOR))  # type: ignore[union-attr]
    await asyncio.sleep(0.2)
    assert offline_events(survivor) == ["dev-a"]  # dev-b is silent 0 s, dev-a was announced already
    clocks[follower].now = T0 + 12
    await wait_for(lambda: offline_events(survivor) == ["dev-a", "dev-b"])
    await asyncio.sleep(0.3)
    assert offline_events(survivor) == ["dev-a", "dev-b"]


async def test_silence_while_a_worker_was_cut_off_from_the_database_is_not_held_against_devices(
    aiohttp_client: Any, tmp_path: Path, pg_url: str
) -> None:
    clock = Clock(T0)
    app = worker(tmp_path, pg_url, clock, offline_grace_seconds=5, offline_check_seconds=0.05)
    await aiohttp_client(app)
    insert_device(app[DB_KEY], "dev-a", enrolled_at=T0, last_seen=T0)
    leadership = leadership_of(app)
    assert leadership is not None
    await wait_for(lambda: leadership.holds(MONITOR))
    clock.now = T0 + 3
    terminate_holder(pg_url, MONITOR)  # the leader connection breaks (a restart, a fail-over)
    await wait_for(lambda: leadership.holds(MONITOR) and leadership.contact_since() == T0 + 3)
    clock.now = T0 + 7  # silent 7 s since its last contact, 4 s since this worker can hear it again
    await asyncio.sleep(0.3)
    assert offline_events(app) == []
    clock.now = T0 + 8.5
    await wait_for(lambda: offline_events(app) == ["dev-a"])
