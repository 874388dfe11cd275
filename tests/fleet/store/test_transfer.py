"""Moving a whole fleet between databases (issue 17, item 4): :func:`fleet.store.transfer.export_fleet` and
:func:`fleet.store.transfer.import_fleet`, on every pair of backends.

The source is a real fleet: the database the server made before migrations were numbered (upgraded in place),
then written to by the server's own code (events with alerts and grouped critical alerts, an acknowledged alert,
webhook deliveries, audit entries) with rows removed in the middle and at the end, so rowids and counters have
gaps. After the move the target must hold the same rows with the same rowids, the audit chain must verify, and
the next numbers given (alert feed, webhook deliveries) must be those the source would have given.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
import urllib.parse
import uuid
from pathlib import Path
from typing import Any

import psycopg
import pytest

from fleet import intake
from fleet.alerts import store as alerts
from fleet.audit import log as audit
from fleet.store import migrations, transfer
from fleet.store.connection import table_columns
from fleet.store.db import FleetDB, open_database
from tests.fleet.helpers import event_for, insert_device
from tests.fleet.test_migrations import OLD_DATABASE

NOW = 1_800_000_000.0
CHECKS: dict[str, transfer.Check] = {"the audit chain": audit.verify}
BACKENDS = ["sqlite", "postgresql"]
LAST_TABLE = transfer.layout().tables[-1]  # (the newest migration's, last in an export's header)

# Each test here puts its databases on the backends it names (both, in turn). The suite's automatic second run of
# fleet tests with every SQLite file made a PostgreSQL schema (tests/conftest.py) would turn their SQLite side into
# another PostgreSQL one, so they opt out of it with the marker that does that.
pytestmark = pytest.mark.sqlite_only


def new_location(request: pytest.FixtureRequest, tmp_path: Path, kind: str, name: str) -> Path | str:
    """An empty database of ``kind``: a SQLite file, or a schema of its own on the session's PostgreSQL."""
    if kind == "sqlite":
        return tmp_path / f"{name}.db"
    return str(request.getfixturevalue("pg_cluster").new_database_url())


def migrated(location: Path | str) -> Path | str:
    FleetDB(location).close()
    return location


def write_like_the_server(location: Path | str, start: float) -> None:
    """Events (info, warning, two critical falls that group), an acknowledged alert, webhook deliveries and audit
    entries, through the server's own code; then rows removed in the middle and at the end."""
    fleet = FleetDB(location)
    try:
        db = fleet.db
        device_id = db.conn.execute("SELECT id FROM devices ORDER BY id LIMIT 1").fetchone()[0]
        db.conn.execute(
            "INSERT INTO webhook_endpoints (name, url, format, hmac_secret, apps, created_at, created_by)"
            " VALUES (?, 'https://siem.example/hook', 'standard', 'whsec_c2VjcmV0', '[]', ?, 'alice')",
            [f"siem-{start}", start],
        )
        kinds = [("occupancy", "count_changed", "info"), ("mask", "mask_missing", "warning")]
        kinds += [("fall", "fall_detected", "critical")] * 2 + [("occupancy", "count_changed", "info")] * 3
        events = [event_for(device_id, app=a, type=t, severity=s, time=start + i) for i, (a, t, s) in enumerate(kinds)]
        for i, event in enumerate(events):
            assert intake.store(fleet, event, start + i)
        alerts.change_state(db, events[1].event_id, "acknowledged", actor="user:alice", now=start + 10, note="seen")
        audit.record(db, actor="cli:root", action="device.approve", target=f"device:{device_id}", now=start + 11)
        db.conn.execute("DELETE FROM events WHERE event_id = ?", [events[4].event_id])  # a gap in the middle
        db.conn.execute("DELETE FROM webhook_deliveries WHERE id = (SELECT MAX(id) FROM webhook_deliveries)")
        db.conn.execute("DELETE FROM proof_jti WHERE jti = (SELECT MIN(jti) FROM proof_jti)")
    finally:
        fleet.close()


def make_fleet(request: pytest.FixtureRequest, tmp_path: Path, kind: str) -> Path | str:
    """A fleet with history on ``kind``: the old database upgraded and written to; on PostgreSQL moved there and
    written to again."""
    path = tmp_path / "old.db"
    shutil.copyfile(OLD_DATABASE, path)
    write_like_the_server(migrated(path), NOW)
    if kind == "sqlite":
        return path
    url = migrated(new_location(request, tmp_path, kind, "source"))
    export_to(path, tmp_path / "first.jsonl")
    import_from(url, tmp_path / "first.jsonl")
    write_like_the_server(url, NOW + 100)
    return url


