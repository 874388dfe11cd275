"""Migration 5: devices' latest health, health samples and presence (part of the 2026-12-07 baseline: idempotent)."""

from __future__ import annotations

from fleet.store.schema import executing

STATEMENTS = (
    """CREATE TABLE IF NOT EXISTS health_latest (
        device_id TEXT PRIMARY KEY REFERENCES devices(id) ON DELETE CASCADE,
        received_at REAL NOT NULL,
        clock_skew_s REAL NOT NULL,
        sent_at REAL NOT NULL,
        uptime_s REAL NOT NULL,
        agent_version TEXT NOT NULL,
        accelerator TEXT NOT NULL,
        accelerator_configured TEXT,
        cpu_temp_c REAL,
        accelerator_temp_c REAL,
        mem_used_mb REAL,
        mem_total_mb REAL,
        fps REAL,
        frames_processed INTEGER NOT NULL,
        frames_dropped INTEGER NOT NULL,
        frames_dropped_delta INTEGER NOT NULL,
        outbox_pending INTEGER NOT NULL,
        stage_ms TEXT NOT NULL,
        models TEXT NOT NULL,
        warnings TEXT NOT NULL,
        updates TEXT
    )""",
    """CREATE TABLE IF NOT EXISTS health_samples (
        id INTEGER PRIMARY KEY,
        device_id TEXT NOT NULL REFERENCES devices(id) ON DELETE CASCADE,
        received_at REAL NOT NULL,
        fps REAL,
        cpu_temp_c REAL,
        mem_used_mb REAL,
        frames_processed INTEGER NOT NULL,
        frames_dropped INTEGER NOT NULL,
        pose_ms REAL
    )""",
    "CREATE INDEX IF NOT EXISTS health_samples_device ON health_samples (device_id, received_at)",
    """CREATE TABLE IF NOT EXISTS presence (
        device_id TEXT PRIMARY KEY REFERENCES devices(id) ON DELETE CASCADE,
        last_heard_at REAL,
        offline_since REAL,
        returned_at REAL
    )""",
)

apply = executing(STATEMENTS)
