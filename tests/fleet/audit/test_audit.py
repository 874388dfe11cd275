"""The audit log on each backend (a real SQLite file, a real PostgreSQL schema): append, query, refusal of
UPDATE/DELETE, and tamper detection."""

import itertools
import sqlite3

import pytest

from fleet.audit import log as audit
from fleet.store.connection import is_postgres
from fleet.store.db import FleetDB, open_database
from fleet.store.migrations import m0002_audit


def open_db(location):
    return FleetDB(location).db  # the server's own connection settings and migrations


@pytest.fixture
def db_path(fleet_location):
    return fleet_location


@pytest.fixture
def db(db_path):
    db = open_db(db_path)
    yield db
    db.conn.close()


def fill(db):
    entries = [
        ("user:alice", "login.success", "user:alice", {"remote": "10.0.0.5"}, 100.0),
        ("user:alice", "operator.create", "user:bob", {"role": "viewer"}, 110.0),
        ("apitoken:ab12", "device.approve", "dev-1", {"reason": "Ward 3B fall sensor"}, 120.0),
        ("system", "login.locked", "user:mallory", {"seconds": 300}, 130.0),
        ("user:bob", "logout", "user:bob", None, 140.0),
    ]
    return [audit.record(db, actor=a, action=b, target=c, details=d, now=t) for a, b, c, d, t in entries]


def raw(db_path):
    return open_database(db_path).conn  # a second connection, not through the audit module


def test_append_returns_increasing_seq_and_chains_hashes(db):
    seqs = fill(db)
    assert seqs == [1, 2, 3, 4, 5]
    rows = list(db.query("SELECT * FROM audit ORDER BY seq"))
    assert rows[0]["prev_hash"] == audit.GENESIS
    for before, after in itertools.pairwise(rows):
        assert after["prev_hash"] == before["hash"]
    assert len({row["hash"] for row in rows}) == 5
    assert rows[4]["details"] == "{}" and rows[0]["time"] == 100.0
    result = audit.verify(db)
    assert result.ok and result.checked == 5 and result.head_hash == rows[4]["hash"]


def test_integer_time_verifies(db):
    # SQLite stores the time as REAL; the hash must be over the value as read back.
    audit.record(db, actor="system", action="x", target="y", now=1_800_000_000)
    assert audit.verify(db).ok


def test_query_filters_newest_first(db):
    fill(db)

    def seqs(**kw):
        return [row["seq"] for row in audit.query(db, **kw)]

    assert seqs() == [5, 4, 3, 2, 1]
    assert seqs(actor="user:alice") == [2, 1]
    assert seqs(action="logout") == [5]
    assert seqs(target="user:bob") == [5, 2]
    assert seqs(text="ward 3b") == [3]  # case-insensitive, inside details
    assert seqs(text="%") == []  # LIKE wildcards are literal
    assert seqs(text="mallory") == [4]
    assert seqs(since=110.0, until=130.0) == [3, 2]
    assert seqs(limit=2) == [5, 4]
    assert seqs(limit=2, before_seq=4) == [3, 2]
    assert seqs(actor="user:alice", since=105.0) == [2]
    first = audit.query(db, action="device.approve")[0]
    assert first["details"] == {"reason": "Ward 3B fall sensor"} and first["time"] == 120.0
    with pytest.raises(ValueError, match="limit"):
        audit.query(db, limit=0)


def test_record_joins_the_callers_transaction(db, db_path):
    conn = db.conn
    conn.execute("BEGIN IMMEDIATE")
    audit.record(db, actor="system", action="rolled.back", target="x", now=1.0)
    assert conn.in_transaction  # record did not commit the caller's transaction
    conn.execute("ROLLBACK")
    assert db["audit"].count == 0
    conn.execute("BEGIN IMMEDIATE")
    audit.record(db, actor="system", action="kept", target="x", now=2.0)
    conn.execute("COMMIT")
    # Outside a transaction it commits on its own: another connection sees it.
    audit.record(db, actor="system", action="alone", target="x", now=3.0)
    other = raw(db_path)
    assert [r[0] for r in other.execute("SELECT action FROM audit ORDER BY seq")] == ["kept", "alone"]
    other.close()
    assert audit.verify(db).ok


