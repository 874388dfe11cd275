"""Moving a whole fleet between databases (SQLite to PostgreSQL, or either to either) without re-enrolling a
device: :func:`export_fleet` writes it as one JSON-lines file, :func:`import_fleet` loads that into a freshly
migrated, empty database.

The file: a header line ``{"format": "wardsight-fleet-export", "format_version": 1, "schema_version": N, "tables":
[{"name", "columns", "rows", "sequence"}, ...]}``, then a line ``{"table": ..., "row": {...}}`` per row, parents'
tables first. Each row has its ``rowid`` (the alert feed, event paging and job batches order by it), a BLOB is
``{"$base64": "..."}``, and ``sequence`` is the last number the table's counter gave (``sqlite_sequence``, an
identity's sequence), never given twice. The file holds webhook secrets and token hashes: it is made 0600, as a
temporary file renamed into place. Tables: those the migrations make (not ``wardsight_schema`` or SQLite's own), in
foreign-key order from a fresh in-memory migration (:func:`layout`). An export is one read snapshot; an import one
write transaction: anything wrong and nothing stays.

Triggers stay on: ``SET session_replication_role = replica`` needs a superuser, ``ALTER TABLE ... DISABLE TRIGGER``
the tables' owner and a schema change, and SQLite cannot disable them without dropping them. Instead each table is
cleared right before its rows go in: the target was checked empty, so it can then only hold rows that the AFTER
INSERT triggers of tables inserted before it made (an alert-severity event adds an ``alert_feed`` row, migration 8),
and the export has those rows already. (The append-only tables' triggers refuse UPDATE and DELETE of rows; none
of them gets any before its turn.) Then every table is read back and must hold exactly the exported rows (count and
a digest of the values, types included), the caller's ``checks`` (the audit chain) must pass, and each counter is
set past the highest number given (``setval``; ``sqlite_sequence`` for AUTOINCREMENT tables).
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import functools
import hashlib
import json
import os
import sqlite3
import tempfile
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Protocol

from fleet.store import migrations
from fleet.store.connection import Connection, Database, is_postgres, table_columns
from fleet.store.schema import transaction

FORMAT = "wardsight-fleet-export"
FORMAT_VERSION = 1
BYTES_MARK = "$base64"  # a BLOB value, as {"$base64": "<standard base64>"}
PAGE_ROWS = 1000  # rows read per statement
INSERT_ROWS = 100  # rows written per INSERT statement
_DIGEST_MOD = 1 << 256


class TransferError(Exception):
    """An export or import refused: one line saying why (nothing was written)."""


class Verdict(Protocol):
    """What a check after an import returns (:class:`fleet.audit.log.VerifyResult` is one)."""

    @property
    def ok(self) -> bool: ...

    @property
    def reason(self) -> str | None: ...


Check = Callable[[Database], Verdict]


@dataclass(frozen=True)
class Layout:
    """The migrations' tables, parents first, and the rows a fresh migration gives them (``audit_counter``'s)."""

    version: int
    tables: tuple[str, ...]
    seeds: Mapping[str, tuple[str, ...]]


@dataclass(frozen=True)
class Table:
    """One table of an export: its columns, how many rows and its counter's last number (if it has one)."""

    name: str
    columns: tuple[str, ...]
    rows: int
    sequence: int | None


@functools.cache
def layout() -> Layout:
    """The :class:`Layout` of this server's migrations (from a throwaway in-memory SQLite database)."""
    conn = sqlite3.connect(":memory:", isolation_level=None)
    try:
        migrations.migrate(conn)
        names = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY rowid")]
        names = [n for n in names if not n.startswith("sqlite_")]
        parents = {n: {r[2] for r in conn.execute(f"PRAGMA foreign_key_list({n})")} & set(names) - {n} for n in names}
        ordered: list[str] = []
        while len(ordered) < len(names):
            ready = [n for n in names if n not in ordered and parents[n] <= set(ordered)]
            if not ready:
                raise RuntimeError(f"the tables' foreign keys form a cycle: {sorted(set(names) - set(ordered))}")
            ordered.append(ready[0])  # the first made of those whose parents are in: creation order otherwise
        seeds = {n: _content(conn, n) for n in names}
        return Layout(migrations.schema_version(conn), tuple(ordered), seeds)
    finally:
        conn.close()


def _content(conn: Connection, table: str) -> tuple[str, ...]:
    cur = conn.execute(f"SELECT * FROM {table}")  # noqa: S608 - a table the migrations made
    names = [d[0] for d in cur.description]
    return tuple(sorted(_canonical(dict(zip(names, row, strict=True))) for row in cur))


