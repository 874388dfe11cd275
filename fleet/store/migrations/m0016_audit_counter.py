"""Migration 16: the audit log's own counter of numbers given, on both backends.

The chain's verification finds rows missing at the end by comparing the last row with the last number ever
given. SQLite kept that number in ``sqlite_sequence``; PostgreSQL has no transactional equivalent (a sequence
advances even when the transaction that drew from it rolls back), so the number now lives in ``audit_counter``,
written in the same transaction as each entry. It starts from SQLite's counter where there is one.
"""

from __future__ import annotations

from fleet.store.connection import Connection, is_postgres


def apply(conn: Connection) -> None:
    conn.execute("CREATE TABLE IF NOT EXISTS audit_counter (name TEXT PRIMARY KEY, seq INTEGER NOT NULL)")
    start = conn.execute("SELECT MAX(seq) FROM audit").fetchone()[0] or 0
    if not is_postgres(conn):
        row = conn.execute("SELECT seq FROM sqlite_sequence WHERE name = 'audit'").fetchone()
        start = max(start, row[0] if row else 0)
    conn.execute("INSERT INTO audit_counter (name, seq) VALUES ('audit', ?) ON CONFLICT (name) DO NOTHING", [start])
