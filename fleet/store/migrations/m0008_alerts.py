"""Migration 8: alert states, the alert feed and its trigger on events (part of the 2026-12-07 baseline: idempotent)."""

from __future__ import annotations

from fleet.store.schema import executing

STATEMENTS = (
    """CREATE TABLE IF NOT EXISTS alert_states (
        event_id TEXT PRIMARY KEY REFERENCES events (event_id) ON DELETE CASCADE,
        acknowledged_by TEXT,
        acknowledged_at REAL,
        resolved_by TEXT,
        resolved_at REAL,
        note TEXT
    )""",
    """CREATE TABLE IF NOT EXISTS alert_feed (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        event_id TEXT NOT NULL REFERENCES events (event_id) ON DELETE CASCADE,
        kind TEXT NOT NULL CHECK (kind IN ('alert', 'acknowledged', 'resolved')),
        at REAL NOT NULL,
        actor TEXT,
        note TEXT
    )""",
    "CREATE INDEX IF NOT EXISTS alert_feed_event ON alert_feed (event_id)",
    "CREATE INDEX IF NOT EXISTS events_alerts ON events (room, received_at)"
    " WHERE severity IN ('warning', 'critical') OR (app = 'system' AND type = 'device_offline')",
    """CREATE TRIGGER IF NOT EXISTS alert_feed_on_event AFTER INSERT ON events
        WHEN NEW.severity IN ('warning', 'critical') OR (NEW.app = 'system' AND NEW.type = 'device_offline')
        BEGIN INSERT INTO alert_feed (event_id, kind, at) VALUES (NEW.event_id, 'alert', NEW.received_at); END""",
)

apply = executing(STATEMENTS)
