"""What the features see of the fleet database, whichever backend holds it: a DB-API connection and a
sqlite-utils style database (the surfaces sqlite3 and sqlite-utils give, and :mod:`fleet.store.pg` implements on
PostgreSQL), and the few SQL spellings where the two dialects differ in substance, not only in spelling.

A feature writes its SQL once, in SQLite's dialect with ``?`` parameters; where PostgreSQL needs another
expression (JSON fields, the larger of two values) it asks for it here by the connection's dialect.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any, Protocol

Params = Sequence[Any] | Mapping[str, Any]


class Cursor(Protocol):
    @property
    def rowcount(self) -> int: ...

    @property
    def description(self) -> Any: ...

    def fetchone(self) -> Any: ...

    def fetchall(self) -> list[Any]: ...

    def __iter__(self) -> Iterator[Any]: ...


class Connection(Protocol):
    """sqlite3.Connection (autocommit) or :class:`fleet.store.pg.PgConnection`."""

    @property
    def in_transaction(self) -> bool: ...

    def execute(self, sql: str, parameters: Params = ..., /) -> Any: ...

    def executemany(self, sql: str, seq_of_parameters: Iterable[Params], /) -> Any: ...

    def close(self) -> None: ...


class Database(Protocol):
    """sqlite_utils.Database or :class:`fleet.store.pg.PgDatabase`."""

    @property
    def conn(self) -> Any: ...

    def execute(self, sql: str, parameters: Any = ..., /) -> Any: ...

    def query(self, sql: str, params: Any = ..., /) -> Iterable[dict[str, Any]]: ...

    def table_names(self) -> list[str]: ...


def is_postgres(conn: object) -> bool:
    """Whether ``conn`` (a connection or a database) is on PostgreSQL."""
    return getattr(conn, "dialect", None) == "postgresql" or getattr(getattr(conn, "conn", None), "dialect", None) == (
        "postgresql"
    )


def json_text(conn: object, column: str, key: str) -> str:
    """SQL for the text (or NULL) at ``key`` of the JSON object in ``column`` (our column and key names only)."""
    _check(column, key)
    return f"({column}::jsonb ->> '{key}')" if is_postgres(conn) else f"json_extract({column}, '$.{key}')"


def json_number(conn: object, column: str, key: str) -> str:
    """SQL for the number (or NULL) at ``key`` of the JSON object in ``column``."""
    _check(column, key)
    if is_postgres(conn):
        return f"(({column}::jsonb ->> '{key}')::double precision)"
    return f"json_extract({column}, '$.{key}')"


def greatest(conn: object, a: str, b: str) -> str:
    """SQL for the larger of two non-NULL expressions (SQLite's two-argument MAX, PostgreSQL's GREATEST)."""
    return f"GREATEST({a}, {b})" if is_postgres(conn) else f"MAX({a}, {b})"


def unindexed(conn: object, column: str) -> str:
    """``column`` written so SQLite's planner does not pick its index (``+column``); as is on PostgreSQL."""
    _ident(column.replace(".", "_"))
    return column if is_postgres(conn) else f"+{column}"


def table_columns(conn: Connection, table: str) -> list[str]:
    """``table``'s column names, in order (empty if there is no such table; never PostgreSQL's ``rowid``)."""
    if is_postgres(conn):
        rows = conn.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_schema = current_schema()"
            " AND table_name = ? AND column_name <> 'rowid' ORDER BY ordinal_position",
            [table],
        )
        return [row[0] for row in rows]
    return [row[1] for row in conn.execute(f"PRAGMA table_info({_ident(table)})")]


def _ident(name: str) -> str:
    if not name.replace("_", "a").isalnum():
        raise ValueError(f"not a SQL name: {name!r}")
    return name


def _check(column: str, key: str) -> None:
    _ident(column.replace(".", "_"))
    _ident(key)
