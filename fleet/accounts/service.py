"""Account changes shared by the routes and the CLI: each one transaction with its audit entry.

A refusal (unknown user, duplicate, weak password, the last enabled admin) raises
:class:`~fleet.accounts.rules.OperatorError` before anything is stored.
"""

from __future__ import annotations

import secrets
from typing import Any

from fleet.accounts import store
from fleet.accounts.passwords import hash_password
from fleet.accounts.rules import OperatorError, validate_role, validate_token_name, validate_username
from fleet.audit import log as audit
from fleet.auth.operator import API_PREFIX, Role, sha256
from fleet.config import ServerConfig
from fleet.store.connection import Database
from fleet.store.schema import transaction

# ---- operators ----------------------------------------------------------------------------------------


def add_operator(db: Database, username: str, password_hash: str, role: Role, now: float, actor: str) -> None:
    """Store an enabled operator with an already made ``password_hash``; OperatorError 409 if taken."""
    with transaction(db.conn) as conn:
        if store.operator_exists(conn, username):
            raise OperatorError(409, f"operator '{username}' already exists")
        store.insert_operator(conn, username, password_hash, role, now, actor)
        audit.record(
            db, actor=actor, action="operator.create", target=f"user:{username}", details={"role": role}, now=now
        )


def create_operator(
    db: Database,
    username: str,
    password: str,
    role: Role,
    now: float,
    config: ServerConfig,
    *,
    actor: str = "system",
) -> None:
    """Add an enabled operator (recorded in the audit log as done by ``actor``); OperatorError if refused."""
    validate_username(username)
    validate_role(role)
    add_operator(db, username, hash_password(password, config), role, now, actor)


def _update_details(row: dict[str, Any], role: str, disabled: bool, password_hash: str | None) -> dict[str, Any]:
    details: dict[str, Any] = {}
    if role != row["role"]:
        details["role"] = {"from": row["role"], "to": role}
    if disabled != bool(row["disabled"]):
        details["disabled"] = disabled
    if password_hash is not None:
        details["password_reset"] = True
    return details


def apply_update(
    db: Database,
    username: str,
    *,
    actor: str,
    now: float,
    role: Role | None = None,
    disabled: bool | None = None,
    password_hash: str | None = None,
) -> dict[str, Any]:
    """Change an operator's role, enabled state or password (already hashed); returns the operator as admins see it.

    Disabling or a new password ends their sessions at once. Refuses to demote or disable the last enabled admin
    (OperatorError 409). The routes and ``wardsight fleet operator`` both change operators through it.
    """
    with transaction(db.conn) as conn:
        row = store.operator(db, username)
        if row is None:
            raise OperatorError(404, f"no operator '{username}'")
        new_role = role if role is not None else row["role"]
        new_disabled = disabled if disabled is not None else bool(row["disabled"])
        loses_admin = row["role"] == "admin" and not row["disabled"] and (new_role != "admin" or new_disabled)
        if loses_admin and store.enabled_admins(conn) <= 1:
            raise OperatorError(409, "cannot demote or disable the last enabled admin")
        store.write_operator(conn, username, new_role, new_disabled, now, password_hash)
        if new_disabled or password_hash is not None:
            store.end_sessions(conn, username)
        details = _update_details(row, new_role, new_disabled, password_hash)
        audit.record(db, actor=actor, action="operator.update", target=f"user:{username}", details=details, now=now)
        updated = store.operator(db, username)
    assert updated is not None
    return store.operator_view(updated)


# ---- API tokens ---------------------------------------------------------------------------------------


def create_api_token(
    db: Database,
    name: str,
    role: Role,
    created_by: str,
    now: float,
    expires_at: float | None = None,
) -> str:
    """Store a new API token and return its plaintext ``wsa.<id>.<secret>`` (shown once, stored hashed)."""
    validate_token_name(name)
    validate_role(role)
    if expires_at is not None and expires_at <= now:
        raise OperatorError(400, "expires_at must be in the future")
    token_id = secrets.token_hex(8)
    secret = secrets.token_urlsafe(24)  # 192 bits
    with transaction(db.conn) as conn:
        store.insert_api_token(conn, token_id, name, sha256(secret), role, created_by, now, expires_at)
        audit.record(
            db,
            actor=created_by,
            action="apitoken.create",
            target=f"apitoken:{token_id}",
            details={"name": name, "role": role, "expires_at": expires_at},
            now=now,
        )
    return f"{API_PREFIX}.{token_id}.{secret}"


def revoke_api_token(db: Database, token_id: str, *, actor: str, now: float) -> None:
    """Revoke a token at once; OperatorError 404 if unknown, 409 if already revoked."""
    with transaction(db.conn) as conn:
        row = store.api_token_revocation(db, token_id)
        if row is None:
            raise OperatorError(404, f"no API token '{token_id}'")
        if row["revoked_at"] is not None:
            raise OperatorError(409, f"API token '{token_id}' is already revoked")
        store.mark_revoked(conn, token_id, actor, now)
        audit.record(db, actor=actor, action="apitoken.revoke", target=f"apitoken:{token_id}", now=now)
