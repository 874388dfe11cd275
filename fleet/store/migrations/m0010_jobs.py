"""Migration 10: remote maintenance: job batches and jobs (part of the 2026-12-07 baseline: idempotent)."""

from __future__ import annotations

from fleet.store.schema import executing

STATEMENTS = (
    """CREATE TABLE IF NOT EXISTS job_batches (
        id TEXT PRIMARY KEY,
        kind TEXT NOT NULL,
        params TEXT NOT NULL,
        config TEXT,
        target TEXT NOT NULL,
        created_by TEXT NOT NULL,
        created_at REAL NOT NULL,
        expires_at REAL NOT NULL,
        rate_per_minute INTEGER,
        error_threshold TEXT,
        status TEXT NOT NULL CHECK (status IN ('running', 'stopped', 'cancelled')),
        ended_at REAL,
        ended_by TEXT,
        end_reason TEXT
    )""",
    "CREATE INDEX IF NOT EXISTS job_batches_created ON job_batches (created_at)",
    """CREATE TABLE IF NOT EXISTS jobs (
        id TEXT PRIMARY KEY,
        batch_id TEXT NOT NULL REFERENCES job_batches (id),
        device_id TEXT NOT NULL REFERENCES devices (id),
        seq INTEGER NOT NULL,
        state TEXT NOT NULL,
        released_at REAL,
        received_at REAL,
        updated_at REAL NOT NULL,
        finished_at REAL,
        reason TEXT,
        progress REAL,
        output TEXT,
        UNIQUE (batch_id, seq)
    )""",
    "CREATE INDEX IF NOT EXISTS jobs_device_state ON jobs (device_id, state)",
    "CREATE INDEX IF NOT EXISTS jobs_state ON jobs (state)",
)

apply = executing(STATEMENTS)
