"""Migration 4: webhook endpoints and their delivery queue (part of the 2026-12-07 baseline: idempotent)."""

from __future__ import annotations

from fleet.store.schema import executing

STATEMENTS = (
    """CREATE TABLE IF NOT EXISTS webhook_endpoints (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        name TEXT NOT NULL,
        url TEXT NOT NULL,
        format TEXT NOT NULL CHECK (format IN ('standard', 'fhir')),
        hmac_secret TEXT,
        apps TEXT NOT NULL DEFAULT '[]',
        min_severity TEXT NOT NULL DEFAULT 'info' CHECK (min_severity IN ('info', 'warning', 'critical')),
        enabled INTEGER NOT NULL DEFAULT 1,
        disabled_reason TEXT,
        created_at REAL NOT NULL,
        created_by TEXT NOT NULL,
        last_attempt_at REAL,
        last_success_at REAL,
        last_status INTEGER,
        last_error TEXT,
        consecutive_failures INTEGER NOT NULL DEFAULT 0,
        delivered_count INTEGER NOT NULL DEFAULT 0,
        dead_count INTEGER NOT NULL DEFAULT 0
    )""",
    """CREATE TABLE IF NOT EXISTS webhook_deliveries (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        endpoint_id INTEGER NOT NULL REFERENCES webhook_endpoints (id) ON DELETE CASCADE,
        event_id TEXT NOT NULL REFERENCES events (event_id) ON DELETE CASCADE,
        msg_id TEXT NOT NULL,
        body TEXT NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        next_attempt_at REAL NOT NULL,
        status TEXT NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'delivered', 'dead')),
        last_status INTEGER,
        last_error TEXT,
        created_at REAL NOT NULL,
        delivered_at REAL,
        UNIQUE (endpoint_id, event_id)
    )""",
    "CREATE INDEX IF NOT EXISTS webhook_deliveries_queue ON webhook_deliveries (endpoint_id, status, id)",
    "CREATE INDEX IF NOT EXISTS webhook_deliveries_status ON webhook_deliveries (status, endpoint_id)",
)

apply = executing(STATEMENTS)
