"""Enrollment tokens: one-time, expiring, stored hashed. Pure logic; storage is in ``fleet.store.db``
(:class:`~fleet.store.records.TokenRecord`).

A token reads ``wst.<id>.<secret>``. The server keeps the id and sha256(secret) (the secret is 192
random bits, so a fast hash is enough), looks tokens up by id and compares hashes in constant time.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

from fleet.store.records import TokenRecord

PREFIX = "wst"


class TokenRejectedError(Exception):
    """The token cannot enroll a device; ``str(exc)`` is safe to return to the caller."""


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def new_token(
    room: str,
    now: float,
    ttl: float,
    *,
    site: str | None = None,
    ward: str | None = None,
    require_approval: bool = False,
    created_by: str | None = None,
) -> tuple[str, TokenRecord]:
    """Return (plaintext token to hand to IT once, record to store)."""
    token_id = secrets.token_hex(6)
    secret = secrets.token_urlsafe(24)
    record = TokenRecord(
        token_id,
        _hash(secret),
        room,
        now,
        now + ttl,
        site=site,
        ward=ward,
        require_approval=require_approval,
        created_by=created_by,
    )
    return f"{PREFIX}.{token_id}.{secret}", record


def split(token: str) -> tuple[str, str]:
    parts = token.split(".")
    if len(parts) != 3 or parts[0] != PREFIX or not parts[1] or not parts[2]:
        raise TokenRejectedError("invalid enrollment token")
    return parts[1], parts[2]


def check(record: TokenRecord | None, secret: str, now: float) -> TokenRecord:
    """Decide whether ``secret`` may enroll a device under ``record`` at ``now``."""
    # Compare against a dummy hash when the id is unknown, so both paths cost the same.
    expected = record.secret_hash if record is not None else _hash("")
    matches = hmac.compare_digest(_hash(secret), expected)
    if record is None or not matches:
        raise TokenRejectedError("invalid enrollment token")
    if record.revoked_at is not None:
        raise TokenRejectedError("enrollment token revoked")
    if record.used_at is not None:
        raise TokenRejectedError("enrollment token already used")
    if now >= record.expires_at:
        raise TokenRejectedError("enrollment token expired")
    return record
