"""``wardsight fleet migrate [--check]``, ``wardsight fleet export`` and ``wardsight fleet import`` (issue 17, item 4):
what they print and exit with on each backend, and a device that keeps working after its fleet moved from SQLite
to PostgreSQL (same key, same credential, no re-enrollment).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from firmware.heartbeat import SystemReadings, build_health
from fleet.app import create_app
from fleet.config import ServerConfig
from fleet.store import migrations, transfer
from fleet.store.connection import is_postgres
from fleet.store.db import FleetDB, open_database
from tests.fleet.helpers import DeviceSession, agent_readings, enroll_device, free_port
from tests.fleet.test_migrations import OLD_DATABASE
from wardsight import wire
from wardsight_cli.main import cli

LATEST = len(migrations.migrations())
TABLES = len(transfer.layout().tables)

# Each test here puts its databases on the backends it names (both, in turn). The suite's automatic second run of
# fleet tests with every SQLite file made a PostgreSQL schema (tests/conftest.py) would turn their SQLite side into
# another PostgreSQL one, so they opt out of it with the marker that does that.
pytestmark = pytest.mark.sqlite_only


def config_for(location: Path | str, tmp_path: Path) -> Path:
    """A server config file naming ``location`` (a SQLite file or a PostgreSQL URL)."""
    key = "database_url" if isinstance(location, str) else "database"
    path = tmp_path / f"server-{len(list(tmp_path.glob('server-*')))}.toml"
    path.write_text(f"{key} = {json.dumps(str(location))}\n")
    return path


def fleet(tmp_path: Path, *args: str, env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(cli, ["--data-dir", str(tmp_path / "data"), "fleet", *args], env=env)


def version_of(location: Path | str) -> int:
    db = open_database(location)
    try:
        return migrations.schema_version(db.conn)
    finally:
        db.conn.close()


def at_version(location: Path | str, number: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """Migrate ``location`` as a server that knew only the first ``number`` migrations would."""
    known = migrations.migrations()
    with monkeypatch.context() as patch:
        patch.setattr(migrations, "migrations", lambda: known[:number])
        FleetDB(location).close()
    assert version_of(location) == number


def one_line_error(result: Result, code: int, text: str) -> None:
    assert result.exit_code == code, result.output
    assert text in result.output and "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1, result.output


# ---- migrate -------------------------------------------------------------------------------------------------


def test_migrate_applies_every_migration_once_and_says_so(fleet_location, tmp_path):
    config = str(config_for(fleet_location, tmp_path))
    first = fleet(tmp_path, "migrate", "--config", config)
    assert first.exit_code == 0, first.output
    lines = first.output.strip().splitlines()
    assert lines[:-1] == [f"applied {m.name}" for m in migrations.migrations()]
    assert lines[-1].endswith(f": now at schema version {LATEST}")
    assert version_of(fleet_location) == LATEST

    check = fleet(tmp_path, "migrate", "--check", "--config", config)
    assert check.exit_code == 0 and check.output.strip().endswith(f": up to date (schema version {LATEST})")
    again = fleet(tmp_path, "migrate", "--config", config)
    assert again.exit_code == 0 and again.output.strip().endswith(f": already at schema version {LATEST}")


def test_check_names_the_pending_migrations_applies_none_and_migrate_then_applies_them(
    fleet_location, tmp_path, monkeypatch
):
    at_version(fleet_location, LATEST - 2, monkeypatch)
    config = str(config_for(fleet_location, tmp_path))
    pending = [m.name for m in migrations.migrations()[-2:]]

    check = fleet(tmp_path, "migrate", "--check", "--config", config)
    one_line_error(check, 1, f"2 migration(s) pending: {', '.join(pending)}")
    assert version_of(fleet_location) == LATEST - 2  # nothing applied

    applied = fleet(tmp_path, "migrate", "--config", config)
    assert applied.exit_code == 0, applied.output
    assert applied.output.strip().splitlines()[:-1] == [f"applied {name}" for name in pending]
    assert version_of(fleet_location) == LATEST


def test_a_database_newer_than_this_server_is_an_error_with_exit_status_2(fleet_location, tmp_path):
    FleetDB(fleet_location).close()
    db = open_database(fleet_location)
    try:
        if is_postgres(db):
            db.conn.execute("UPDATE wardsight_schema SET version = ?", [LATEST + 1])
        else:
            db.conn.execute(f"PRAGMA user_version = {LATEST + 1}")
    finally:
        db.conn.close()
    config = str(config_for(fleet_location, tmp_path))
    for args in (["migrate", "--check"], ["migrate"]):
        result = fleet(tmp_path, *args, "--config", config)
        one_line_error(result, 2, f"schema version {LATEST + 1}, newer than this server knows ({LATEST})")
        assert result.stdout == "" and result.stderr.startswith("Error: ")
    assert version_of(fleet_location) == LATEST + 1


def test_check_on_a_missing_sqlite_file_reports_everything_pending_and_creates_nothing(tmp_path):
    path = tmp_path / "nowhere" / "fleet.db"
    result = fleet(tmp_path, "migrate", "--check", "--config", str(config_for(path, tmp_path)))
    one_line_error(result, 1, "no fleet database yet; every migration is pending: m0001_devices_and_events, ")
    assert not path.parent.exists()


def test_check_of_a_database_it_cannot_read_is_an_error_not_pending(tmp_path):
    garbage = tmp_path / "fleet.db"
    garbage.write_bytes(b"not a database at all " * 200)
    config = str(config_for(garbage, tmp_path))
    one_line_error(fleet(tmp_path, "migrate", "--check", "--config", config), 2, "file is not a database")
    one_line_error(fleet(tmp_path, "migrate", "--config", config), 1, "file is not a database")
    closed = f"postgresql://nobody:hunter2@127.0.0.1:{free_port()}/fleet"
    result = fleet(tmp_path, "migrate", "--check", "--config", str(config_for(closed, tmp_path)))
    one_line_error(result, 2, "cannot open the fleet database at postgresql://nobody:***@127.0.0.1:")
    assert "hunter2" not in result.output
    missing_config = fleet(tmp_path, "migrate", "--check", "--config", str(tmp_path / "nonexistent.toml"))
    one_line_error(missing_config, 2, "config file not found")


# ---- export and import ---------------------------------------------------------------------------------------


def sqlite_fleet(tmp_path: Path) -> Path:
    """The data directory's fleet.db: the old server's database, upgraded (as a fleet that ran for a while)."""
    path = tmp_path / "data" / "fleet.db"
    path.parent.mkdir(parents=True)
    path.write_bytes(OLD_DATABASE.read_bytes())
    FleetDB(path).close()
    return path


def rows_of(location: Path | str) -> dict[str, int]:
    db = open_database(location)
    try:
        return {t: db.conn.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0] for t in db.table_names()}  # noqa: S608
    finally:
        db.conn.close()


def test_a_sqlite_fleet_moves_to_postgresql_with_the_commands(tmp_path, pg_url):
    source = sqlite_fleet(tmp_path)
    dest = tmp_path / "fleet.jsonl"
    exported = fleet(tmp_path, "export", "--to", str(dest))
    assert exported.exit_code == 0, exported.output
    total = sum(n for t, n in rows_of(source).items() if t != "sqlite_sequence")
    assert (
        exported.output
        == f"exported {total} rows of {TABLES} tables (schema version {LATEST}) from {source} to {dest}\n"
    )
    assert dest.stat().st_mode & 0o777 == 0o600

    on_pg = {"WARDSIGHT_SERVER_DATABASE_URL": pg_url}
    unmigrated = fleet(tmp_path, "import", "--from", str(dest), env=on_pg)
    one_line_error(
        unmigrated, 1, f"is at schema version 0, this server's is {LATEST}: run 'wardsight fleet migrate' on it"
    )
    assert fleet(tmp_path, "migrate", env=on_pg).exit_code == 0
    imported = fleet(tmp_path, "import", "--from", str(dest), env=on_pg)
    assert imported.exit_code == 0, imported.output
    assert imported.output.startswith(f"imported {total} rows of {TABLES} tables into postgresql://")
    assert imported.output.endswith("verified: every table's rows, the audit chain\n")
    moved = rows_of(pg_url)
    assert {t: n for t, n in rows_of(source).items() if t != "sqlite_sequence"} == {
        t: n for t, n in moved.items() if t != "wardsight_schema"
    }

    again = fleet(tmp_path, "import", "--from", str(dest), env=on_pg)
    one_line_error(again, 1, "the target database is not empty")
    assert rows_of(pg_url) == moved


def test_export_and_import_refusals_are_one_line(tmp_path):
    missing = fleet(tmp_path, "export", "--to", str(tmp_path / "x.jsonl"))
    one_line_error(missing, 1, f"no fleet database at {tmp_path / 'data' / 'fleet.db'}")
    assert not (tmp_path / "data" / "fleet.db").exists()
    sqlite_fleet(tmp_path)
    taken = tmp_path / "taken.jsonl"
    taken.write_text("")
    one_line_error(fleet(tmp_path, "export", "--to", str(taken)), 1, "already exists")
    one_line_error(fleet(tmp_path, "import", "--from", str(taken)), 1, "not a WardSight fleet export")


def test_import_refuses_an_export_whose_audit_chain_was_edited(tmp_path):
    sqlite_fleet(tmp_path)
    dest = tmp_path / "fleet.jsonl"
    assert fleet(tmp_path, "export", "--to", str(dest)).exit_code == 0
    items = [json.loads(line) for line in dest.read_text().splitlines()]
    for item in items:
        if item.get("table") == "audit" and item["row"]["seq"] == 2:
            item["row"]["details"] = "{}"
    dest.write_text("".join(json.dumps(item) + "\n" for item in items))
    target = tmp_path / "target.db"
    config = str(config_for(target, tmp_path))
    assert fleet(tmp_path, "migrate", "--config", config).exit_code == 0
    result = fleet(tmp_path, "import", "--from", str(dest), "--config", config)
    one_line_error(result, 1, "the audit chain does not verify after the import: row contents do not match its hash")
    assert rows_of(target)["audit"] == 0


# ---- the devices ---------------------------------------------------------------------------------------------


async def test_an_enrolled_device_keeps_working_after_its_fleet_moved_to_postgresql(
    aiohttp_client, tmp_path, pg_url, clock
):
    data = tmp_path / "data"
    cheap = dict(password_memory_kib=1024, password_time_cost=1)
    on_sqlite = await aiohttp_client(create_app(ServerConfig(database=data / "fleet.db", **cheap), clock=clock))
    device = await enroll_device(on_sqlite, data / "fleet.db", clock)
    assert (await device.post_event()).status == 201
    await on_sqlite.close()  # the server is stopped for the move

    dest = tmp_path / "fleet.jsonl"
    on_pg = {"WARDSIGHT_SERVER_DATABASE_URL": pg_url}
    for args, env in (
        (["export", "--to", str(dest)], None),
        (["migrate"], on_pg),
        (["import", "--from", str(dest)], on_pg),
    ):
        result = fleet(tmp_path, *args, env=env)
        assert result.exit_code == 0, result.output

    config = ServerConfig(database=data / "fleet.db", database_url=pg_url, **cheap)  # the same keys directory
    on_postgres = await aiohttp_client(create_app(config, clock=clock))
    moved = DeviceSession(on_postgres, device.key, device.device_id)
    moved.credential = device.credential  # the credential the SQLite server issued, not a new one
    resp = await moved.post_event()
    assert resp.status == 201, await resp.text()
    health = build_health(device.device_id, agent_readings(), SystemReadings(), uptime_s=60.0, sent_at=clock.now)
    resp = await moved.send("POST", wire.HEARTBEAT_PATH, health.model_dump_json().encode(), "application/json")
    assert resp.status == 200, await resp.text()
    renewed = await moved.renew()
    assert renewed.status == 200, await renewed.text()

    db = open_database(pg_url)
    try:
        events = db.conn.execute("SELECT COUNT(*) FROM events WHERE device_id = ?", [device.device_id]).fetchone()
        assert events == (2,)
        assert db.conn.execute("SELECT COUNT(*) FROM health_latest").fetchone() == (1,)
    finally:
        db.conn.close()
