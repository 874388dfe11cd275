"""The fleet's database: opening it (SQLite through sqlite-utils by default: an owner-only file, WAL; or
PostgreSQL when the location is a ``postgresql://`` URL, :mod:`fleet.store.pg`), applying the migrations, and the
tables every feature reads: enrollment tokens, devices and events. One instance per thread that uses it.

:func:`connect` is the one way the database is opened, by the server and by every ``wardsight fleet`` command
alike (the same journal mode and pragmas), and it is safe next to a running server, in another process or in
the same one (``wardsight demo`` runs the server in its own process): outside SQLite it only creates a missing
``fleet.db``; it never opens, closes, replaces or deletes an existing one or its ``-wal`` and ``-shm`` files,
never changes the journal mode back, and leaves checkpoints to SQLite.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
from dataclasses import asdict
from pathlib import Path
from typing import Any

import sqlite_utils

from fleet.store import migrations, pg
from fleet.store.batch import GroupCommit
from fleet.store.connection import Database
from fleet.store.records import TokenRecord
from fleet.store.schema import transaction
from wardsight.wire import Event

BUSY_TIMEOUT_MS = 10_000  # how long a statement waits for another connection's write lock (a CLI, the server)

# Set on every connection, by every process: WAL (persistent in the file; what lets a CLI write while the server
# reads and writes), a busy timeout instead of "database is locked", foreign keys, and full fsync on commit.
PRAGMAS = (
    f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}",
    "PRAGMA foreign_keys = ON",
    "PRAGMA synchronous = FULL",
)

_creating = threading.Lock()


def connect(path: Path | str) -> sqlite3.Connection:
    """A connection to the fleet database at ``path`` (created owner-only if missing) in WAL mode with
    :data:`PRAGMAS`: autocommit, explicit transactions (:func:`fleet.store.schema.transaction`). No migrations."""
    memory = str(path) == ":memory:"
    if not memory:
        _create_private(Path(path))
    conn = sqlite3.connect(str(path), timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None)
    try:
        conn.execute(PRAGMAS[0])  # the busy timeout first: switching to WAL may wait for a lock
        if not memory:
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise sqlite3.OperationalError(f"{path}: cannot use WAL journal mode (got {mode!r})")
        for pragma in PRAGMAS[1:]:
            conn.execute(pragma)
    except BaseException:
        conn.close()
        raise
    return conn


def _create_private(path: Path) -> None:
    """Create ``path`` empty and 0600 if it does not exist; narrow an existing one's mode to 0600.

    It holds webhook HMAC secrets, diagnostics and event history: owner only (SQLite gives its -wal and -shm
    files the database file's mode). An existing database file is never opened here: closing any descriptor of
    a file drops every POSIX lock this process holds on it, among them the lock by which an open connection of
    this process (the server, when ``wardsight demo`` or a test runs it in-process) tells other processes that
    the database is in use. Without that lock the next connection another process closed (any ``wardsight
    fleet`` command) believed it was the last one, checkpointed and deleted ``-wal`` and ``-shm`` under the
    server, and the server's next writes corrupted the database.
    """
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    with _creating:  # no connection of this process opens a file created here before its descriptor is closed
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o600)
        except FileExistsError:
            if os.stat(path).st_mode & 0o077:
                os.chmod(path, 0o600)  # by name: opens nothing
        else:
            os.close(fd)


def open_database(location: Path | str) -> Database:
    """The database at ``location``: a ``postgresql://`` URL, else a SQLite file (or ``:memory:``). No migrations."""
    if pg.is_url(location):
        return pg.PgDatabase(pg.PgConnection(str(location)))
    return sqlite_utils.Database(connect(location))


class FleetDB:
    def __init__(self, location: Path | str) -> None:
        self.db: Any = open_database(location)
        self._jti_purged_at = float("-inf")
        try:
            migrations.migrate(self.db.conn)
        except BaseException:
            self.db.conn.close()
            raise
        self.group = GroupCommit(self.db.conn)  # device requests' writes, committed together (fleet.store.batch)

    def close(self) -> None:
        self.db.conn.close()

    # ---- tokens -------------------------------------------------------------------------------------

    def add_token(self, record: TokenRecord) -> None:
        row = asdict(record)
        self.db.conn.execute(
            f"INSERT INTO tokens ({', '.join(row)}) VALUES ({', '.join(':' + c for c in row)})",  # noqa: S608 - our keys
            row,
        )

    def get_token(self, token_id: str) -> TokenRecord | None:
        fields = ", ".join(TokenRecord.__dataclass_fields__)
        rows = list(self.db.query(f"SELECT {fields} FROM tokens WHERE id = ?", [token_id]))  # noqa: S608
        if not rows:
            return None
        row = rows[0]
        row["require_approval"] = bool(row["require_approval"])
        return TokenRecord(**row)

    def list_tokens(self, now: float, include_finished: bool = False) -> list[dict[str, Any]]:
        """Tokens without their hashes; by default only those that can still enroll a device."""
        cols = (
            "id, room, site, ward, require_approval, created_at, created_by, expires_at, used_at, device_id, revoked_at"
        )
        where = "" if include_finished else " WHERE used_at IS NULL AND revoked_at IS NULL AND expires_at > ?"
        rows = self.db.query(
            f"SELECT {cols} FROM tokens{where} ORDER BY created_at DESC",  # noqa: S608 - our constants
            [] if include_finished else [now],
        )
        return [dict(r, require_approval=bool(r["require_approval"])) for r in rows]

    def revoke_token(self, token_id: str, now: float) -> bool:
        cur = self.db.conn.execute(
            "UPDATE tokens SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL AND used_at IS NULL", [now, token_id]
        )
        return cur.rowcount == 1

    def enroll(self, token_id: str, device: dict[str, Any], now: float) -> bool:
        """Consume the token and add the device atomically; False if the token was used meanwhile."""
        with transaction(self.db.conn) as conn:
            cur = conn.execute(
                "UPDATE tokens SET used_at = ?, device_id = ? WHERE id = ? AND used_at IS NULL",
                [now, device["id"], token_id],
            )
            if cur.rowcount != 1:
                return False  # nothing was changed: the empty transaction commits
            columns = ", ".join(device)
            conn.execute(
                f"INSERT INTO devices ({columns}) VALUES ({', '.join(':' + c for c in device)})",  # noqa: S608 - our keys
                device,
            )
        return True

    # ---- devices ------------------------------------------------------------------------------------

    def get_device(self, device_id: str) -> dict[str, Any] | None:
        cur = self.db.conn.execute("SELECT * FROM devices WHERE id = ?", [device_id])  # on every device request
        row = cur.fetchone()
        return dict(zip([c[0] for c in cur.description], row, strict=True)) if row is not None else None

    def public_key_in_use(self, public_key: str) -> bool:
        row = self.db.conn.execute("SELECT COUNT(*) FROM devices WHERE public_key = ?", [public_key]).fetchone()
        return bool(row[0])

    DEVICE_COLUMNS = (
        "id, name, site, ward, room, status, status_reason, status_changed_at, status_changed_by, enrolled_at,"
        " last_seen, credential_expires_at, tags"
    )

    def list_devices(self) -> list[dict[str, Any]]:
        rows = self.db.query(f"SELECT {self.DEVICE_COLUMNS} FROM devices ORDER BY site, ward, room, name")  # noqa: S608
        return [_device_view(r) for r in rows]

    def device_view(self, device_id: str) -> dict[str, Any] | None:
        rows = list(self.db.query(f"SELECT {self.DEVICE_COLUMNS} FROM devices WHERE id = ?", [device_id]))  # noqa: S608
        return _device_view(rows[0]) if rows else None

    def set_status(
        self, device_id: str, status: str, *, reason: str | None, by: str, now: float, allowed_from: tuple[str, ...]
    ) -> bool:
        """Move a device to ``status`` if it is in one of ``allowed_from``; revoking also ends its credential."""
        marks = ", ".join("?" for _ in allowed_from)
        clear = ", credential_id = NULL, credential_expires_at = NULL" if status == "revoked" else ""
        cur = self.db.conn.execute(
            f"UPDATE devices SET status = ?, status_reason = ?, status_changed_at = ?, status_changed_by = ?{clear}"  # noqa: S608
            f" WHERE id = ? AND status IN ({marks})",
            [status, reason, now, by, device_id, *allowed_from],
        )
        return cur.rowcount == 1

    def set_credential(self, device_id: str, credential_id: str | None, expires_at: float | None) -> None:
        self.db.conn.execute(
            "UPDATE devices SET credential_id = ?, credential_expires_at = ? WHERE id = ?",
            [credential_id, expires_at, device_id],
        )

    def replace_credential(self, device_id: str, old_id: str | None, new_id: str, expires_at: float) -> bool:
        """Swap the current credential atomically: False if ``old_id`` is no longer current (a race or reuse)."""
        if old_id is None:
            cur = self.db.conn.execute(
                "UPDATE devices SET credential_id = ?, credential_expires_at = ?"
                " WHERE id = ? AND credential_id IS NULL AND status = 'active'",
                [new_id, expires_at, device_id],
            )
        else:
            cur = self.db.conn.execute(
                "UPDATE devices SET credential_id = ?, credential_expires_at = ?"
                " WHERE id = ? AND credential_id = ? AND status = 'active'",
                [new_id, expires_at, device_id, old_id],
            )
        return cur.rowcount == 1

    JTI_PURGE_SECONDS = 60.0

    def remember_jti(self, device_id: str, jti: str, expires_at: float, now: float) -> bool:
        """Record a proof id; False if it was seen before (a replay). Forgets ids past their window (once a minute:
        a forgotten id is one whose nonce has expired, so keeping it a little longer refuses nothing more)."""
        conn = self.db.conn
        if not self._jti_purged_at <= now < self._jti_purged_at + self.JTI_PURGE_SECONDS:
            conn.execute("DELETE FROM proof_jti WHERE expires_at < ?", [now])
            self._jti_purged_at = now
        cur = conn.execute(
            "INSERT OR IGNORE INTO proof_jti (device_id, jti, expires_at) VALUES (?, ?, ?)",
            [device_id, jti, expires_at],
        )
        return cur.rowcount == 1

    def touch(self, device_id: str, now: float) -> None:
        self.db.conn.execute("UPDATE devices SET last_seen = ? WHERE id = ?", [now, device_id])

    # ---- events -------------------------------------------------------------------------------------

    def insert_event(self, event: Event, received_at: float) -> bool:
        """Store ``event`` once and mark its device seen; False if its id was already stored. Only
        :func:`fleet.intake.store` calls this: it also queues the event's webhook deliveries in the same
        transaction."""
        row = event.model_dump(exclude={"v"})
        row["data"] = json.dumps(row["data"], sort_keys=True)
        row["received_at"] = received_at
        with transaction(self.db.conn) as conn:
            cur = conn.execute(
                "INSERT OR IGNORE INTO events (event_id, device_id, room, app, type, severity, time,"
                " received_at, track_id, confidence, data) VALUES (:event_id, :device_id, :room, :app,"
                " :type, :severity, :time, :received_at, :track_id, :confidence, :data)",
                row,
            )
            if event.app != "system":  # the server's own notes about a device are not signs of life
                conn.execute("UPDATE devices SET last_seen = ? WHERE id = ?", [received_at, event.device_id])
        return cur.rowcount == 1

    def recent_events(self, limit: int = 50) -> list[dict[str, Any]]:
        rows = list(self.db.query("SELECT * FROM events ORDER BY received_at DESC LIMIT ?", [limit]))
        for row in rows:
            row["data"] = json.loads(row["data"] or "{}")
        return rows

    def count_events(self) -> int:
        return int(self.db.conn.execute("SELECT COUNT(*) FROM events").fetchone()[0])


def _device_view(row: dict[str, Any]) -> dict[str, Any]:
    row = dict(row)
    row["tags"] = json.loads(row["tags"]) if row.get("tags") else []
    return row