def test_refuses_secrets_and_bad_fields(db):
    for details in ({"password": "hunter2hunter2"}, {"nested": {"csrf_token": "x"}}, {"list": [{"Token": "x"}]}):
        with pytest.raises(ValueError, match="secret"):
            audit.record(db, actor="system", action="x", target="y", details=details, now=1.0)
    with pytest.raises(ValueError, match="actor"):
        audit.record(db, actor="", action="x", target="y", now=1.0)
    with pytest.raises(ValueError, match="finite"):
        audit.record(db, actor="system", action="x", target="y", now=float("nan"))
    assert db["audit"].count == 0


@pytest.mark.parametrize(
    "statement",
    ["UPDATE audit SET actor = 'user:mallory' WHERE seq = 2", "DELETE FROM audit WHERE seq = 2", "DELETE FROM audit"],
)
def test_database_refuses_update_and_delete(db, db_path, statement):
    fill(db)
    conn = raw(db_path)  # even a separate, raw connection
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        conn.execute(statement)
    conn.close()
    assert db["audit"].count == 5 and audit.verify(db).ok


def tamper(db_path, *statements):
    conn = raw(db_path)
    on = " ON audit" if is_postgres(conn) else ""
    conn.execute(f"DROP TRIGGER audit_no_update{on}")
    conn.execute(f"DROP TRIGGER audit_no_delete{on}")
    for statement in statements:
        sql, params = statement if isinstance(statement, tuple) else (statement, [])
        conn.execute(sql, params)
    conn.close()


@pytest.mark.parametrize(
    "statements, bad_seq, reason",
    [
        (['UPDATE audit SET details = \'{"role":"admin"}\' WHERE seq = 2'], 2, "do not match its hash"),
        (["UPDATE audit SET time = 111.0 WHERE seq = 3"], 3, "do not match its hash"),
        (["UPDATE audit SET actor = 'user:eve', hash = 'f' || substr(hash, 2) WHERE seq = 2"], 2, "its hash"),
        (["UPDATE audit SET prev_hash = 'x' WHERE seq = 4"], 4, "prev_hash"),
        (["DELETE FROM audit WHERE seq = 3"], 4, "row 3 is missing"),
        (["DELETE FROM audit WHERE seq >= 4"], 4, "rows 4 to 5 are missing at the end"),
    ],
)
def test_verify_reports_the_first_tampered_row(db, db_path, statements, bad_seq, reason):
    fill(db)
    tamper(db_path, *statements)
    result = audit.verify(db)
    assert not result.ok
    assert result.first_bad_seq == bad_seq
    assert reason in result.reason


def test_verify_detects_a_rehashed_row_through_the_next_link(db, db_path):
    fill(db)
    row = next(db.query("SELECT * FROM audit WHERE seq = 2"))
    forged = audit._row_hash(row["prev_hash"], 2, row["time"], "user:eve", row["action"], row["target"], row["details"])
    tamper(db_path, ("UPDATE audit SET actor = 'user:eve', hash = ? WHERE seq = 2", [forged]))
    result = audit.verify(db)
    assert not result.ok and result.first_bad_seq == 3 and "prev_hash" in result.reason


def test_migrate_is_idempotent_and_restores_dropped_triggers(db, db_path):
    fill(db)
    tamper(db_path)
    m0002_audit.apply(db.conn)
    m0002_audit.apply(db.conn)
    with pytest.raises(sqlite3.IntegrityError):
        db.conn.execute("DELETE FROM audit")
    assert audit.verify(db).ok


def test_empty_log_verifies(db):
    result = audit.verify(db)
    assert result.ok and result.checked == 0 and result.head_hash is None
