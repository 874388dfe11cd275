"""Login lockout: after ``max_login_failures`` failed attempts for a username within ``login_lockout_seconds``,
attempts for it are refused for ``login_lockout_seconds`` (the routes answer 429 with Retry-After).

Unknown usernames lock out like real ones. Each attempt is counted before the (slow) password check, so
parallel guesses cannot exceed the limit; a success clears the count.
"""

from __future__ import annotations

import sqlite3

import sqlite_utils

from fleet.audit import log as audit
from fleet.auth.operator import one
from fleet.config import ServerConfig
from fleet.store.schema import transaction


def begin_attempt(db: sqlite_utils.Database, username: str, now: float, config: ServerConfig) -> tuple[float, bool]:
    """Count an attempt before the (slow) check, so parallel guesses cannot exceed the limit.

    Returns (seconds the caller must wait, or 0 to go ahead; whether this attempt started a lockout).
    A successful login clears the count (:func:`clear_failures`).
    """
    window = config.login_lockout_seconds
    with transaction(db.conn) as conn:
        conn.execute(
            "DELETE FROM login_failures WHERE last_attempt_at <= ? AND (locked_until IS NULL OR locked_until <= ?)",
            [now - window, now],
        )
        row = one(db, "SELECT failures, locked_until FROM login_failures WHERE username = ?", [username])
        if row is not None and row["locked_until"] is not None and row["locked_until"] > now:
            return row["locked_until"] - now, False
        failures = (row["failures"] if row is not None else 0) + 1
        locks = failures >= config.max_login_failures
        conn.execute(
            "INSERT INTO login_failures (username, failures, last_attempt_at, locked_until) VALUES (?, ?, ?, ?)"
            " ON CONFLICT (username) DO UPDATE SET failures = excluded.failures,"
            " last_attempt_at = excluded.last_attempt_at, locked_until = excluded.locked_until",
            [username, 0 if locks else failures, now, now + window if locks else None],
        )
    return 0.0, locks


def clear_failures(conn: sqlite3.Connection, username: str) -> None:
    """Forget the counted attempts of ``username`` (inside the caller's transaction, after a success)."""
    conn.execute("DELETE FROM login_failures WHERE username = ?", [username])


def record_failure(
    db: sqlite_utils.Database,
    username: str,
    *,
    reason: str,
    locks: bool,
    action: str,
    remote: str | None,
    now: float,
    config: ServerConfig,
) -> None:
    """Audit a failed attempt (``action``) and, when it started a lockout (``locks``), the lockout."""
    actor = f"user:{username}"
    with transaction(db.conn):
        audit.record(
            db, actor=actor, action=action, target=actor, details={"reason": reason, "remote": remote}, now=now
        )
        if locks:
            details = {"seconds": config.login_lockout_seconds, "after_failures": config.max_login_failures}
            audit.record(db, actor="system", action="login.locked", target=actor, details=details, now=now)
