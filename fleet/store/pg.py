"""The fleet database on PostgreSQL (psycopg 3), behind the same small connection surface the SQLite store uses.

The store and the features talk to their database through a DB-API connection (``execute`` returning a cursor,
``in_transaction``, ``close``) and a sqlite-utils style ``Database`` (``query``, ``execute``, ``table_names``).
:class:`PgConnection` and :class:`PgDatabase` are those on PostgreSQL: statements are translated from the store's
SQLite dialect (:mod:`fleet.store.sqltext`, :mod:`fleet.store.pgddl`), rows come back as tuples like sqlite3's,
and errors are raised as the DB-API classes the features already catch (``sqlite3.IntegrityError`` for a
constraint, ``sqlite3.OperationalError`` for a lost or refused connection, each a subclass here with the psycopg
error as its cause) so a feature's error handling does not depend on the backend.

The connection is synchronous, like sqlite3's: a statement on a local PostgreSQL takes well under a millisecond,
the server's handlers call the store the same way on both backends, and throughput past one process comes from
several workers (``wardsight fleet serve --workers N``), not from interleaving statements inside one.
psycopg is imported only when a ``postgresql://`` database is opened (the ``postgresql`` extra).
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
from collections.abc import Iterable, Iterator, Mapping, Sequence
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from fleet.store import pgddl, sqltext

if TYPE_CHECKING:
    import psycopg

CONNECT_TIMEOUT_SECONDS = 10
log = logging.getLogger("wardsight.fleet.store")


class PgIntegrityError(sqlite3.IntegrityError):
    """A PostgreSQL constraint violation (unique, foreign key, check, an append-only table's trigger)."""


class PgOperationalError(sqlite3.OperationalError):
    """PostgreSQL could not be reached or ended the connection (retryable: a restart, a fail-over)."""


class PgDatabaseError(sqlite3.DatabaseError):
    """Any other PostgreSQL error."""


def is_url(location: object) -> bool:
    return isinstance(location, str) and location.startswith(("postgresql://", "postgres://"))


def redact(url: str) -> str:
    """``url`` without its password (in the user part or a ``password=`` parameter), for messages and logs."""
    import urllib.parse

    parts = urllib.parse.urlsplit(url)
    if parts.password is not None:
        host = parts.hostname or ""
        parts = parts._replace(netloc=f"{parts.username}:***@{host}" + (f":{parts.port}" if parts.port else ""))
    pairs = urllib.parse.parse_qsl(parts.query, keep_blank_values=True)
    query = [(k, "***" if k.lower() == "password" else v) for k, v in pairs]
    return urllib.parse.urlunsplit(parts._replace(query=urllib.parse.urlencode(query, safe="*")))


def _secrets_of(url: str) -> list[str]:
    """The password of ``url`` in every spelling an error message may quote it in."""
    import urllib.parse

    parts = urllib.parse.urlsplit(url)
    found = [parts.password or ""]
    found += [v for k, v in urllib.parse.parse_qsl(parts.query, keep_blank_values=True) if k.lower() == "password"]
    raw = parts.netloc.rpartition("@")[0].partition(":")[2]  # as written, before percent-decoding
    return [s for s in {*found, raw, urllib.parse.unquote(raw)} if s]


def _plain(value: Any) -> Any:
    if isinstance(value, Decimal):  # SUM() and AVG() of integers; SQLite gives int or float
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, memoryview):
        return bytes(value)
    return value


def _param(value: Any) -> Any:
    return int(value) if isinstance(value, bool) else value  # booleans are stored as 0/1 integers, as in SQLite


class PgCursor:
    """A finished statement's rows, in sqlite3's shapes: tuples, ``description``, ``rowcount``."""

    def __init__(self, cursor: psycopg.Cursor[Any], sql: str) -> None:
        self.rowcount = cursor.rowcount
        self.lastrowid: int | None = None  # use RETURNING: PostgreSQL has no last insert id
        rows: list[tuple[Any, ...]] = []
        description = cursor.description
        if description is not None:
            names = [c.name for c in description]
            drop = "rowid" in names and "rowid" not in sql.lower()  # SQLite's SELECT * never shows the rowid
            keep = [i for i, n in enumerate(names) if not (drop and n == "rowid")]
            self.description: tuple[tuple[str, None, None, None, None, None, None], ...] | None = tuple(
                (names[i], None, None, None, None, None, None) for i in keep
            )
            for row in cursor.fetchall():
                rows.append(tuple(_plain(row[i]) for i in keep))
        else:
            self.description = None
        self._rows = rows
        self._at = 0

    def fetchone(self) -> tuple[Any, ...] | None:
        if self._at >= len(self._rows):
            return None
        self._at += 1
        return self._rows[self._at - 1]

    def fetchall(self) -> list[tuple[Any, ...]]:
        rest = self._rows[self._at :]
        self._at = len(self._rows)
        return rest

    def __iter__(self) -> Iterator[tuple[Any, ...]]:
        while (row := self.fetchone()) is not None:
            yield row


