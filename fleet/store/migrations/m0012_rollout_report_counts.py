"""Migration 12: a trial's progress (``done`` of ``total`` frames) in rollout reports (part of the 2026-12-07
baseline: added only where missing)."""

from __future__ import annotations

import sqlite3

from fleet.store.schema import add_missing_column


def apply(conn: sqlite3.Connection) -> None:
    for column in ("done", "total"):
        add_missing_column(conn, "rollout_reports", column, "INTEGER")
