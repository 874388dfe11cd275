"""Migration 9: an index for reading events by app and time, for reports (part of the 2026-12-07 baseline)."""

from __future__ import annotations

from fleet.store.connection import Connection


def apply(conn: Connection) -> None:
    conn.execute("CREATE INDEX IF NOT EXISTS events_app_time ON events (app, time)")
