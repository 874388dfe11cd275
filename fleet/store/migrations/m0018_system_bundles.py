"""Migration 18: system updates over the air. ``ota_system_bundles``: the RAUC bundles uploaded to the library
(the TUF targets ``system/<compatible>/<version>.raucb``), staged until signed targets metadata lists them, as
``ota_models`` is for model packages. ``rollout_reports.detail``: a report's reason in the device's own words
(``wardsight.wire.UpdateReport.detail``, e.g. RAUC's message); NULL for reports without one."""

from __future__ import annotations

from fleet.store.connection import Connection


def apply(conn: Connection) -> None:
    conn.execute(
        """CREATE TABLE ota_system_bundles (
        compatible TEXT NOT NULL,
        version TEXT NOT NULL,
        target TEXT NOT NULL UNIQUE,
        length INTEGER NOT NULL,
        sha256 TEXT NOT NULL,
        uploaded_by TEXT NOT NULL,
        uploaded_at REAL NOT NULL,
        published_at REAL,
        published_by TEXT,
        PRIMARY KEY (compatible, version)
    )"""
    )
    conn.execute("ALTER TABLE rollout_reports ADD COLUMN detail TEXT")
