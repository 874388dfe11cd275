"""SQL over the ``operators``, ``api_tokens`` and ``sessions`` tables (the caller holds the transaction).

Nothing here checks rules or writes the audit log: :mod:`fleet.accounts.service` and
:mod:`fleet.accounts.sessions` do, around these statements. Reading a session on a request is
:mod:`fleet.auth.operator`'s.
"""

from __future__ import annotations

from typing import Any

from fleet.auth.operator import Role, one
from fleet.config import ServerConfig
from fleet.store.connection import Connection, Database

# ---- operators ----------------------------------------------------------------------------------------


def operator_view(row: dict[str, Any]) -> dict[str, Any]:
    """An operator row as shown to admins: everything but the password hash."""
    return {
        "username": row["username"],
        "role": row["role"],
        "disabled": bool(row["disabled"]),
        "created_at": row["created_at"],
        "created_by": row["created_by"],
        "updated_at": row["updated_at"],
        "password_changed_at": row["password_changed_at"],
        "last_login_at": row["last_login_at"],
    }


def list_operators(db: Database) -> list[dict[str, Any]]:
    """Every operator without the password hash, by username."""
    return [operator_view(row) for row in db.query("SELECT * FROM operators ORDER BY username")]


def operator(db: Database, username: str) -> dict[str, Any] | None:
    return one(db, "SELECT * FROM operators WHERE username = ?", [username])


def credentials(db: Database, username: str) -> dict[str, Any] | None:
    """``password_hash``, ``role`` and ``disabled`` of ``username``, or None."""
    return one(db, "SELECT password_hash, role, disabled FROM operators WHERE username = ?", [username])


def operator_exists(conn: Connection, username: str) -> bool:
    return conn.execute("SELECT 1 FROM operators WHERE username = ?", [username]).fetchone() is not None


def insert_operator(conn: Connection, username: str, password_hash: str, role: Role, now: float, actor: str) -> None:
    conn.execute(
        "INSERT INTO operators (username, password_hash, role, disabled, created_at, created_by, updated_at,"
        " password_changed_at) VALUES (?, ?, ?, 0, ?, ?, ?, ?)",
        [username, password_hash, role, now, actor, now, now],
    )


def enabled_admins(conn: Connection) -> int:
    (admins,) = conn.execute("SELECT COUNT(*) FROM operators WHERE role = 'admin' AND disabled = 0").fetchone()
    return int(admins)


def write_operator(
    conn: Connection, username: str, role: str, disabled: bool, now: float, password_hash: str | None
) -> None:
    """Set role and enabled state; a ``password_hash`` also replaces the password (and its change time)."""
    conn.execute(
        "UPDATE operators SET role = ?, disabled = ?, updated_at = ?, password_hash = COALESCE(?, password_hash),"
        " password_changed_at = CASE WHEN ? = 1 THEN ? ELSE password_changed_at END WHERE username = ?",
        [role, int(disabled), now, password_hash, int(password_hash is not None), now, username],
    )


def replace_password(conn: Connection, username: str, old_hash: str | None, new_hash: str, now: float) -> bool:
    """Replace the password of an enabled operator whose hash is still ``old_hash``; False if it changed."""
    cur = conn.execute(
        "UPDATE operators SET password_hash = ?, password_changed_at = ?, updated_at = ?"
        " WHERE username = ? AND password_hash = ? AND disabled = 0",
        [new_hash, now, now, username, old_hash],
    )
    return cur.rowcount == 1


def note_login(conn: Connection, username: str, now: float, new_hash: str | None) -> None:
    """Stamp ``last_login_at``; a ``new_hash`` (rehashed with the current costs) replaces the stored one."""
    conn.execute(
        "UPDATE operators SET last_login_at = ?, password_hash = COALESCE(?, password_hash) WHERE username = ?",
        [now, new_hash, username],
    )


# ---- sessions -----------------------------------------------------------------------------------------


def insert_session(conn: Connection, id_hash: str, username: str, csrf: str, now: float) -> None:
    conn.execute(
        "INSERT INTO sessions (id_hash, username, csrf_token, created_at, last_seen_at) VALUES (?, ?, ?, ?, ?)",
        [id_hash, username, csrf, now, now],
    )


def delete_expired_sessions(conn: Connection, now: float, config: ServerConfig) -> None:
    conn.execute(
        "DELETE FROM sessions WHERE last_seen_at <= ? OR created_at <= ?",
        [now - config.session_idle_seconds, now - config.session_max_seconds],
    )


def delete_session(conn: Connection, id_hash: str) -> None:
    conn.execute("DELETE FROM sessions WHERE id_hash = ?", [id_hash])


def end_sessions(conn: Connection, username: str, *, keep: str | None = None) -> None:
    """End every session of ``username`` but the one whose id hash is ``keep``."""
    if keep is None:
        conn.execute("DELETE FROM sessions WHERE username = ?", [username])
    else:
        conn.execute("DELETE FROM sessions WHERE username = ? AND id_hash != ?", [username, keep])


# ---- API tokens ---------------------------------------------------------------------------------------


def insert_api_token(
    conn: Connection,
    token_id: str,
    name: str,
    secret_hash: str,
    role: Role,
    created_by: str,
    now: float,
    expires_at: float | None,
) -> None:
    conn.execute(
        "INSERT INTO api_tokens (id, name, secret_hash, role, created_by, created_at, expires_at)"
        " VALUES (?, ?, ?, ?, ?, ?, ?)",
        [token_id, name, secret_hash, role, created_by, now, expires_at],
    )


def list_api_tokens(db: Database) -> list[dict[str, Any]]:
    """Every API token, newest first, without any secret material."""
    cols = "id, name, role, created_by, created_at, expires_at, revoked_at, revoked_by, last_used_at"
    return list(db.query(f"SELECT {cols} FROM api_tokens ORDER BY created_at DESC, id"))  # noqa: S608 (constant)


def api_token_revocation(db: Database, token_id: str) -> dict[str, Any] | None:
    """``{"revoked_at": ...}`` (None while valid) for a known token; None for an unknown one."""
    return one(db, "SELECT revoked_at FROM api_tokens WHERE id = ?", [token_id])


def mark_revoked(conn: Connection, token_id: str, actor: str, now: float) -> None:
    conn.execute("UPDATE api_tokens SET revoked_at = ?, revoked_by = ? WHERE id = ?", [now, actor, token_id])
