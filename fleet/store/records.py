"""The shapes of stored rows that the store hands out and takes back as objects (not plain dicts)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class TokenRecord:
    """One enrollment token's stored form (``tokens`` table; the secret only as its sha256).

    Scope: a device enrolled with it lands in this site, ward and room. Made and judged by
    :mod:`fleet.enrollment.tokens`.
    """

    id: str
    secret_hash: str
    room: str
    created_at: float
    expires_at: float
    used_at: float | None = None
    device_id: str | None = None
    site: str | None = None
    ward: str | None = None
    require_approval: bool = False
    revoked_at: float | None = None
    created_by: str | None = None
