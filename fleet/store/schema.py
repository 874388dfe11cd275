"""Small SQLite tools the store and its migrations share: write transactions and adding a missing column."""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator


def add_missing_column(conn: sqlite3.Connection, table: str, column: str, decl: str) -> None:
    """``ALTER TABLE ... ADD COLUMN`` unless ``table`` has ``column`` (a database made by an older version)."""
    have = {row[1] for row in conn.execute(f"PRAGMA table_info({table})")}
    if column not in have:
        conn.execute(f"ALTER TABLE {table} ADD COLUMN {column} {decl}")  # our constants


@contextlib.contextmanager
def transaction(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """A write transaction on the autocommit connection: BEGIN IMMEDIATE ... COMMIT, ROLLBACK on any exception.

    Inside a transaction that is already open it joins it (the caller's COMMIT or ROLLBACK decides). Never held
    across an ``await``. Yields the connection.
    """
    if conn.in_transaction:
        yield conn
        return
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
