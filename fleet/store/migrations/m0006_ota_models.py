"""Migration 6: the model library (part of the 2026-12-07 baseline: idempotent)."""

from __future__ import annotations

import sqlite3

STATEMENTS = (
    """CREATE TABLE IF NOT EXISTS ota_models (
        name TEXT NOT NULL,
        version TEXT NOT NULL,
        target TEXT NOT NULL UNIQUE,
        length INTEGER NOT NULL,
        sha256 TEXT NOT NULL,
        task TEXT NOT NULL,
        license TEXT NOT NULL,
        manifest TEXT NOT NULL,
        uploaded_by TEXT NOT NULL,
        uploaded_at REAL NOT NULL,
        published_at REAL,
        published_by TEXT,
        PRIMARY KEY (name, version)
    )""",
)


def apply(conn: sqlite3.Connection) -> None:
    for statement in STATEMENTS:
        conn.execute(statement)
