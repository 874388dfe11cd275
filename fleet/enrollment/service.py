"""Enrollment's operations, each one transaction with its audit entry: creating and revoking an enrollment token,
enrolling a device with one. Called by the HTTP routes and by ``wardsight fleet token ...`` alike."""

from __future__ import annotations

import secrets
from typing import Any

from fleet.audit import log as audit
from fleet.config import ServerConfig
from fleet.enrollment import tokens
from fleet.store.db import FleetDB
from fleet.store.records import TokenRecord
from fleet.store.schema import transaction
from wardsight import wire


def token_details(record: TokenRecord) -> dict[str, Any]:
    """What the audit entry and the API's answer say about a new token (never its secret)."""
    return {name: getattr(record, name) for name in ("room", "site", "ward", "expires_at", "require_approval")}


def create_token(
    db: FleetDB,
    config: ServerConfig,
    room: str,
    *,
    actor: str,
    now: float,
    ttl: float | None = None,
    site: str | None = None,
    ward: str | None = None,
    require_approval: bool = False,
) -> tuple[str, TokenRecord]:
    """Store a one-time token for a room and audit it; return (the plaintext, shown once and never stored, record).

    ``ttl`` defaults to the config's; the device waits for approval if the caller or the config says so.
    """
    plaintext, record = tokens.new_token(
        room,
        now,
        ttl if ttl is not None else config.token_ttl_seconds,
        site=site,
        ward=ward,
        require_approval=require_approval or config.require_approval,
        created_by=actor,
    )
    with transaction(db.db.conn):
        db.add_token(record)
        audit.record(
            db.db,
            actor=actor,
            action="token.create",
            target=f"token:{record.id}",
            details=token_details(record),
            now=now,
        )
    return plaintext, record


def revoke_token(db: FleetDB, token_id: str, *, actor: str, now: float) -> bool:
    """Revoke an unused, unrevoked token and audit it; False (nothing changed) when there is no such token."""
    with transaction(db.db.conn):
        if not db.revoke_token(token_id, now):
            return False
        audit.record(db.db, actor=actor, action="token.revoke", target=f"token:{token_id}", now=now)
    return True


def enroll_device(
    db: FleetDB, record: TokenRecord, claim: wire.EnrollmentRequest, *, status: str, now: float
) -> dict[str, Any] | None:
    """Consume ``record``'s token for the device ``claim`` describes, in ``status``, and audit it; the new
    device's row, or None (nothing changed) when the token was used meanwhile."""
    device_id = "dev-" + secrets.token_hex(8)
    device = {
        "id": device_id,
        "name": claim.name,
        "site": record.site,
        "ward": record.ward,
        "room": record.room,
        "public_key": claim.public_key,
        "enrolled_at": now,
        "last_seen": now,
        "token_id": record.id,
        "status": status,
        "status_changed_at": now,
        "status_changed_by": f"token:{record.id}",
        "tags": "[]",
    }
    details = {"name": claim.name, "site": record.site, "ward": record.ward, "room": record.room, "status": status}
    with transaction(db.db.conn):
        if not db.enroll(record.id, device, now):
            return None
        audit.record(
            db.db, actor=f"token:{record.id}", action="device.enroll", target=device_id, details=details, now=now
        )
    return device
