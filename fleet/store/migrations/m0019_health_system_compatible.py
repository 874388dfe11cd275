"""Migration 19: RAUC's compatible of the system each device runs (its board: ``wardsight-rpi4``, ``wardsight-rpi5``),
in its latest health, so a system rollout takes only the devices its bundle fits; NULL until an agent that says so
sends a heartbeat."""

from __future__ import annotations

from fleet.store.connection import Connection


def apply(conn: Connection) -> None:
    conn.execute("ALTER TABLE health_latest ADD COLUMN system_compatible TEXT")