def _canonical(row: Mapping[str, Any]) -> str:
    return json.dumps({k: _encode(v) for k, v in row.items()}, sort_keys=True, separators=(",", ":"))


def _encode(value: Any) -> Any:
    if isinstance(value, bytes | bytearray | memoryview):
        return {BYTES_MARK: base64.b64encode(bytes(value)).decode("ascii")}
    return value


def _decode(value: Any, where: str) -> Any:
    if isinstance(value, dict) and set(value) == {BYTES_MARK} and isinstance(value[BYTES_MARK], str):
        return base64.b64decode(value[BYTES_MARK], validate=True)
    if value is None or (isinstance(value, str | int | float) and not isinstance(value, bool)):
        return value
    raise TransferError(f"{where}: {value!r} is not a stored value")


def _row_digest(row: Mapping[str, Any]) -> int:
    return int.from_bytes(hashlib.sha256(_canonical(row).encode()).digest(), "big")


def key_column(conn: Connection, table: str) -> str:
    """The column that holds ``table``'s rowid: its integer primary key if it has one (SQLite's alias; the identity
    column on PostgreSQL, where ``rowid`` is then a generated copy), else ``rowid`` itself."""
    if is_postgres(conn):
        rows = conn.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_schema = current_schema()"
            " AND table_name = ? AND is_identity = 'YES'",
            [table],
        ).fetchall()
        if len(rows) != 1:
            raise TransferError(f"table {table} has no single identity column: not made by the fleet's migrations")
        return str(rows[0][0])
    keys = [r for r in conn.execute(f"PRAGMA table_info({table})") if r[5]]
    return str(keys[0][1]) if len(keys) == 1 and str(keys[0][2]).upper() == "INTEGER" else "rowid"


def _sequence(conn: Connection, table: str, key: str) -> int | None:
    """The last number ``table``'s counter gave, if it keeps one (None: never, or no counter)."""
    if is_postgres(conn):
        sql = "SELECT pg_sequence_last_value(pg_get_serial_sequence(?, ?)::regclass)"
        value = conn.execute(sql, [table, key]).fetchone()[0]
        return None if value is None else int(value)
    auto = _autoincrement(conn, table)
    row = auto and conn.execute("SELECT seq FROM sqlite_sequence WHERE name = ?", [table]).fetchone()
    return int(row[0]) if row else None


def _autoincrement(conn: Connection, table: str) -> bool:
    row = conn.execute("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = ?", [table]).fetchone()
    return row is not None and "AUTOINCREMENT" in str(row[0]).upper()


def _rows(conn: Connection, table: str, columns: Sequence[str], key: str) -> Iterator[dict[str, Any]]:
    """Every row of ``table`` with its rowid, in rowid order, a page at a time."""
    names = ["rowid", *columns]
    select = f"SELECT rowid AS rowid, {', '.join(columns)} FROM {table}"  # noqa: S608 - the schema's names
    after: Any = None
    while True:
        if after is None:
            page = conn.execute(f"{select} ORDER BY {key} LIMIT ?", [PAGE_ROWS]).fetchall()
        else:
            page = conn.execute(f"{select} WHERE {key} > ? ORDER BY {key} LIMIT ?", [after, PAGE_ROWS]).fetchall()
        for values in page:
            yield dict(zip(names, values, strict=True))
        if len(page) < PAGE_ROWS:
            return
        after = page[-1][0]  # the rowid, which is the key's value too


def _check_version(what: str, version: int, plan: Layout) -> None:
    if version != plan.version:
        raise TransferError(
            f"{what} is at schema version {version}, this server's is {plan.version}:"
            + (" run 'wardsight fleet migrate' on it first" if version < plan.version else " use the newer server")
        )


def export_fleet(db: Database, dest: Path, *, now: float) -> dict[str, int]:
    """Write every row of the fleet in ``db`` (at this server's schema version) to ``dest``, a new 0600 file, as of
    one moment; return each table's number of rows."""
    conn, plan = db.conn, layout()
    _check_version("the fleet database", migrations.schema_version(conn), plan)
    if dest.exists():
        raise TransferError(f"{dest} already exists: choose a new file (an export never overwrites one)")
    # A read transaction: every read sees the database as it was at the first one (the server may go on writing).
    conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY" if is_postgres(conn) else "BEGIN")
    try:
        keys = {name: key_column(conn, name) for name in plan.tables}
        tables = [_describe(conn, name, keys[name]) for name in plan.tables]
        header = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "schema_version": plan.version,
            "exported_at": now,
            "source": "postgresql" if is_postgres(conn) else "sqlite",
            "tables": [dataclasses.asdict(t) for t in tables],
        }
        _write_private(dest, _export_lines(conn, header, tables, keys))
    finally:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
    return {t.name: t.rows for t in tables}