def export_to(location: Path | str, dest: Path) -> dict[str, int]:
    db = open_database(location)
    try:
        return transfer.export_fleet(db, dest, now=NOW)
    finally:
        db.conn.close()


def import_from(location: Path | str, source: Path, checks: dict[str, transfer.Check] = CHECKS) -> dict[str, int]:
    db = open_database(location)
    try:
        return transfer.import_fleet(db, source, checks=checks)
    finally:
        db.conn.close()


def dump(location: Path | str) -> dict[str, list[dict[str, Any]]]:
    """Every row of every fleet table with its rowid, in rowid order, columns by name."""
    db = open_database(location)
    try:
        found = {}
        for table in transfer.layout().tables:
            columns = sorted(table_columns(db.conn, table))
            sql = f"SELECT rowid AS rowid, {', '.join(columns)} FROM {table} ORDER BY rowid"  # noqa: S608
            found[table] = list(db.query(sql))
        return found
    finally:
        db.conn.close()


def next_numbers(location: Path | str) -> tuple[int, int, int]:
    """What the server gives a new alert: (its alert feed seq, its webhook delivery id, its event's rowid)."""
    fleet = FleetDB(location)
    try:
        device_id = fleet.db.conn.execute("SELECT id FROM devices ORDER BY id LIMIT 1").fetchone()[0]
        event = event_for(device_id, app="mask", type="mask_missing", severity="warning")
        assert intake.store(fleet, event, NOW + 500)
        conn = fleet.db.conn
        seq = conn.execute("SELECT seq FROM alert_feed WHERE event_id = ?", [event.event_id]).fetchone()[0]
        delivery = conn.execute("SELECT id FROM webhook_deliveries WHERE event_id = ?", [event.event_id]).fetchone()
        rowid = conn.execute("SELECT rowid AS rowid FROM events WHERE event_id = ?", [event.event_id]).fetchone()[0]
        return seq, delivery[0], rowid
    finally:
        fleet.close()


def read_lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def write_lines(path: Path, items: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(item) + "\n" for item in items))
    return path


# ---- the tables and their order -----------------------------------------------------------------------------


def test_the_layout_lists_every_table_the_migrations_make_parents_first(tmp_path):
    plan = transfer.layout()
    db = open_database(migrated(tmp_path / "fresh.db"))
    try:
        assert set(plan.tables) == set(db.table_names()) - {"sqlite_sequence"}
        assert plan.version == len(migrations.migrations()) == migrations.schema_version(db.conn)
        for child in plan.tables:
            for parent in {row[2] for row in db.conn.execute(f"PRAGMA foreign_key_list({child})")} - {child}:
                assert plan.tables.index(parent) < plan.tables.index(child), f"{parent} must come before {child}"
    finally:
        db.conn.close()
    assert plan.tables.index("events") < plan.tables.index("alert_feed") < plan.tables.index("alert_members")
    assert plan.seeds["audit_counter"] == ('{"name":"audit","seq":0}',)  # a fresh database is "empty" with it
    assert not any(plan.seeds[t] for t in plan.tables if t != "audit_counter")


def test_values_round_trip_through_the_file_bytes_included():
    for value in (None, 0, -7, 2**62, 1.5, 1800000000.0, float("inf"), "", "zwölf \u2603", b"\x00\xffbin"):
        encoded = json.loads(json.dumps(transfer._encode(value)))
        assert transfer._decode(encoded, "here") == value
        assert type(transfer._decode(encoded, "here")) is type(value)
    assert transfer._encode(b"\x00\xff") == {"$base64": "AP8="}
    for bad in (True, [1], {"other": "x"}, {"$base64": 5}):
        with pytest.raises(transfer.TransferError, match="here"):
            transfer._decode(bad, "here")


# ---- the move, on every pair of backends -------------------------------------------------------------------


@pytest.mark.parametrize("source_kind", BACKENDS)
@pytest.mark.parametrize("target_kind", BACKENDS)
def test_a_fleet_moves_with_every_row_rowid_and_counter(request, tmp_path, source_kind, target_kind):
    source = make_fleet(request, tmp_path, source_kind)
    target = migrated(new_location(request, tmp_path, target_kind, "target"))
    before = dump(source)
    assert len(before["alert_feed"]) >= 4 and before["webhook_deliveries"] and before["alert_members"]

    exported = export_to(source, tmp_path / "fleet.jsonl")
    imported = import_from(target, tmp_path / "fleet.jsonl")

    assert exported == imported == {table: len(rows) for table, rows in before.items()}
    assert dump(target) == before  # same rows, same rowids (the alert feed's trigger made no extra ones)
    db = open_database(target)
    try:
        assert audit.verify(db).ok and audit.verify(db).checked == len(before["audit"])
    finally:
        db.conn.close()
    seq, delivery, rowid = next_numbers(target)
    assert (seq, delivery) == next_numbers(source)[:2]  # numbers removed at the end are not given again
    assert rowid > max(row["rowid"] for row in before["events"])