class PgConnection:
    """One autocommit psycopg connection, spoken to as the store speaks to sqlite3 (one per thread)."""

    dialect = "postgresql"

    def __init__(self, url: str) -> None:
        import psycopg

        self.url = url
        self._lost_transaction = False  # the connection broke inside a transaction (see _reconnect_if_lost)
        try:
            self.raw = psycopg.connect(url, autocommit=True, connect_timeout=CONNECT_TIMEOUT_SECONDS)
        except psycopg.Error as exc:
            raise _translate(exc, psycopg, self.url) from exc

    @property
    def in_transaction(self) -> bool:
        from psycopg.pq import TransactionStatus

        if self.raw.closed or self.raw.broken:
            return False  # a lost connection's transaction is gone: nothing to commit or roll back
        return self.raw.info.transaction_status != TransactionStatus.IDLE

    def _reconnect_if_lost(self, sql: str) -> None:
        """A connection PostgreSQL ended (a restart, a fail-over) is opened again before the next statement, unless
        that statement would continue a transaction that was lost with it: then it fails, and the next ``BEGIN``
        (its caller starting over) reconnects."""
        if not (self.raw.closed or self.raw.broken):
            return
        if self._lost_transaction and not sql.lstrip()[:5].upper() == "BEGIN":
            raise PgOperationalError("the connection to PostgreSQL was lost inside this transaction")
        import psycopg

        old = self.raw
        self.raw = psycopg.connect(self.url, autocommit=True, connect_timeout=CONNECT_TIMEOUT_SECONDS)
        self._lost_transaction = False
        with contextlib.suppress(Exception):
            old.close()
        log.warning("reconnected to PostgreSQL at %s", redact(self.url))

    def execute(self, sql: str, parameters: Sequence[Any] | Mapping[str, Any] = ()) -> PgCursor:
        import psycopg

        inside = self.in_transaction
        try:
            self._reconnect_if_lost(sql)
            if pgddl.is_schema(sql):
                for statement in pgddl.to_postgres(sql):
                    self.raw.execute(statement.encode())  # bytes: no placeholder parsing in a function body
                return PgCursor(self.raw.cursor(), sql)
            if isinstance(parameters, Mapping):
                params: Any = {k: _param(v) for k, v in parameters.items()}
            else:
                params = [_param(v) for v in parameters]
            return PgCursor(self.raw.execute(sqltext.to_postgres(sql), params), sql)
        except psycopg.Error as exc:
            if inside and (self.raw.closed or self.raw.broken):
                self._lost_transaction = True
            raise _translate(exc, psycopg, self.url) from exc

    def begin_locked(self, key: int) -> None:
        """``BEGIN`` and ``pg_advisory_xact_lock(key)`` in one round trip (the store's write transactions)."""
        import psycopg

        try:
            self._reconnect_if_lost("BEGIN")
            self.raw.execute(f"BEGIN; SELECT pg_advisory_xact_lock({int(key)})".encode())  # no parameters: one message
        except psycopg.Error as exc:
            raise _translate(exc, psycopg, self.url) from exc

    def transaction_ended(self) -> None:
        """The owner of a transaction lost with the connection has given it up: the next statement reconnects."""
        self._lost_transaction = False

    def executemany(self, sql: str, seq_of_parameters: Iterable[Sequence[Any] | Mapping[str, Any]]) -> None:
        for parameters in seq_of_parameters:
            self.execute(sql, parameters)

    def close(self) -> None:
        self.raw.close()

    @property
    def closed(self) -> bool:
        return bool(self.raw.closed)


