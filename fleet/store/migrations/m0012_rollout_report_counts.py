"""Migration 12: a trial's progress (``done`` of ``total`` frames) in rollout reports (part of the 2026-12-07
baseline: added only where missing)."""

from __future__ import annotations

from fleet.store.connection import Connection
from fleet.store.schema import add_missing_column


def apply(conn: Connection) -> None:
    for column in ("done", "total"):
        add_missing_column(conn, "rollout_reports", column, "INTEGER")