def test_an_empty_fleet_moves_and_the_target_numbers_from_one(fleet_location, tmp_path):
    source = migrated(tmp_path / "empty.db")
    assert export_to(source, tmp_path / "empty.jsonl") == dict.fromkeys(transfer.layout().tables, 0) | {
        "audit_counter": 1
    }
    import_from(migrated(fleet_location), tmp_path / "empty.jsonl")
    assert_still_empty(fleet_location)
    fleet = FleetDB(fleet_location)
    try:
        insert_device(fleet, "dev-1")
        event = event_for("dev-1", app="mask", type="mask_missing", severity="warning")
        assert intake.store(fleet, event, NOW)
        assert fleet.db.conn.execute("SELECT seq FROM alert_feed").fetchall() == [(1,)]
        assert audit.record(fleet.db, actor="system", action="x", target="y", now=NOW) == 1
    finally:
        fleet.close()


def test_the_file_is_owner_only_and_lists_its_tables_first(request, tmp_path):
    source = make_fleet(request, tmp_path, "sqlite")
    dest = tmp_path / "fleet.jsonl"
    counts = export_to(source, dest)
    assert dest.stat().st_mode & 0o777 == 0o600
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temporary file left
    header, *rows = read_lines(dest)
    assert header["format"] == "wardsight-fleet-export" and header["format_version"] == 1
    assert header["schema_version"] == len(migrations.migrations())
    assert [t["name"] for t in header["tables"]] == list(transfer.layout().tables)
    assert "wardsight_schema" not in counts and not any(t.startswith("sqlite_") for t in counts)
    assert {t["name"]: t["rows"] for t in header["tables"]} == counts
    assert len(rows) == sum(counts.values()) and all(set(r) == {"table", "row"} for r in rows)
    feed = [r["row"] for r in rows if r["table"] == "alert_feed"]
    assert all(row["rowid"] == row["seq"] for row in feed)  # an INTEGER PRIMARY KEY is the rowid
    endpoint = next(r["row"] for r in rows if r["table"] == "webhook_endpoints" and r["row"]["name"] == f"siem-{NOW}")
    assert endpoint["hmac_secret"] == "whsec_c2VjcmV0"
    deliveries = next(t for t in header["tables"] if t["name"] == "webhook_deliveries")
    assert deliveries["sequence"] > max(r["row"]["id"] for r in rows if r["table"] == "webhook_deliveries")


def test_an_export_never_overwrites_a_file(request, tmp_path):
    source = make_fleet(request, tmp_path, "sqlite")
    dest = tmp_path / "fleet.jsonl"
    dest.write_text("keep me")
    with pytest.raises(transfer.TransferError, match="already exists"):
        export_to(source, dest)
    assert dest.read_text() == "keep me"


def test_an_export_of_a_database_behind_this_server_is_refused(tmp_path):
    path = tmp_path / "old.db"
    shutil.copyfile(OLD_DATABASE, path)  # schema version 0: never opened by a numbered server
    with pytest.raises(transfer.TransferError, match="schema version 0.*wardsight fleet migrate"):
        export_to(path, tmp_path / "fleet.jsonl")
    assert not (tmp_path / "fleet.jsonl").exists()


# ---- what an import refuses, leaving the target as it was --------------------------------------------------


@pytest.fixture
def exported(request, tmp_path) -> Path:
    dest = tmp_path / "fleet.jsonl"
    export_to(make_fleet(request, tmp_path, "sqlite"), dest)
    return dest


def assert_still_empty(location: Path | str) -> None:
    rows = dump(location)
    assert {t: len(r) for t, r in rows.items() if r} == {"audit_counter": 1}
    assert rows["audit_counter"][0]["seq"] == 0


def test_an_import_into_a_database_with_rows_is_refused(fleet_location, exported):
    fleet = FleetDB(fleet_location)
    fleet.db.conn.execute("UPDATE audit_counter SET seq = 3")  # a single changed number is not empty either
    fleet.close()
    with pytest.raises(transfer.TransferError, match=r"not empty \(audit_counter \(1 rows\)\).*never merges"):
        import_from(fleet_location, exported)
    assert dump(fleet_location)["audit_counter"][0]["seq"] == 3


def test_an_import_into_an_unmigrated_database_says_to_migrate_it_first(fleet_location, exported):
    with pytest.raises(transfer.TransferError, match="schema version 0.*'wardsight fleet migrate'"):
        import_from(fleet_location, exported)


