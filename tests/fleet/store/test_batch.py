"""Group commit (:class:`fleet.store.batch.GroupCommit`) on a real database: writes queued together share one
commit (SQLite and PostgreSQL alike), each caller answered after it; a write that raises is undone alone; a commit
that fails fails every write of its batch and stores none of it."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from fleet.store.batch import GroupCommit
from fleet.store.connection import Connection
from fleet.store.db import open_database


@pytest.fixture
def conn(fleet_location: Path | str):
    db = open_database(fleet_location)
    db.conn.execute("CREATE TABLE t (x INTEGER NOT NULL UNIQUE)")
    yield db.conn
    db.conn.close()


def stored(conn: Connection) -> list[int]:
    return [row[0] for row in conn.execute("SELECT x FROM t ORDER BY x").fetchall()]


def insert(x: int):
    def write(conn: Connection) -> int:
        conn.execute("INSERT INTO t (x) VALUES (?)", [x])
        return x

    return write


async def test_writes_queued_together_share_a_commit_and_answer_after_it(conn):
    group = GroupCommit(conn)
    results = await asyncio.gather(*(group.write(insert(x)) for x in range(5)))
    assert results == [0, 1, 2, 3, 4] and stored(conn) == [0, 1, 2, 3, 4]
    assert (group.commits, group.writes) == (1, 5)
    assert not conn.in_transaction


async def test_a_write_that_raises_is_undone_alone(conn):
    group = GroupCommit(conn)

    def half_then_fail(conn: Connection) -> None:
        conn.execute("INSERT INTO t (x) VALUES (10)")
        conn.execute("INSERT INTO t (x) VALUES (1)")  # a duplicate of the write before it

    outcomes = await asyncio.gather(
        group.write(insert(1)), group.write(half_then_fail), group.write(insert(2)), return_exceptions=True
    )
    assert outcomes[0] == 1 and outcomes[2] == 2
    assert isinstance(outcomes[1], sqlite3.IntegrityError)  # (PostgreSQL's too: the store raises DB-API classes)
    assert stored(conn) == [1, 2]  # 10 undone with its write


async def test_a_write_that_catches_a_failed_statement_fails_alone(conn):
    group = GroupCommit(conn)

    def swallow(conn: Connection) -> str:
        conn.execute("INSERT INTO t (x) VALUES (5)")
        try:
            conn.execute("INSERT INTO t (x) VALUES (1)")  # a duplicate: on PostgreSQL the transaction is now aborted
        except sqlite3.IntegrityError:
            return "went on"
        return "no error"

    outcomes = await asyncio.gather(
        group.write(insert(1)), group.write(swallow), group.write(insert(2)), return_exceptions=True
    )
    assert outcomes[0] == 1 and outcomes[2] == 2  # the others are stored on both backends
    if isinstance(outcomes[1], Exception):  # PostgreSQL: its writes are void, and it fails
        assert stored(conn) == [1, 2]
    else:  # SQLite: a failed statement leaves the transaction usable, and the write's own choice stands
        assert outcomes[1] == "went on" and stored(conn) == [1, 2, 5]


async def test_a_failed_commit_fails_every_write_of_its_batch(fleet_location):
    db = open_database(fleet_location)
    conn = db.conn
    conn.execute("CREATE TABLE parent (id INTEGER PRIMARY KEY)")
    conn.execute(
        "CREATE TABLE t (x INTEGER NOT NULL, p INTEGER REFERENCES parent (id) DEFERRABLE INITIALLY DEFERRED)"
    )
    group = GroupCommit(conn)

    def orphan(conn: Connection) -> None:  # only the commit can refuse it (a deferred foreign key)
        conn.execute("INSERT INTO t (x, p) VALUES (99, 7)")

    outcomes = await asyncio.gather(group.write(insert(1)), group.write(orphan), return_exceptions=True)
    assert all(isinstance(o, sqlite3.IntegrityError) for o in outcomes), outcomes
    assert outcomes[0] is not outcomes[1]  # one exception object per caller
    assert stored(conn) == [] and not conn.in_transaction
    assert await group.write(insert(3)) == 3 and stored(conn) == [3]  # and the next batch commits
    conn.close()


async def test_a_batch_waits_for_writes_on_their_way_then_commits_at_once(fleet_location):
    db = open_database(fleet_location)
    db.conn.execute("CREATE TABLE t (x INTEGER NOT NULL UNIQUE)")
    group = GroupCommit(db.conn, max_wait=30.0)

    async def request(x: int, checking: float):
        with group.coming():
            await asyncio.sleep(checking)  # (its checks off the event loop)
            committed = group.submit(insert(x))
        return await committed

    assert await asyncio.wait_for(asyncio.gather(request(1, 0.0), request(2, 0.05)), 5) == [1, 2]
    assert (group.commits, group.writes) == (1, 2)  # the first waited for the second, not for max_wait
    group = GroupCommit(db.conn, max_wait=0.01)

    async def stuck() -> None:
        with group.coming():
            await asyncio.sleep(30)

    late = asyncio.ensure_future(stuck())
    await asyncio.sleep(0)  # (it is now on its way)
    assert await asyncio.wait_for(group.write(insert(3)), 5) == 3  # max_wait bounds the wait for a slow one
    late.cancel()
    assert stored(db.conn) == [1, 2, 3]
    db.conn.close()


async def test_a_full_batch_commits_at_once_and_a_cancelled_caller_s_write_is_stored(fleet_location):
    db = open_database(fleet_location)
    db.conn.execute("CREATE TABLE t (x INTEGER NOT NULL UNIQUE)")
    group = GroupCommit(db.conn, max_batch=3, max_wait=30.0)
    with group.coming():  # (a slow one on its way: only a full batch commits before it arrives)
        waiting = [group.submit(insert(x)) for x in range(3)]
        assert [f.result() for f in waiting] == [0, 1, 2] and (group.commits, group.writes) == (1, 3)
        cancelled = asyncio.ensure_future(group.write(insert(7)))
        await asyncio.sleep(0)
        cancelled.cancel()
    await asyncio.sleep(0.05)
    assert stored(db.conn) == [0, 1, 2, 7]  # (its caller gone, the write it queued is committed all the same)
    db.conn.close()
