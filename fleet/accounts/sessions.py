"""A browser session's life: opened by a login, closed by a logout, and the own-password change that
ends the user's other sessions. Each is one transaction with its audit entry; the routes check the
password (slowly, off the event loop) before and answer after.

The session id (256 random bits) goes only into the cookie; the database keeps its sha256 and the
session's CSRF token. Checking a session on each request is :mod:`fleet.auth.operator`'s.
"""

from __future__ import annotations

import secrets
from typing import NamedTuple

from fleet.accounts import lockout, store
from fleet.audit import log as audit
from fleet.auth.operator import Principal, Role, Session, sha256
from fleet.config import ServerConfig
from fleet.store.connection import Database
from fleet.store.schema import transaction


class NewSession(NamedTuple):
    session_id: str  # for the cookie only
    csrf_token: str
    role: Role


def open_session(
    db: Database,
    username: str,
    checked_hash: str | None,
    *,
    new_hash: str | None,
    old_cookie: str | None,
    attempt: lockout.Attempt,
    guard: lockout.Throttle,
    now: float,
    config: ServerConfig,
) -> NewSession | None:
    """Log ``username`` in, unless the account was disabled or its password changed since ``checked_hash``
    was verified (None then). Takes back the ``attempt``'s count and remembers its address
    (:func:`lockout.signed_in`), drops expired sessions and the one in ``old_cookie``, stamps ``last_login_at``
    and stores ``new_hash`` (a rehash) if given."""
    session_id, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
    with transaction(db.conn) as conn:
        current = store.credentials(db, username)
        if current is None or current["disabled"] or current["password_hash"] != checked_hash:
            return None
        lockout.signed_in(conn, guard, attempt, now)
        store.delete_expired_sessions(conn, now, config)
        if old_cookie:
            store.delete_session(conn, sha256(old_cookie))
        store.insert_session(conn, sha256(session_id), username, csrf, now)
        store.note_login(conn, username, now, new_hash)
        details = {"remote": attempt.remote, "rehashed": new_hash is not None}
        actor = f"user:{username}"
        audit.record(db, actor=actor, action="login.success", target=actor, details=details, now=now)
    return NewSession(session_id, csrf, current["role"])


def close_session(db: Database, principal: Principal, session: Session, now: float) -> None:
    """Log out: the session ends on the server."""
    with transaction(db.conn) as conn:
        store.delete_session(conn, session.id_hash)
        audit.record(db, actor=principal.actor, action="logout", target=principal.actor, now=now)


def change_own_password(
    db: Database,
    principal: Principal,
    session: Session,
    checked_hash: str | None,
    new_hash: str,
    now: float,
    attempt: lockout.Attempt,
    guard: lockout.Throttle,
) -> bool:
    """Replace the password whose hash was ``checked_hash``; False (nothing stored) if the account changed
    meanwhile. The user's other sessions (perhaps an attacker's) end; this one stays. The ``attempt`` that
    checked the current password counts as a sign-in (:func:`lockout.signed_in`)."""
    username = principal.username
    assert username is not None
    with transaction(db.conn) as conn:
        if not store.replace_password(conn, username, checked_hash, new_hash, now):
            return False
        lockout.signed_in(conn, guard, attempt, now)
        store.end_sessions(conn, username, keep=session.id_hash)
        audit.record(db, actor=principal.actor, action="password.change", target=principal.actor, now=now)
    return True
