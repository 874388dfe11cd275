"""Migration 1: enrollment tokens, devices, proof ids (replay guard) and events (part of the 2026-12-07 baseline:
idempotent, including the columns added to tokens and devices before migrations were numbered)."""

from __future__ import annotations

import sqlite3
from typing import Any

import sqlite_utils


def _add_columns(table: Any, columns: dict[str, type]) -> None:
    for name, kind in columns.items():
        if name not in table.columns_dict:
            table.add_column(name, kind)


def apply(conn: sqlite3.Connection) -> None:
    db = sqlite_utils.Database(conn)
    if "tokens" not in db.table_names():
        db.table("tokens").create(
            {
                "id": str,
                "secret_hash": str,
                "room": str,
                "created_at": float,
                "expires_at": float,
                "used_at": float,
                "device_id": str,
            },
            pk="id",
            not_null={"secret_hash", "room", "created_at", "expires_at"},
        )
    _add_columns(
        db["tokens"],
        {"site": str, "ward": str, "require_approval": int, "revoked_at": float, "created_by": str},
    )
    if "devices" not in db.table_names():
        db.table("devices").create(
            {
                "id": str,
                "name": str,
                "room": str,
                "public_key": str,
                "enrolled_at": float,
                "last_seen": float,
                "token_id": str,
            },
            pk="id",
            not_null={"name", "room", "public_key", "enrolled_at"},
        )
        db.table("devices").create_index(["public_key"], unique=True)
    _add_columns(
        db["devices"],
        {
            "site": str,
            "ward": str,
            "status": str,  # pending | active | quarantined | revoked
            "status_reason": str,
            "status_changed_at": float,
            "status_changed_by": str,
            "credential_id": str,  # the one current credential; None until issued (or after a reissue)
            "credential_expires_at": float,
            "tags": str,  # JSON list
        },
    )
    if "proof_jti" not in db.table_names():
        db.table("proof_jti").create(
            {"device_id": str, "jti": str, "expires_at": float}, pk=("device_id", "jti"), not_null={"expires_at"}
        )
        db.table("proof_jti").create_index(["expires_at"])
    if "events" not in db.table_names():
        db.table("events").create(
            {
                "event_id": str,
                "device_id": str,
                "room": str,
                "app": str,
                "type": str,
                "severity": str,
                "time": float,
                "received_at": float,
                "track_id": int,
                "confidence": float,
                "data": str,
            },
            pk="event_id",
            foreign_keys=[("device_id", "devices", "id")],
            not_null={"device_id", "room", "app", "type", "severity", "time", "received_at"},
        )
        db.table("events").create_index(["received_at"])
