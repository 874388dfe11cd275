"""``wardsight fleet migrate``, ``export`` and ``import``: bring the fleet database's schema up to date, and move a
whole fleet to another database (SQLite to PostgreSQL) without re-enrolling a device (:mod:`fleet.store.transfer`).

This module is part of the store, which imports neither the features nor :mod:`fleet.cliconfig`: it reads the
configuration itself, and the checks an import must pass besides its own (the audit chain) come from whoever adds
the commands: ``add_transfer_commands(fleet, checks={"the audit chain": fleet.audit.log.verify})`` in
:mod:`fleet.cli`.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import NoReturn

import click

from fleet.config import load_server_config
from fleet.store import db as store_db
from fleet.store import migrations, pg, transfer
from fleet.store.connection import Connection, Database
from wardsight import clictx
from wardsight.clictx import Context, pass_context
from wardsight.errors import WardSightError

config_option = clictx.config_option("Server config file (TOML; default <data dir>/server.toml if present).")

EXIT_PENDING = 1  # migrate --check: migrations are pending
EXIT_ERROR = 2  # migrate: the database is newer than this server (--check: or cannot be read)


class NewerSchemaError(WardSightError):
    """The database's schema is newer than this server knows (a downgrade)."""


def pending(conn: Connection) -> list[migrations.Migration]:
    """The migrations ``conn``'s database still needs, in order (none is applied); NewerSchemaError for a database
    newer than this server."""
    known = migrations.migrations()
    current = migrations.schema_version(conn)
    if current > len(known):
        raise NewerSchemaError(
            f"the fleet database is at schema version {current}, newer than this server knows ({len(known)}):"
            " run the newer server, or restore a backup made before the upgrade"
        )
    return known[current:]


def _location(ctx: Context, config_path: Path | None) -> Path | str:
    return load_server_config(ctx.data_dir, config_path, ctx.environ).store_location


def _shown(location: Path | str) -> str:
    return pg.redact(location) if isinstance(location, str) else str(location)


def _missing(location: Path | str) -> bool:
    """Whether ``location`` is a SQLite file that does not exist (opening it would create it)."""
    return isinstance(location, Path) and not location.exists()


@contextmanager
def _database(location: Path | str, *, create: bool = False) -> Iterator[Database]:
    """The database at ``location``, not migrated; an existing one unless ``create``. Closed afterwards."""
    if not create and _missing(location):
        raise WardSightError(f"no fleet database at {location}")
    try:
        db = store_db.open_database(location)
    except (sqlite3.DatabaseError, ImportError) as exc:  # (PostgreSQL's errors too; psycopg is an extra)
        raise WardSightError(f"cannot open the fleet database at {_shown(location)}: {exc}") from None
    try:
        yield db
    except sqlite3.DatabaseError as exc:
        raise WardSightError(f"{_shown(location)}: {exc}") from None
    finally:
        db.conn.close()


def _stop(code: int, message: str, *, err: bool = False) -> NoReturn:
    click.echo(message, err=err)
    click.get_current_context().exit(code)


@click.command("migrate")
@click.option(
    "--check",
    is_flag=True,
    help="Apply nothing: exit 0 if up to date, 1 if migrations are pending (named), 2 if the database is newer"
    " than this server or cannot be read.",
)
@config_option
@pass_context
def migrate_command(ctx: Context, check: bool, config_path: Path | None) -> None:
    """Apply the fleet database's pending migrations and say which (the server also applies them as it starts).

    \b
    Example:
        wardsight fleet migrate --check
        WARDSIGHT_SERVER_DATABASE_URL=postgresql://wardsight@db.example/fleet wardsight fleet migrate
    """
    if check:
        _check(ctx, config_path)
    location = _location(ctx, config_path)
    shown = _shown(location)
    with _database(location, create=True) as db:
        try:
            pending(db.conn)
        except NewerSchemaError as exc:
            _stop(EXIT_ERROR, f"Error: {shown}: {exc}", err=True)
        applied = migrations.migrate(db.conn)
    for name in applied:
        click.echo(f"applied {name}")
    click.echo(f"{shown}: {'now' if applied else 'already'} at schema version {len(migrations.migrations())}")


