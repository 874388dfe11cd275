"""The fleet database's numbered migrations: a database made by the server of 2026-12-07 (before migrations were
numbered: the demo's database after a model rollout, a diagnostics job, a webhook endpoint and a delivery, kept in
data/) upgrades in place, keeps every row, ends with the schema a new database gets, and
the upgraded fleet serves its devices, rollouts, webhooks, jobs and an intact audit chain."""

from __future__ import annotations

import shutil
import sqlite3
import time
from pathlib import Path

import pytest

from fleet.accounts import service as operators
from fleet.app import create_app
from fleet.config import ServerConfig
from fleet.store import migrations
from fleet.store.db import FleetDB, connect

pytestmark = pytest.mark.sqlite_only  # SQLite files from before numbered migrations, user_version

OLD_DATABASE = Path(__file__).parent / "data" / "fleet-2026-12-07.sqlite"


def old_database(path: Path) -> Path:
    shutil.copyfile(OLD_DATABASE, path)
    return path


def counts(path: Path) -> dict[str, int]:
    conn = sqlite3.connect(path)
    try:
        names = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        return {name: conn.execute(f"SELECT count(*) FROM {name}").fetchone()[0] for name in names}  # noqa: S608
    finally:
        conn.close()


def schema(path: Path) -> dict[tuple[str, str], list[tuple[str, str, int]]]:
    """Every table, index and trigger by name, with each table's columns (name, type, not null)."""
    conn = sqlite3.connect(path)
    try:
        out: dict[tuple[str, str], list[tuple[str, str, int]]] = {}
        for kind, name in conn.execute("SELECT type, name FROM sqlite_master WHERE name NOT LIKE 'sqlite_%'"):
            cols = conn.execute(f"PRAGMA table_info({name})").fetchall() if kind == "table" else []
            out[(kind, name)] = sorted((c[1], c[2].upper(), c[3]) for c in cols)
        return out
    finally:
        conn.close()


def version(path: Path) -> int:
    conn = sqlite3.connect(path)
    try:
        return migrations.schema_version(conn)
    finally:
        conn.close()


def test_migrations_are_numbered_without_gaps():
    found = migrations.migrations()
    assert [m.number for m in found] == list(range(1, len(found) + 1))
    assert len(found) >= 12  # the 2026-12-07 baseline


def test_a_database_from_before_numbered_migrations_upgrades_in_place_and_keeps_every_row(tmp_path):
    old = old_database(tmp_path / "old.db")
    before = counts(old)
    assert version(old) == 0 and before["devices"] == 1 and before["rollouts"] == 1 and before["jobs"] == 1
    FleetDB(old).close()
    assert version(old) == len(migrations.migrations())
    after = counts(old)
    assert {name: after[name] for name in before} == before  # every row kept...
    later = after.keys() - before.keys() - {"audit_counter"}
    assert all(after[name] == 0 for name in later)  # ...and tables added later start empty
    assert after["audit_counter"] == 1  # (the audit log's counter: one row, the old log's last number)
    FleetDB(tmp_path / "new.db").close()
    assert schema(old) == schema(tmp_path / "new.db")
    FleetDB(old).close()  # opening it again applies nothing
    assert counts(old) == after


def test_a_database_newer_than_the_server_is_refused_untouched(tmp_path):
    path = tmp_path / "fleet.db"
    FleetDB(path).close()
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version = {len(migrations.migrations()) + 1}")
    conn.close()
    before = counts(path)
    with pytest.raises(RuntimeError, match="newer than this server knows"):
        FleetDB(path)
    assert counts(path) == before


def test_a_migration_another_process_applied_meanwhile_is_not_applied_again(tmp_path, monkeypatch):
    # A `wardsight fleet` command opening the database while a newer server starts: both read the old version,
    # the server migrates first; the command, once it holds the write lock, must see that and apply nothing.
    path = tmp_path / "fleet.db"
    FleetDB(path).close()  # the other process migrated it to the latest version
    conn = connect(path)
    real = migrations.schema_version
    stale = [0]  # what this process read before the other one migrated
    monkeypatch.setattr(migrations, "schema_version", lambda c: stale.pop() if stale else real(c))
    try:
        assert migrations.migrate(conn) == []
        assert real(conn) == len(migrations.migrations())
    finally:
        conn.close()


async def test_the_upgraded_fleet_serves_what_the_old_one_stored(tmp_path, aiohttp_client):
    path = old_database(tmp_path / "fleet.db")
    config = ServerConfig(database=path, keys_dir=tmp_path / "keys", password_memory_kib=1024, password_time_cost=1)
    client = await aiohttp_client(create_app(config))
    db = FleetDB(path)
    try:
        token = operators.create_api_token(db.db, "upgrade-check", "admin", "system", time.time())
    finally:
        db.close()
    headers = {"Authorization": f"Bearer {token}"}

    async def get(url: str) -> dict:
        resp = await client.get(url, headers=headers)
        assert resp.status == 200, await resp.text()
        return await resp.json()

    devices = (await get("/api/v1/devices"))["devices"]
    assert [d["room"] for d in devices] == ["demo-room-101"]
    rollouts = (await get("/api/v1/rollouts"))["rollouts"]
    assert [(r["model"], r["version"]) for r in rollouts] == [("movenet-multipose", "1.1")]
    assert [w["name"] for w in (await get("/api/v1/webhooks"))["webhooks"]] == ["nurse-call"]
    assert len((await get("/api/v1/jobs"))["batches"]) == 1
    assert (await get("/api/v1/audit/verify"))["ok"] is True
