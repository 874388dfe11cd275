"""Migration 6: the model library (part of the 2026-12-07 baseline: idempotent)."""

from __future__ import annotations

from fleet.store.schema import executing

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

apply = executing(STATEMENTS)
