"""Migration 14: grouped critical alerts (one alert for a room's repeated critical events of one app) and which
events' incidents have ended (:mod:`fleet.alerts.incidents`).

- ``alert_groups``: one row per grouped alert, keyed by its first event (the alert the console and API show),
  with how many events it holds and the latest one.
- ``alert_members``: every event in a group (the first one too) and when the device said its incident ended
  (``ended_at``; NULL while the person may still be down).
"""

from __future__ import annotations

from fleet.store.schema import executing

STATEMENTS = (
    """CREATE TABLE alert_groups (
        head_id TEXT PRIMARY KEY REFERENCES events (event_id) ON DELETE CASCADE,
        room TEXT NOT NULL,
        app TEXT NOT NULL,
        count INTEGER NOT NULL,
        last_event_id TEXT NOT NULL,
        last_type TEXT NOT NULL,
        last_seen_at REAL NOT NULL
    )""",
    "CREATE INDEX alert_groups_room_app ON alert_groups (room, app)",
    """CREATE TABLE alert_members (
        event_id TEXT PRIMARY KEY REFERENCES events (event_id) ON DELETE CASCADE,
        head_id TEXT NOT NULL REFERENCES alert_groups (head_id) ON DELETE CASCADE,
        ended_at REAL
    )""",
    "CREATE INDEX alert_members_head ON alert_members (head_id)",
    "CREATE INDEX alert_members_unended ON alert_members (head_id) WHERE ended_at IS NULL",
)

apply = executing(STATEMENTS)
