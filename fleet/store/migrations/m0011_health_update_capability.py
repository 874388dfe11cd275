"""Migration 11: whether a device can take model updates, in its latest health (part of the 2026-12-07
baseline: added only where missing)."""

from __future__ import annotations

import sqlite3

from fleet.store.schema import add_missing_column


def apply(conn: sqlite3.Connection) -> None:
    add_missing_column(conn, "health_latest", "updates", "TEXT")
