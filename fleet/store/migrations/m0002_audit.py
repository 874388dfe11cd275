"""Migration 2: the audit log: an append-only, hash-chained table whose triggers refuse UPDATE and DELETE (part of
the 2026-12-07 baseline: idempotent)."""

from __future__ import annotations

from fleet.store.schema import executing

STATEMENTS = (
    """CREATE TABLE IF NOT EXISTS audit (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        time REAL NOT NULL,
        actor TEXT NOT NULL,
        action TEXT NOT NULL,
        target TEXT NOT NULL,
        details TEXT NOT NULL,
        prev_hash TEXT NOT NULL,
        hash TEXT NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS audit_time ON audit (time)",
    "CREATE INDEX IF NOT EXISTS audit_actor ON audit (actor)",
    "CREATE INDEX IF NOT EXISTS audit_target ON audit (target)",
    """CREATE TRIGGER IF NOT EXISTS audit_no_update BEFORE UPDATE ON audit
        BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END""",
    """CREATE TRIGGER IF NOT EXISTS audit_no_delete BEFORE DELETE ON audit
        BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END""",
)

apply = executing(STATEMENTS)
