"""What the commissioning checks read from the database (no tables of their own): the configuration a device
last applied, its occupancy reports, its test alerts and their webhook deliveries, the enabled webhooks.

Every query on ``events`` is bounded by ``received_at`` (indexed; ``+app`` keeps SQLite from preferring the
``(app, time)`` index, which would walk every occupancy event ever stored) or by ``app = 'system'`` (few rows),
so it stays cheap on a fleet with years of events.
"""

from __future__ import annotations

from dataclasses import dataclass

from fleet.commissioning.checks import Delivery
from fleet.store.connection import Database, json_number, json_text, unindexed

TEST_APP = "system"
TEST_TYPE = "test_alert"


@dataclass(frozen=True)
class AppliedConfig:
    text: str  # the device.toml (may hold camera credentials: never sent anywhere)
    applied_at: float  # when the device reported it applied (server clock)


def applied_config(db: Database, device_id: str) -> AppliedConfig | None:
    """The configuration of the device's latest ``push_config`` job that it reports it applied, if any."""
    row = db.conn.execute(
        "SELECT b.config, COALESCE(j.finished_at, j.updated_at) AS at FROM jobs j"  # noqa: S608 - our constants
        " JOIN job_batches b ON b.id = j.batch_id WHERE j.device_id = ? AND b.kind = 'push_config'"
        f" AND {json_text(db, 'b.params', 'merge')} IS NULL"  # a zone editor's edit is not a whole device.toml
        " AND j.state = 'succeeded' AND b.config IS NOT NULL ORDER BY at DESC LIMIT 1",
        [device_id],
    ).fetchone()
    return None if row is None else AppliedConfig(row[0], float(row[1]))


def last_seen_in_view(db: Database, device_id: str, since: float) -> float | None:
    """When (server clock) the device last reported someone in view since ``since``: an occupancy event whose
    count or previous count is at least one (someone arrived, stayed counted, or left)."""
    count, previous = json_number(db, "data", "count"), json_number(db, "data", "previous")
    row = db.conn.execute(
        "SELECT MAX(received_at) FROM events WHERE received_at >= ? AND device_id = ?"  # noqa: S608 - our constants
        f" AND {unindexed(db, 'app')} = 'occupancy' AND ({count} >= 1 OR {previous} >= 1)",
        [since, device_id],
    ).fetchone()
    return None if row[0] is None else float(row[0])


def room_count(db: Database, device_id: str, since: float) -> int | None:
    """The room count of the device's latest ``count_changed`` received since ``since``; None if there is none."""
    row = db.conn.execute(
        f"SELECT {json_text(db, 'data', 'count')} FROM events WHERE received_at >= ? AND device_id = ?"  # noqa: S608
        f" AND {unindexed(db, 'app')} = 'occupancy' AND type = 'count_changed' ORDER BY received_at DESC LIMIT 1",
        [since, device_id],
    ).fetchone()
    value = row[0] if row is not None else None
    if isinstance(value, str):  # PostgreSQL gives the JSON text: a whole number is its digits
        value = int(value) if value.isdigit() else None
    return value if isinstance(value, int) else None


def latest_test_alert(db: Database, device_id: str) -> tuple[str, float] | None:
    """The event id and arrival of the device's latest test alert, if it ever had one."""
    row = db.conn.execute(
        "SELECT event_id, received_at FROM events WHERE app = ? AND type = ? AND device_id = ?"
        " ORDER BY received_at DESC LIMIT 1",
        [TEST_APP, TEST_TYPE, device_id],
    ).fetchone()
    return None if row is None else (str(row[0]), float(row[1]))


def deliveries(db: Database, event_id: str) -> list[Delivery]:
    """The webhook deliveries of one event, by endpoint."""
    rows = db.conn.execute(
        "SELECT e.name, e.enabled, d.status, d.attempts, d.last_status FROM webhook_deliveries d"
        " JOIN webhook_endpoints e ON e.id = d.endpoint_id WHERE d.event_id = ? ORDER BY e.id",
        [event_id],
    ).fetchall()
    return [Delivery(name, bool(enabled), status, attempts, code) for name, enabled, status, attempts, code in rows]


def enabled_webhooks(db: Database) -> int:
    return int(db.conn.execute("SELECT COUNT(*) FROM webhook_endpoints WHERE enabled = 1").fetchone()[0])
