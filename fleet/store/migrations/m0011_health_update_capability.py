"""Migration 11: whether a device can take model updates, in its latest health (part of the 2026-12-07
baseline: added only where missing)."""

from __future__ import annotations

from fleet.store.connection import Connection
from fleet.store.schema import add_missing_column


def apply(conn: Connection) -> None:
    add_missing_column(conn, "health_latest", "updates", "TEXT")
