"""Migration 3: operator accounts, sessions, login failures and API tokens (part of the 2026-12-07 baseline:
idempotent)."""

from __future__ import annotations

from fleet.store.schema import executing

STATEMENTS = (
    """CREATE TABLE IF NOT EXISTS operators (
        username TEXT PRIMARY KEY,
        password_hash TEXT NOT NULL,
        role TEXT NOT NULL CHECK (role IN ('viewer', 'operator', 'admin')),
        disabled INTEGER NOT NULL DEFAULT 0,
        created_at REAL NOT NULL,
        created_by TEXT NOT NULL,
        updated_at REAL NOT NULL,
        password_changed_at REAL NOT NULL,
        last_login_at REAL
    )""",
    """CREATE TABLE IF NOT EXISTS sessions (
        id_hash TEXT PRIMARY KEY,
        username TEXT NOT NULL REFERENCES operators (username) ON DELETE CASCADE,
        csrf_token TEXT NOT NULL,
        created_at REAL NOT NULL,
        last_seen_at REAL NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS sessions_username ON sessions (username)",
    """CREATE TABLE IF NOT EXISTS login_failures (
        username TEXT PRIMARY KEY,
        failures INTEGER NOT NULL,
        last_attempt_at REAL NOT NULL,
        locked_until REAL
    )""",
    """CREATE TABLE IF NOT EXISTS api_tokens (
        id TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        secret_hash TEXT NOT NULL,
        role TEXT NOT NULL CHECK (role IN ('viewer', 'operator', 'admin')),
        created_by TEXT NOT NULL,
        created_at REAL NOT NULL,
        expires_at REAL,
        revoked_at REAL,
        revoked_by TEXT,
        last_used_at REAL
    )""",
)

apply = executing(STATEMENTS)