def test_an_import_whose_audit_chain_does_not_verify_leaves_nothing(fleet_location, exported):
    items = read_lines(exported)
    entry = next(item for item in items if item.get("table") == "audit" if item["row"]["seq"] == 3)
    entry["row"]["actor"] = "user:mallory"
    target = migrated(fleet_location)
    with pytest.raises(transfer.TransferError, match="the audit chain does not verify.*row contents"):
        import_from(target, write_lines(exported, items))
    assert_still_empty(target)
    import_from(target, exported, checks={})  # the check is what refused it: without it, the same file goes in


def test_a_cut_off_export_is_refused_and_leaves_nothing(fleet_location, exported):
    lines = exported.read_text().splitlines(keepends=True)
    exported.write_text("".join(lines[:-3]))
    target = migrated(fleet_location)
    with pytest.raises(transfer.TransferError, match=r"holds \d+ rows after the import, the export says \d+"):
        import_from(target, exported)
    assert_still_empty(target)
    exported.write_text("".join(lines[:-1]) + lines[-1][:20])
    with pytest.raises(transfer.TransferError, match=f"line {len(lines)} is not JSON"):
        import_from(target, exported)
    assert_still_empty(target)


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda items: items.insert(1, items.pop()), "after rows of a later table"),
        (lambda items: items[3].update(table="sqlite_sequence"), "not a row of a table the export's header lists"),
        (lambda items: items[3]["row"].pop("rowid"), "without exactly the header's columns"),
        (lambda items: items[4]["row"].update(rowid=items[3]["row"]["rowid"]), "database refused the import"),
        (lambda items: items[0].update(format_version=2), "format version 2: this server reads only 1"),
        (lambda items: items[0].update(schema_version=99), "the export is at schema version 99.*newer server"),
        (lambda items: items[0]["tables"].pop(), f"tables are not this schema's: \\['{LAST_TABLE}'\\]"),
        (lambda items: items.pop(0), "not a WardSight fleet export"),
    ],
)
def test_a_damaged_or_foreign_file_is_refused_and_leaves_nothing(tmp_path, exported, change, message):
    items = read_lines(exported)
    assert items[3]["table"] == items[4]["table"] == "proof_jti"
    change(items)
    target = migrated(tmp_path / "target.db")
    with pytest.raises(transfer.TransferError, match=message):
        import_from(target, write_lines(tmp_path / "changed.jsonl", items))
    assert_still_empty(target)


def test_a_value_postgresql_would_round_is_refused_not_rounded(pg_url, exported):
    items = read_lines(exported)
    endpoint = next(item for item in items if item.get("table") == "webhook_endpoints")
    endpoint["row"]["consecutive_failures"] = 1.5  # SQLite keeps 1.5 in an INTEGER column; BIGINT would hold 2
    target = migrated(pg_url)
    with pytest.raises(transfer.TransferError, match="webhook_endpoints does not hold exactly the exported rows"):
        import_from(target, write_lines(exported, items))
    assert_still_empty(target)


# ---- PostgreSQL without a superuser --------------------------------------------------------------------------


def test_the_owner_of_a_postgresql_schema_imports_without_being_a_superuser(pg_cluster, tmp_path, exported):
    """Triggers stay on (no ``session_replication_role``, no ``ALTER TABLE``): an ordinary role can import."""
    role = f"importer_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(pg_cluster.url, autocommit=True) as admin:
        admin.execute(f"CREATE ROLE {role} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE")
        admin.execute(f"CREATE SCHEMA {role} AUTHORIZATION {role}")
    parts = urllib.parse.urlsplit(pg_cluster.url)
    options = urllib.parse.quote(f"-csearch_path={role}")
    url = urllib.parse.urlunsplit(
        parts._replace(netloc=f"{role}@{parts.hostname}:{parts.port}", query=f"options={options}")
    )
    target = migrated(url)
    db = open_database(url)
    try:
        assert db.conn.execute("SELECT rolsuper FROM pg_roles WHERE rolname = current_user").fetchone() == (0,)
    finally:
        db.conn.close()
    before = dump(tmp_path / "old.db")
    import_from(target, exported)
    assert dump(target) == before


def test_sqlite_errors_are_the_ones_postgresql_raises_too():
    """The import turns a refused statement into a TransferError by catching sqlite3.DatabaseError: PostgreSQL's
    errors must be its subclasses (fleet.store.pg)."""
    from fleet.store import pg

    assert issubclass(pg.PgIntegrityError, sqlite3.DatabaseError)
    assert issubclass(pg.PgDatabaseError, sqlite3.DatabaseError)
