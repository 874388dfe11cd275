"""Migration 13: how a device keeps images private (``sensor-only`` or ``blackout-at-capture``), in its latest
health; NULL until an agent that says so sends a heartbeat."""

from __future__ import annotations

import sqlite3


def apply(conn: sqlite3.Connection) -> None:
    conn.execute("ALTER TABLE health_latest ADD COLUMN privacy_mode TEXT")
