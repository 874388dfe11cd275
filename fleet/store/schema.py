"""Small database tools the store, its migrations and the features share, on either backend: write transactions
(and a savepoint inside one), a migration of SQL statements, adding a missing column, optional WHERE conditions."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from fleet.store.connection import Connection, is_postgres, table_columns

# On PostgreSQL every write transaction takes this transaction-scoped advisory lock first: the store's
# transactions were written for SQLite's BEGIN IMMEDIATE (one writer at a time, reads inside see no other
# writer's changes), and the lock keeps that true across workers. Autocommit statements do not take it.
WRITE_LOCK_KEY = 0x57617264  # "Ward"


def executing(statements: Sequence[str]) -> Callable[[Connection], None]:
    """A migration's ``apply`` that executes ``statements`` in order."""

    def apply(conn: Connection) -> None:
        for statement in statements:
            conn.execute(statement)

    return apply


def add_missing_column(conn: Connection, table: str, column: str, decl: str) -> None:
    """``ALTER TABLE ... ADD COLUMN`` unless ``table`` has ``column`` (a database made by an older version)."""
    have = set(table_columns(conn, table))
    if column not in have:
        conn.execute(f"ALTER TABLE {table} ADD COLUMN {column} {decl}")  # our constants


def conditions(*given: tuple[str, Any]) -> tuple[list[str], list[Any]]:
    """Of ``(sql, value)`` pairs (each ``sql`` with one ``?``), those whose value is not None: (sql list, values)."""
    kept = [(sql, value) for sql, value in given if value is not None]
    return [sql for sql, _ in kept], [value for _, value in kept]


@contextlib.contextmanager
def transaction(conn: Connection) -> Iterator[Connection]:
    """A write transaction on the autocommit connection: BEGIN IMMEDIATE ... COMMIT, ROLLBACK on any exception.

    Inside a transaction that is already open it joins it (the caller's COMMIT or ROLLBACK decides). Never held
    across an ``await``. Yields the connection.
    """
    if conn.in_transaction:
        yield conn
        return
    if is_postgres(conn):  # BEGIN and the write lock in one round trip
        conn.begin_locked(WRITE_LOCK_KEY)  # type: ignore[attr-defined]
    else:
        conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        elif is_postgres(conn):
            conn.transaction_ended()  # type: ignore[attr-defined]  # (lost with its connection: nothing to undo)
        raise


@contextlib.contextmanager
def undo_on_error(conn: Connection) -> Iterator[Connection]:
    """Inside an open transaction: if the block raises, undo only what it wrote (a savepoint) and re-raise; what the
    transaction wrote before the block stays, for its owner to commit. Yields the connection."""
    if not conn.in_transaction:
        raise RuntimeError("undo_on_error needs an open transaction")
    conn.execute("SAVEPOINT undo_on_error")
    try:
        yield conn
    except BaseException:
        if conn.in_transaction:  # (SQLite ends the whole transaction itself on a few errors, e.g. a full disk)
            conn.execute("ROLLBACK TO undo_on_error")
            conn.execute("RELEASE undo_on_error")
        raise
    try:
        conn.execute("RELEASE undo_on_error")
    except Exception:  # (PostgreSQL: the block caught a failed statement and went on; what it wrote is void)
        if conn.in_transaction:
            conn.execute("ROLLBACK TO undo_on_error")
            conn.execute("RELEASE undo_on_error")
        raise