def _describe(conn: Connection, name: str, key: str) -> Table:
    columns = tuple(table_columns(conn, name))
    if not columns:
        raise TransferError(f"the fleet database has no table {name}")
    count = int(conn.execute(f"SELECT COUNT(*) FROM {name}").fetchone()[0])  # noqa: S608 - the schema's names
    return Table(name, columns, count, _sequence(conn, name, key))


def _export_lines(conn: Connection, header: dict[str, Any], tables: list[Table], keys: dict[str, str]) -> Iterator[str]:
    yield json.dumps(header, separators=(",", ":"))
    for table in tables:
        for row in _rows(conn, table.name, table.columns, keys[table.name]):
            yield json.dumps(
                {"table": table.name, "row": {k: _encode(v) for k, v in row.items()}}, separators=(",", ":")
            )


def _write_private(dest: Path, lines: Iterable[str]) -> None:
    """``lines`` into ``dest``: a 0600 temporary file next to it, flushed to disk, then renamed over."""
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".partial", dir=dest.parent)
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            for line in lines:
                out.write(line + "\n")
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, dest)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def read_header(line: str, plan: Layout) -> list[Table]:
    """The tables an export's first line lists, in ``plan``'s order (TransferError if it is not one of ours)."""
    try:
        header = json.loads(line)
    except ValueError:
        header = None
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise TransferError("not a WardSight fleet export (its first line is not the export's header)")
    if header.get("format_version") != FORMAT_VERSION:
        raise TransferError(f"export format version {header.get('format_version')!r}: this server reads only 1")
    version = header.get("schema_version")
    if not isinstance(version, int):
        raise TransferError("the export's header has no schema version")
    _check_version("the export", version, plan)
    try:
        listed = [(t["name"], t["columns"], t["rows"], t["sequence"]) for t in header["tables"]]
        tables = {
            str(n): Table(str(n), tuple(map(str, c)), int(r), None if q is None else int(q)) for n, c, r, q in listed
        }
    except (KeyError, TypeError, ValueError):
        raise TransferError("the export's header has a malformed table list") from None
    if set(tables) != set(plan.tables):
        raise TransferError(f"the export's tables are not this schema's: {sorted(set(tables) ^ set(plan.tables))}")
    return [tables[name] for name in plan.tables]


def import_fleet(db: Database, source: Path, *, checks: Mapping[str, Check] | None = None) -> dict[str, int]:
    """Load the export at ``source`` into ``db`` (at its schema version, empty: never merged) in one transaction,
    keeping every rowid; read it all back and run ``checks`` (name: check) before committing. Rows per table."""
    conn, plan = db.conn, layout()
    with source.open(encoding="utf-8") as lines:
        tables = read_header(lines.readline(), plan)
        _check_version("the target database", migrations.schema_version(conn), plan)
        try:
            with transaction(conn):
                _check_empty(conn, plan)
                keys = {t.name: _import_key(conn, t) for t in tables}
                digests = _insert_all(conn, lines, tables, keys)
                for table in tables:
                    _verify_table(conn, table, keys[table.name], digests[table.name])
                for name, check in (checks or {}).items():
                    verdict = check(db)
                    if not verdict.ok:
                        raise TransferError(f"{name} does not verify after the import: {verdict.reason}")
                for table in tables:
                    _restore_sequence(conn, table, keys[table.name])
        except sqlite3.DatabaseError as exc:  # (PostgreSQL's errors are subclasses: fleet.store.pg)
            raise TransferError(f"the database refused the import, so nothing was imported: {exc}") from exc
    return {t.name: t.rows for t in tables}


def _check_empty(conn: Connection, plan: Layout) -> None:
    busy = []
    for name in plan.tables:
        count = int(conn.execute(f"SELECT COUNT(*) FROM {name}").fetchone()[0])  # noqa: S608 - the schema's names
        if count > len(plan.seeds[name]) or (count and _content(conn, name) != plan.seeds[name]):
            busy.append(f"{name} ({count} rows)")
    if busy:
        msg = f"the target database is not empty ({', '.join(busy)}): import only into a new, migrated database"
        raise TransferError(msg + " (an import never merges)")


