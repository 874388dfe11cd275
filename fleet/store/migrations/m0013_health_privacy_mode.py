"""Migration 13: how a device keeps images private (``sensor-only`` or ``blackout-at-capture``), in its latest
health; NULL until an agent that says so sends a heartbeat."""

from __future__ import annotations

from fleet.store.connection import Connection


def apply(conn: Connection) -> None:
    conn.execute("ALTER TABLE health_latest ADD COLUMN privacy_mode TEXT")
