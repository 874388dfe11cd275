"""The fleet's SQLite store, through sqlite-utils. One instance per thread that uses it."""

from __future__ import annotations

import json
import sqlite3
from dataclasses import asdict
from pathlib import Path
from typing import Any

import sqlite_utils

from fleet.tokens import TokenRecord
from wardsight.wire import Event


class FleetDB:
    def __init__(self, path: Path | str) -> None:
        if str(path) != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(str(path), timeout=10.0, isolation_level=None)
        conn.execute("PRAGMA busy_timeout = 10000")
        if str(path) != ":memory:":
            conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA foreign_keys = ON")
        self.db = sqlite_utils.Database(conn)
        self._migrate()

    def close(self) -> None:
        self.db.conn.close()

    def _migrate(self) -> None:
        db = self.db
        if "tokens" not in db.table_names():
            db.table("tokens").create(
                {
                    "id": str,
                    "secret_hash": str,
                    "room": str,
                    "created_at": float,
                    "expires_at": float,
                    "used_at": float,
                    "device_id": str,
                },
                pk="id",
                not_null={"secret_hash", "room", "created_at", "expires_at"},
            )
        if "devices" not in db.table_names():
            db.table("devices").create(
                {
                    "id": str,
                    "name": str,
                    "room": str,
                    "public_key": str,
                    "enrolled_at": float,
                    "last_seen": float,
                    "token_id": str,
                },
                pk="id",
                not_null={"name", "room", "public_key", "enrolled_at"},
            )
            db.table("devices").create_index(["public_key"], unique=True)
        if "events" not in db.table_names():
            db.table("events").create(
                {
                    "event_id": str,
                    "device_id": str,
                    "room": str,
                    "app": str,
                    "type": str,
                    "severity": str,
                    "time": float,
                    "received_at": float,
                    "track_id": int,
                    "confidence": float,
                    "data": str,
                },
                pk="event_id",
                foreign_keys=[("device_id", "devices", "id")],
                not_null={"device_id", "room", "app", "type", "severity", "time", "received_at"},
            )
            db.table("events").create_index(["received_at"])
        # Tables owned by the server's other modules (imported here so the dependency stays one way).
        from fleet import audit, delivery, health, operators

        for module in (audit, operators, delivery, health):
            module.migrate(db)

    # ---- tokens -------------------------------------------------------------------------------------

    def add_token(self, record: TokenRecord) -> None:
        self.db.table("tokens").insert(asdict(record))

    def get_token(self, token_id: str) -> TokenRecord | None:
        rows = list(self.db.table("tokens").rows_where("id = ?", [token_id]))
        return TokenRecord(**rows[0]) if rows else None

    def enroll(self, token_id: str, device: dict[str, Any], now: float) -> bool:
        """Consume the token and add the device atomically; False if the token was used meanwhile."""
        conn = self.db.conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            cur = conn.execute(
                "UPDATE tokens SET used_at = ?, device_id = ? WHERE id = ? AND used_at IS NULL",
                [now, device["id"], token_id],
            )
            if cur.rowcount != 1:
                conn.execute("ROLLBACK")
                return False
            conn.execute(
                "INSERT INTO devices (id, name, room, public_key, enrolled_at, last_seen, token_id)"
                " VALUES (:id, :name, :room, :public_key, :enrolled_at, :last_seen, :token_id)",
                device,
            )
            conn.execute("COMMIT")
            return True
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise

    # ---- devices ------------------------------------------------------------------------------------

    def get_device(self, device_id: str) -> dict[str, Any] | None:
        rows = list(self.db.table("devices").rows_where("id = ?", [device_id]))
        return rows[0] if rows else None

    def public_key_in_use(self, public_key: str) -> bool:
        return bool(self.db.table("devices").count_where("public_key = ?", [public_key]))

    def list_devices(self) -> list[dict[str, Any]]:
        cols = "id, name, room, enrolled_at, last_seen"
        return list(self.db.table("devices").rows_where(select=cols, order_by="room, name"))

    # ---- events -------------------------------------------------------------------------------------

    def store_event(self, event: Event, received_at: float) -> bool:
        """Store ``event`` once and mark its device seen; False if its id was already stored."""
        row = event.model_dump(exclude={"v"})
        row["data"] = json.dumps(row["data"], sort_keys=True)
        row["received_at"] = received_at
        conn = self.db.conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            cur = conn.execute(
                "INSERT OR IGNORE INTO events (event_id, device_id, room, app, type, severity, time,"
                " received_at, track_id, confidence, data) VALUES (:event_id, :device_id, :room, :app,"
                " :type, :severity, :time, :received_at, :track_id, :confidence, :data)",
                row,
            )
            stored = cur.rowcount == 1
            conn.execute("UPDATE devices SET last_seen = ? WHERE id = ?", [received_at, event.device_id])
            if stored:
                from fleet import delivery

                delivery.enqueue_for_event(self.db, event, received_at)
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        return stored

    def recent_events(self, limit: int = 50) -> list[dict[str, Any]]:
        rows = list(self.db.table("events").rows_where(order_by="received_at desc", limit=limit))
        for row in rows:
            row["data"] = json.loads(row["data"] or "{}")
        return rows

    def count_events(self) -> int:
        return self.db.table("events").count