def _check(ctx: Context, config_path: Path | None) -> NoReturn:
    """``migrate --check``: exit 0 (up to date), 1 (migrations pending, named) or 2 (a database newer than this
    server, or no answer: a bad configuration, a database that cannot be read); nothing is applied and a missing
    SQLite file is not created."""
    try:
        location = _location(ctx, config_path)
        shown = _shown(location)
        if _missing(location):
            names = ", ".join(m.name for m in migrations.migrations())
            _stop(EXIT_PENDING, f"{shown}: no fleet database yet; every migration is pending: {names}")
        with _database(location) as db:
            todo = pending(db.conn)
    except NewerSchemaError as exc:
        _stop(EXIT_ERROR, f"Error: {shown}: {exc}", err=True)
    except WardSightError as exc:
        _stop(EXIT_ERROR, f"Error: {exc}", err=True)
    if todo:
        _stop(EXIT_PENDING, f"{shown}: {len(todo)} migration(s) pending: {', '.join(m.name for m in todo)}")
    _stop(0, f"{shown}: up to date (schema version {len(migrations.migrations())})")


@click.command("export")
@click.option(
    "--to",
    "dest",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="The file to write: a new one, mode 0600 (it holds webhook secrets and token hashes).",
)
@config_option
@pass_context
def export_command(ctx: Context, dest: Path, config_path: Path | None) -> None:
    """Write the whole fleet (every table and row, as of one moment) to one file, for 'wardsight fleet import'.

    Stop the server first when moving the fleet: what it writes after the export is not in the file.

    \b
    Example:
        wardsight fleet export --to /var/backups/wardsight/fleet-export.jsonl
    """
    location = _location(ctx, config_path)
    with _database(location) as db:
        try:
            rows = transfer.export_fleet(db, dest, now=time.time())
        except transfer.TransferError as exc:
            raise WardSightError(f"{_shown(location)}: {exc}") from None
    click.echo(
        f"exported {sum(rows.values())} rows of {len(rows)} tables (schema version {transfer.layout().version})"
        f" from {_shown(location)} to {dest}"
    )


def _import_command(checks: Mapping[str, transfer.Check]) -> click.Command:
    @click.command("import")
    @click.option(
        "--from",
        "source",
        required=True,
        type=click.Path(exists=True, dir_okay=False, path_type=Path),
        help="A file written by 'wardsight fleet export'.",
    )
    @config_option
    @pass_context
    def import_command(ctx: Context, source: Path, config_path: Path | None) -> None:
        """Load a 'wardsight fleet export' file into the configured database, which must be new: migrated to the
        export's schema version ('wardsight fleet migrate') and empty. All of it or nothing; never merged.

        Devices keep their keys and credentials: give the server the same keys directory (fleet-keys).

        \b
        Example:
            WARDSIGHT_SERVER_DATABASE_URL=postgresql://wardsight@db.example/fleet wardsight fleet migrate
            WARDSIGHT_SERVER_DATABASE_URL=postgresql://wardsight@db.example/fleet \\
                wardsight fleet import --from fleet-export.jsonl
        """
        location = _location(ctx, config_path)
        with _database(location) as db:
            try:
                rows = transfer.import_fleet(db, source, checks=checks)
            except transfer.TransferError as exc:
                raise WardSightError(f"{_shown(location)}: {exc}") from None
        verified = ", ".join(["every table's rows", *checks])
        click.echo(
            f"imported {sum(rows.values())} rows of {len(rows)} tables into {_shown(location)}; verified: {verified}"
        )

    return import_command


def add_transfer_commands(group: click.Group, *, checks: Mapping[str, transfer.Check]) -> None:
    """Add ``migrate``, ``export`` and ``import`` to ``group`` (``wardsight fleet``); an import must also pass
    ``checks`` (name: check of the imported database) before it commits."""
    for command in (migrate_command, export_command, _import_command(checks)):
        group.add_command(command)
