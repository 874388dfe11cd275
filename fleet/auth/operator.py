"""Who is asking, for every operator route: a browser session (cookie + CSRF for unsafe methods) or an API token.

Roles are ordered ``viewer < operator < admin``. Routes call :func:`require`, which authenticates the request
and checks the role on the server for every request:

- a browser session: cookie ``wardsight_session`` (256 random bits; the database stores only its sha256) with
  idle and absolute expiry from the config. Unsafe methods (anything but GET, HEAD, OPTIONS) also need the
  header ``X-CSRF-Token`` equal to the session's CSRF token.
- an API token: ``Authorization: Bearer wsa.<id>.<secret>`` (192-bit secret, stored as sha256); no CSRF.

A disabled user's sessions, a revoked or expired token and a changed role take effect on the next request.
Accounts, passwords, logins and tokens themselves are managed in :mod:`fleet.accounts`.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from typing import Any, Literal, get_args

from aiohttp import web

from fleet.store.connection import Database
from fleet.web.appkeys import CLOCK_KEY, CONFIG_KEY, DB_KEY
from fleet.web.errors import RejectedError

Role = Literal["viewer", "operator", "admin"]
ROLES: tuple[Role, ...] = get_args(Role)
_RANK: dict[str, int] = {role: rank for rank, role in enumerate(ROLES)}

COOKIE_NAME = "wardsight_session"
CSRF_HEADER = "X-CSRF-Token"
API_PREFIX = "wsa"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


@dataclass(frozen=True)
class Principal:
    """Who made a request: ``actor`` is ``user:<name>`` (session) or ``apitoken:<id>`` (token)."""

    actor: str
    role: Role
    via: Literal["session", "token"]
    username: str | None


def has_role(have: Role, need: Role) -> bool:
    """True if ``have`` includes ``need`` (admin ⊇ operator ⊇ viewer)."""
    return _RANK[have] >= _RANK[need]


def one(db: Database, sql: str, params: list[Any]) -> dict[str, Any] | None:
    rows = list(db.query(sql, params))
    return rows[0] if rows else None


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def token_principal(db: Database, token: str, now: float) -> Principal:
    parts = token.split(".")
    if len(parts) != 3 or parts[0] != API_PREFIX or not parts[1] or not parts[2]:
        raise RejectedError(401, "invalid API token")
    token_id, secret = parts[1], parts[2]
    row = one(db, "SELECT secret_hash, role, expires_at, revoked_at FROM api_tokens WHERE id = ?", [token_id])
    # Compare against a dummy hash when the id is unknown, so both paths cost the same.
    expected = row["secret_hash"] if row is not None else sha256("")
    if not hmac.compare_digest(sha256(secret), expected) or row is None:
        raise RejectedError(401, "invalid API token")
    if row["revoked_at"] is not None:
        raise RejectedError(401, "API token revoked")
    if row["expires_at"] is not None and now >= row["expires_at"]:
        raise RejectedError(401, "API token expired")
    db.conn.execute("UPDATE api_tokens SET last_used_at = ? WHERE id = ?", [now, token_id])
    return Principal(actor=f"apitoken:{token_id}", role=row["role"], via="token", username=None)


# ---- sessions and require() ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Session:
    id_hash: str
    csrf_token: str


def session_principal(request: web.Request) -> tuple[Principal, Session]:
    db, config = request.app[DB_KEY].db, request.app[CONFIG_KEY]
    now = request.app[CLOCK_KEY]()
    cookie = request.cookies.get(COOKIE_NAME)
    if not cookie:
        raise RejectedError(401, "not logged in")
    id_hash = sha256(cookie)
    row = one(
        db,
        "SELECT s.csrf_token, s.created_at, s.last_seen_at, o.username, o.role, o.disabled"
        " FROM sessions s JOIN operators o ON o.username = s.username WHERE s.id_hash = ?",
        [id_hash],
    )
    if row is None or row["disabled"]:
        raise RejectedError(401, "session is not valid; log in again")
    if (
        now - row["last_seen_at"] >= config.session_idle_seconds
        or now - row["created_at"] >= config.session_max_seconds
    ):
        db.conn.execute("DELETE FROM sessions WHERE id_hash = ?", [id_hash])
        raise RejectedError(401, "session expired; log in again")
    if request.method not in SAFE_METHODS:
        sent = request.headers.get(CSRF_HEADER, "")
        if not hmac.compare_digest(sent.encode("utf-8"), row["csrf_token"].encode("utf-8")):
            raise RejectedError(403, f"missing or wrong {CSRF_HEADER} header")
    db.conn.execute("UPDATE sessions SET last_seen_at = ? WHERE id_hash = ?", [now, id_hash])
    principal = Principal(actor=f"user:{row['username']}", role=row["role"], via="session", username=row["username"])
    return principal, Session(id_hash, row["csrf_token"])


def authenticate(request: web.Request) -> tuple[Principal, Session | None]:
    auth = request.headers.get("Authorization")
    if auth is not None:
        scheme, _, value = auth.strip().partition(" ")
        if scheme.lower() != "bearer" or not value.strip():
            raise RejectedError(401, "Authorization header must be 'Bearer wsa.<id>.<secret>'")
        db, now = request.app[DB_KEY].db, request.app[CLOCK_KEY]()
        return token_principal(db, value.strip(), now), None
    return session_principal(request)


def check_role(principal: Principal, role: Role) -> None:
    if not has_role(principal.role, role):
        raise RejectedError(403, f"this needs the {role} role; {principal.actor} is {principal.role}")


async def require(request: web.Request, role: Role) -> Principal:
    """Authenticate ``request`` (session cookie + CSRF for unsafe methods, or a Bearer API token) and
    check it has at least ``role``: 401 if not authenticated, 403 if the role or CSRF token is wrong."""
    principal, _ = authenticate(request)
    check_role(principal, role)
    return principal


def require_session(request: web.Request) -> tuple[Principal, Session]:
    principal, session = authenticate(request)
    if session is None:
        raise RejectedError(403, "this needs a login session, not an API token")
    return principal, session