def _translate(exc: Exception, psycopg: Any, url: str) -> sqlite3.DatabaseError:
    message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    for secret in sorted(_secrets_of(url), key=len, reverse=True):  # libpq quotes a URL it cannot parse
        message = message.replace(secret, "***")
    if isinstance(exc, psycopg.IntegrityError):
        return PgIntegrityError(message)
    if isinstance(exc, psycopg.OperationalError | psycopg.InterfaceError):
        return PgOperationalError(message)
    if getattr(exc, "sqlstate", None) in {"40001", "40P01", "57P01", "57P02", "57P03", "25P03"}:
        return PgOperationalError(message)  # serialization failure, deadlock, shutdown, idle timeout: retry
    return PgDatabaseError(message)


class PgDatabase:
    """The parts of ``sqlite_utils.Database`` the fleet uses, on a :class:`PgConnection`."""

    dialect = "postgresql"

    def __init__(self, conn: PgConnection) -> None:
        self.conn = conn

    def execute(self, sql: str, parameters: Sequence[Any] | Mapping[str, Any] = ()) -> PgCursor:
        return self.conn.execute(sql, parameters)

    def query(self, sql: str, params: Sequence[Any] | Mapping[str, Any] = ()) -> Iterator[dict[str, Any]]:
        cur = self.conn.execute(sql, params)
        names = [d[0] for d in cur.description or ()]
        for row in cur:
            yield dict(zip(names, row, strict=True))

    def table_names(self) -> list[str]:
        rows = self.conn.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema() ORDER BY table_name"
        )
        return [r[0] for r in rows]

    def columns(self, table: str) -> list[str]:
        from fleet.store.connection import table_columns

        return table_columns(self.conn, table)

    def __getitem__(self, table: str) -> PgTable:
        return PgTable(self, table)

    def table(self, table: str) -> PgTable:
        return PgTable(self, table)


class PgTable:
    """The few sqlite-utils table calls the fleet's tests and tools make (counts, rows)."""

    def __init__(self, db: PgDatabase, name: str) -> None:
        if not name.isidentifier():
            raise ValueError(f"not a table name: {name!r}")
        self.db, self.name = db, name

    @property
    def count(self) -> int:
        return self.count_where()

    def count_where(self, where: str | None = None, where_args: Sequence[Any] = ()) -> int:
        sql = f"SELECT COUNT(*) FROM {self.name}" + (f" WHERE {where}" if where else "")  # noqa: S608
        return int(self.db.conn.execute(sql, where_args).fetchone()[0])  # type: ignore[index]

    @property
    def rows(self) -> Iterator[dict[str, Any]]:
        return self.rows_where()

    def rows_where(
        self,
        where: str | None = None,
        where_args: Sequence[Any] = (),
        *,
        order_by: str | None = None,
        select: str = "*",
        limit: int | None = None,
    ) -> Iterator[dict[str, Any]]:
        sql = f"SELECT {select} FROM {self.name}" + (f" WHERE {where}" if where else "")  # noqa: S608
        if order_by:
            sql += f" ORDER BY {order_by}"
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        return self.db.query(sql, where_args)

    def insert(self, row: Mapping[str, Any]) -> None:
        names = list(row)
        if not all(n.isidentifier() for n in names):
            raise ValueError(f"not column names: {names!r}")
        marks = ", ".join(":" + n for n in names)
        self.db.conn.execute(f"INSERT INTO {self.name} ({', '.join(names)}) VALUES ({marks})", row)  # noqa: S608

    def get(self, key: Any) -> dict[str, Any]:
        """The row whose (single-column) primary key is ``key``; KeyError if there is none."""
        pk = self.db.conn.execute(
            "SELECT a.attname FROM pg_index i JOIN pg_attribute a"
            " ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey)"
            " WHERE i.indrelid = CAST(? AS regclass) AND i.indisprimary",
            [self.name],
        ).fetchall()
        if len(pk) != 1:
            raise ValueError(f"{self.name} has no single-column primary key")
        rows = list(self.db.query(f"SELECT * FROM {self.name} WHERE {pk[0][0]} = ?", [key]))  # noqa: S608
        if not rows:
            raise KeyError(key)
        return rows[0]

    @property
    def columns_dict(self) -> dict[str, type]:
        return {name: object for name in self.db.columns(self.name)}
