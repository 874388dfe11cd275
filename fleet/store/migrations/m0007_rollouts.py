"""Migration 7: rollouts, their devices and the devices' reports (part of the 2026-12-07 baseline: idempotent)."""

from __future__ import annotations

from fleet.store.schema import executing

STATEMENTS = (
    """CREATE TABLE IF NOT EXISTS rollouts (
        id TEXT PRIMARY KEY,
        model TEXT NOT NULL,
        version TEXT NOT NULL,
        status TEXT NOT NULL,
        settled INTEGER NOT NULL DEFAULT 0,
        spec TEXT NOT NULL,
        state TEXT NOT NULL,
        request TEXT NOT NULL,
        target_checked INTEGER NOT NULL,
        last_report_id INTEGER NOT NULL DEFAULT 0,
        created_by TEXT NOT NULL,
        created_at REAL NOT NULL,
        updated_at REAL NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS rollouts_created ON rollouts (created_at)",
    """CREATE TABLE IF NOT EXISTS rollout_devices (
        rollout_id TEXT NOT NULL REFERENCES rollouts (id),
        device_id TEXT NOT NULL REFERENCES devices (id) ON DELETE CASCADE,
        PRIMARY KEY (device_id, rollout_id)
    )""",
    """CREATE TABLE IF NOT EXISTS rollout_reports (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        rollout_id TEXT NOT NULL REFERENCES rollouts (id),
        device_id TEXT NOT NULL,
        model TEXT NOT NULL,
        version TEXT NOT NULL,
        state TEXT NOT NULL,
        reason TEXT,
        progress REAL,
        received_at REAL NOT NULL,
        done INTEGER,
        total INTEGER
    )""",
    "CREATE INDEX IF NOT EXISTS rollout_reports_rollout ON rollout_reports (rollout_id, id)",
    """CREATE TRIGGER IF NOT EXISTS rollout_reports_no_update BEFORE UPDATE ON rollout_reports
        BEGIN SELECT RAISE(ABORT, 'rollout reports are append-only'); END""",
    """CREATE TRIGGER IF NOT EXISTS rollout_reports_no_delete BEFORE DELETE ON rollout_reports
        BEGIN SELECT RAISE(ABORT, 'rollout reports are append-only'); END""",
)

apply = executing(STATEMENTS)