def _import_key(conn: Connection, table: Table) -> str:
    have = table_columns(conn, table.name)
    if set(have) != set(table.columns) or len(have) != len(table.columns):
        raise TransferError(f"table {table.name}'s columns here are not the export's: {sorted(have)}")
    return key_column(conn, table.name)


def _insert_all(conn: Connection, lines: IO[str], tables: list[Table], keys: dict[str, str]) -> dict[str, int]:
    """Insert the rows after the header, table by table in ``tables``' order; return each table's digest."""
    at = {t.name: i for i, t in enumerate(tables)}
    digests = dict.fromkeys(at, 0)
    batch: list[dict[str, Any]] = []
    current = -1
    for number, line in enumerate(lines, start=2):
        name, row = _parse_row(line, number, at, tables)
        if at[name] < current:
            raise TransferError(f"line {number}: a row of {name} after rows of a later table (not an export's order)")
        if at[name] > current:
            _insert(conn, tables[current], keys, batch)
            for skipped in tables[current + 1 : at[name] + 1]:
                _clear(conn, skipped.name)  # rows triggers made on the way (they are in the export)
            current = at[name]
        digests[name] = (digests[name] + _row_digest(row)) % _DIGEST_MOD
        batch.append(row)
        if len(batch) >= INSERT_ROWS:
            _insert(conn, tables[current], keys, batch)
    _insert(conn, tables[current], keys, batch)
    for rest in tables[current + 1 :]:
        _clear(conn, rest.name)
    return digests


def _parse_row(line: str, number: int, at: Mapping[str, int], tables: list[Table]) -> tuple[str, dict[str, Any]]:
    try:
        item = json.loads(line)
    except ValueError:
        raise TransferError(f"line {number} is not JSON (a damaged or cut-off export)") from None
    name = item.get("table") if isinstance(item, dict) else None
    row = item.get("row") if isinstance(item, dict) else None
    if not isinstance(name, str) or name not in at or not isinstance(row, dict):
        raise TransferError(f"line {number} is not a row of a table the export's header lists")
    if set(row) != {"rowid", *tables[at[name]].columns} or not isinstance(row["rowid"], int):
        raise TransferError(f"line {number}: a row of {name} without exactly the header's columns and its rowid")
    return name, {k: _decode(v, f"line {number}, {name}.{k}") for k, v in row.items()}


def _clear(conn: Connection, table: str) -> None:
    if conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]:  # noqa: S608 - the schema's names
        conn.execute(f"DELETE FROM {table}")  # noqa: S608


def _insert(conn: Connection, table: Table, keys: Mapping[str, str], batch: list[dict[str, Any]]) -> None:
    """Insert and empty ``batch``; the rowid goes in itself unless the integer primary key holds it."""
    if not batch:
        return
    names = list(table.columns) + (["rowid"] if keys[table.name] == "rowid" else [])
    marks = "(" + ", ".join("?" for _ in names) + ")"
    sql = f"INSERT INTO {table.name} ({', '.join(names)}) VALUES {', '.join([marks] * len(batch))}"  # noqa: S608
    conn.execute(sql, [row[n] for row in batch for n in names])
    batch.clear()


def _verify_table(conn: Connection, table: Table, key: str, digest: int) -> None:
    count, found = 0, 0
    for row in _rows(conn, table.name, table.columns, key):
        count += 1
        found = (found + _row_digest(row)) % _DIGEST_MOD
    if count != table.rows:
        raise TransferError(f"table {table.name} holds {count} rows after the import, the export says {table.rows}")
    if found != digest:
        raise TransferError(f"table {table.name} does not hold exactly the exported rows after the import")


def _restore_sequence(conn: Connection, table: Table, key: str) -> None:
    """Set the table's counter past both its highest number now and the last one the source gave."""
    top = conn.execute(f"SELECT MAX({key}) FROM {table.name}").fetchone()[0]  # noqa: S608 - the schema's names
    mark = max(int(top or 0), int(table.sequence or 0))
    if is_postgres(conn):
        called = "true" if mark > 0 else "false"  # false: the next number is 1 itself
        conn.execute(f"SELECT setval(pg_get_serial_sequence(?, ?), ?, {called})", [table.name, key, max(mark, 1)])
    elif _autoincrement(conn, table.name):  # (other tables reuse the numbers after the highest, as SQLite does)
        conn.execute("DELETE FROM sqlite_sequence WHERE name = ?", [table.name])
        conn.execute("INSERT INTO sqlite_sequence (name, seq) VALUES (?, ?)", [table.name, mark])
