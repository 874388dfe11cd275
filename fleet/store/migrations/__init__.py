"""The fleet database's schema, as numbered migrations: ``mNNNN_<what>.py``, each with ``apply(conn)``.

``PRAGMA user_version`` (on PostgreSQL the one row of ``wardsight_schema``) holds the number of the last migration
applied; opening a database applies the ones
after it, in order, each in its own write transaction with the version bump, so a fleet upgrades in place and a
migration that fails leaves the database as it was. The version is read again inside that transaction (BEGIN
IMMEDIATE), so two processes opening the database at once (a ``wardsight fleet`` command next to a starting
server) apply each migration once. Migrations 1 to 12 are the baseline of 2026-12-07, the
schema the server had before migrations were numbered: they are idempotent (``IF NOT EXISTS``, columns added
only when missing), so a database made by that server (``user_version`` 0) upgrades like an empty one. A new
migration is a new file with the next number; a migration, once released, is never edited.
"""

from __future__ import annotations

import importlib
import logging
import pkgutil
import re
from collections.abc import Callable
from dataclasses import dataclass

from fleet.store.connection import Connection, is_postgres
from fleet.store.schema import transaction

log = logging.getLogger("wardsight.fleet.store")

_NAME = re.compile(r"^m(\d{4})_[a-z0-9_]+$")


@dataclass(frozen=True)
class Migration:
    number: int
    name: str
    apply: Callable[[Connection], None]


def migrations() -> list[Migration]:
    """Every migration in this package, in order (ValueError for a gap or a duplicate number)."""
    found = []
    for info in pkgutil.iter_modules(__path__):
        match = _NAME.match(info.name)
        if match:
            module = importlib.import_module(f"{__name__}.{info.name}")
            found.append(Migration(int(match.group(1)), info.name, module.apply))
    found.sort(key=lambda m: m.number)
    numbers = [m.number for m in found]
    if numbers != list(range(1, len(found) + 1)):
        raise ValueError(f"migrations must be numbered 1, 2, 3, ... without gaps: {numbers}")
    return found


def schema_version(conn: Connection) -> int:
    if is_postgres(conn):
        conn.execute("CREATE TABLE IF NOT EXISTS wardsight_schema (version BIGINT NOT NULL)")
        row = conn.execute("SELECT version FROM wardsight_schema").fetchone()
        return int(row[0]) if row else 0
    return int(conn.execute("PRAGMA user_version").fetchone()[0])


def _set_version(conn: Connection, number: int) -> None:
    if is_postgres(conn):
        conn.execute("DELETE FROM wardsight_schema")
        conn.execute("INSERT INTO wardsight_schema (version) VALUES (?)", [number])
    else:
        conn.execute(f"PRAGMA user_version = {int(number)}")


def migrate(conn: Connection) -> list[str]:
    """Apply the migrations after the database's ``user_version``; return the names applied. A database newer
    than this server (a downgrade) is refused, since this code does not know its schema."""
    known = migrations()
    with transaction(conn):  # (PostgreSQL: the version table is created under the write lock)
        current = schema_version(conn)
    if current > len(known):
        raise RuntimeError(
            f"the fleet database is at schema version {current}, newer than this server knows ({len(known)}):"
            " run the newer server, or restore a backup made before the upgrade"
        )
    applied = []
    for migration in known[current:]:
        with transaction(conn):  # BEGIN IMMEDIATE: one process at a time (a CLI next to a starting server)
            if schema_version(conn) >= migration.number:
                continue  # another process applied it since we looked
            migration.apply(conn)
            _set_version(conn, migration.number)
        applied.append(migration.name)
    if applied and current:
        log.info("fleet database upgraded from schema version %d to %d", current, len(known))
    return applied
