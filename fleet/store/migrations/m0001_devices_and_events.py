"""Migration 1: enrollment tokens, devices, proof ids (replay guard) and events (part of the 2026-12-07 baseline:
idempotent, including the columns added to tokens and devices before migrations were numbered).

The tables and index names are those sqlite-utils gave them when the server created them through it.
"""

from __future__ import annotations

from fleet.store.connection import Connection
from fleet.store.schema import add_missing_column

STATEMENTS = (
    """CREATE TABLE IF NOT EXISTS tokens (id TEXT PRIMARY KEY, secret_hash TEXT NOT NULL, room TEXT NOT NULL,
        created_at REAL NOT NULL, expires_at REAL NOT NULL, used_at REAL, device_id TEXT)""",
    """CREATE TABLE IF NOT EXISTS devices (id TEXT PRIMARY KEY, name TEXT NOT NULL, room TEXT NOT NULL,
        public_key TEXT NOT NULL, enrolled_at REAL NOT NULL, last_seen REAL, token_id TEXT)""",
    "CREATE UNIQUE INDEX IF NOT EXISTS idx_devices_public_key ON devices (public_key)",
    """CREATE TABLE IF NOT EXISTS proof_jti (device_id TEXT, jti TEXT, expires_at REAL NOT NULL,
        PRIMARY KEY (device_id, jti))""",
    "CREATE INDEX IF NOT EXISTS idx_proof_jti_expires_at ON proof_jti (expires_at)",
    """CREATE TABLE IF NOT EXISTS events (event_id TEXT PRIMARY KEY,
        device_id TEXT NOT NULL REFERENCES devices (id), room TEXT NOT NULL, app TEXT NOT NULL, type TEXT NOT NULL,
        severity TEXT NOT NULL, time REAL NOT NULL, received_at REAL NOT NULL, track_id INTEGER, confidence REAL,
        data TEXT)""",
    "CREATE INDEX IF NOT EXISTS idx_events_received_at ON events (received_at)",
)

# Columns added after the tables first shipped (a database from before them gets them here).
LATER_COLUMNS = {
    "tokens": {
        "site": "TEXT",
        "ward": "TEXT",
        "require_approval": "INTEGER",
        "revoked_at": "REAL",
        "created_by": "TEXT",
    },
    "devices": {
        "site": "TEXT",
        "ward": "TEXT",
        "status": "TEXT",  # pending | active | quarantined | revoked
        "status_reason": "TEXT",
        "status_changed_at": "REAL",
        "status_changed_by": "TEXT",
        "credential_id": "TEXT",  # the one current credential; None until issued (or after a reissue)
        "credential_expires_at": "REAL",
        "tags": "TEXT",  # JSON list
    },
}


def apply(conn: Connection) -> None:
    for statement in STATEMENTS:
        conn.execute(statement)
    for table, columns in LATER_COLUMNS.items():
        for column, decl in columns.items():
            add_missing_column(conn, table, column, decl)
