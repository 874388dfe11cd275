"""Migration 17: the system image each device runs, in its latest health: the booted slot (RAUC's bootname), the
image's version and its SBOM's sha256 (``wardsight.wire.SystemVersion``); NULL until an agent that says so sends a
heartbeat. The version is indexed: the console filters by it and a rollout can target the devices on one."""

from __future__ import annotations

from fleet.store.connection import Connection


def apply(conn: Connection) -> None:
    conn.execute("ALTER TABLE health_latest ADD COLUMN system_slot TEXT")
    conn.execute("ALTER TABLE health_latest ADD COLUMN system_version TEXT")
    conn.execute("ALTER TABLE health_latest ADD COLUMN system_sbom_sha256 TEXT")
    conn.execute("CREATE INDEX IF NOT EXISTS health_latest_system_version ON health_latest (system_version)")
