"""Alerts in SQL: what an alert is, reading alerts with their state, the ordered feed the streams replay, and
acknowledging or resolving (with the audit entry and the feed row, in one transaction).

Tables (created by :mod:`fleet.store.migrations.m0008_alerts`): ``alert_states`` (one row per alert that has
been acknowledged or resolved; no row: open) and ``alert_feed`` (``seq`` per row, appended by a trigger on
``events`` for every newly stored alert and here for each change). Grouped alerts (``alert_groups``,
``alert_members``; :mod:`fleet.alerts.grouping`) are read here: a group is shown as its first event, with its count
and latest event, and its other events are not listed on their own.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from fleet.audit import log as audit
from fleet.store.connection import Database
from fleet.store.schema import conditions, transaction
from wardsight import wire

MAX_LIMIT = 500
FEED_PAGE = 200
STATES = ("open", "acknowledged", "resolved")

# The one definition of an alert, as SQL over ``events`` (also the partial index's and trigger's condition).
ALERT_SQL = "severity IN ('warning', 'critical') OR (app = 'system' AND type = 'device_offline')"


def is_alert(event: wire.Event | Mapping[str, Any]) -> bool:
    """Whether an event (or an ``events`` row) is an alert (:data:`ALERT_SQL` in Python)."""
    if isinstance(event, Mapping):
        severity, app, kind = event.get("severity"), event.get("app"), event.get("type")
    else:
        severity, app, kind = event.severity, event.app, event.type
    return severity in ("warning", "critical") or (app == "system" and kind == "device_offline")


# ---- reading alerts -----------------------------------------------------------------------------------

_ALERT_COLUMNS = (
    "e.event_id, e.device_id, d.name AS device_name, e.room, d.site, d.ward, e.app, e.type, e.severity, e.time,"
    " e.received_at, e.track_id, e.confidence, e.data, s.acknowledged_by, s.acknowledged_at, s.resolved_by,"
    " s.resolved_at, s.note, g.count AS group_count, g.last_event_id, g.last_type, g.last_seen_at"
)
# ``e`` is the alert itself: an ungrouped alert's event, or a grouped alert's first event (``g`` its group).
_ALERT_JOINS = (
    " LEFT JOIN devices d ON d.id = e.device_id LEFT JOIN alert_states s ON s.event_id = e.event_id"
    " LEFT JOIN alert_groups g ON g.head_id = e.event_id"
)
_ALERT_FROM = " FROM events e LEFT JOIN alert_members m ON m.event_id = e.event_id" + _ALERT_JOINS
# Alerts only, and of a group only its first event (the others are counted in it).
_ALERT_WHERE = (
    "(e.severity IN ('warning', 'critical') OR (e.app = 'system' AND e.type = 'device_offline'))"
    " AND (m.head_id IS NULL OR m.head_id = e.event_id)"
)
_GROUP_KEYS = ("group_count", "last_event_id", "last_type", "last_seen_at")
_STATE_SQL = {
    "open": "s.acknowledged_at IS NULL AND s.resolved_at IS NULL",
    "acknowledged": "s.acknowledged_at IS NOT NULL AND s.resolved_at IS NULL",
    "resolved": "s.resolved_at IS NOT NULL",
}


def state_of(row: Mapping[str, Any]) -> str:
    if row.get("resolved_at") is not None:
        return "resolved"
    if row.get("acknowledged_at") is not None:
        return "acknowledged"
    return "open"


def _view(row: Mapping[str, Any]) -> dict[str, Any]:
    """An alert as the API shows it; ``count`` (events in it, 1 unless grouped), ``last_seen_at``, ``last_type``
    and ``last_event_id`` (its latest event) for every alert, grouped or not."""
    view = {k: row[k] for k in row if k != "seq" and k not in _GROUP_KEYS}
    view["data"] = json.loads(row["data"] or "{}")
    view["state"] = state_of(row)
    grouped = row.get("group_count") is not None
    view["count"] = row["group_count"] if grouped else 1
    view["last_seen_at"] = row["last_seen_at"] if grouped else row["received_at"]
    view["last_type"] = row["last_type"] if grouped else row["type"]
    view["last_event_id"] = row["last_event_id"] if grouped else row["event_id"]
    return view


@dataclass(frozen=True)
class Filters:
    room: str | None = None
    ward: str | None = None
    site: str | None = None

    def sql(self, *more: tuple[str, Any]) -> tuple[list[str], list[Any]]:
        """The conditions (and their values) for these filters and ``more`` (:func:`fleet.store.schema.conditions`)."""
        return conditions(("e.room = ?", self.room), ("d.ward = ?", self.ward), ("d.site = ?", self.site), *more)


def list_alerts(
    db: Database,
    filters: Filters = Filters(),
    *,
    state: str | None = None,
    since: float | None = None,
    before: int | None = None,
    limit: int = 100,
) -> tuple[list[dict[str, Any]], int | None]:
    """Alerts newest first (by arrival) with their state, and the ``before`` of the next page (None: no more).

    ``since`` is a server time (``received_at >=``); ``before`` is an opaque paging cursor.
    """
    if not 1 <= limit <= MAX_LIMIT:
        raise ValueError(f"limit must be between 1 and {MAX_LIMIT}")
    clauses, params = filters.sql(("e.received_at >= ?", since), ("e.rowid < ?", before))
    clauses.insert(0, _ALERT_WHERE)
    if state is not None:
        clauses.append(_STATE_SQL[state])
    sql = f"SELECT e.rowid AS seq, {_ALERT_COLUMNS}{_ALERT_FROM} WHERE {' AND '.join(clauses)}"
    rows = list(db.query(sql + " ORDER BY e.rowid DESC LIMIT ?", [*params, limit]))
    return [_view(r) for r in rows], (rows[-1]["seq"] if len(rows) == limit else None)


def get_alert(db: Database, event_id: str) -> dict[str, Any] | None:
    """The alert ``event_id`` is (or, for an event grouped into another alert, the alert it is counted in)."""
    sql = (
        f"SELECT {_ALERT_COLUMNS}{_ALERT_FROM} WHERE e.event_id ="  # noqa: S608
        f" COALESCE((SELECT head_id FROM alert_members WHERE event_id = ?), ?) AND {_ALERT_WHERE}"
    )
    rows = list(db.query(sql, [event_id, event_id]))
    return _view(rows[0]) if rows else None


# ---- the feed -----------------------------------------------------------------------------------------


def feed_head(db: Database) -> int:
    """The newest feed ``seq`` (0 when empty): a stream started ``after`` it misses nothing stored later."""
    row = db.conn.execute("SELECT COALESCE(MAX(seq), 0) FROM alert_feed").fetchone()
    return int(row[0])


def feed_after(
    db: Database,
    after: int,
    filters: Filters = Filters(),
    *,
    limit: int = FEED_PAGE,
) -> tuple[list[dict[str, Any]], int]:
    """Feed messages after ``after`` that match ``filters`` (at most ``limit``) and the cursor to continue from.

    The cursor passes feed rows that did not match, so a filtered stream does not read them again.
    """
    head = feed_head(db)  # every row up to head is committed (one writer at a time, seq taken under its lock)
    clauses, params = filters.sql()
    where = " AND ".join(["f.seq > ?", "f.seq <= ?", *clauses])
    # A feed row of an event grouped into another alert is sent as that alert (kind "grouped").
    sql = (
        "SELECT f.seq, f.kind, f.at, f.actor, f.note AS change_note, f.event_id AS feed_event_id,"  # noqa: S608
        f" {_ALERT_COLUMNS} FROM alert_feed f LEFT JOIN alert_members fm ON fm.event_id = f.event_id"
        f" JOIN events e ON e.event_id = COALESCE(fm.head_id, f.event_id){_ALERT_JOINS}"
        f" WHERE {where} ORDER BY f.seq LIMIT ?"
    )
    rows = list(db.query(sql, [after, head, *params, limit]))
    messages = []
    feed_keys = ("seq", "kind", "at", "actor", "change_note", "feed_event_id")
    for row in rows:
        alert = _view({k: v for k, v in row.items() if k not in feed_keys})
        kind = row["kind"]
        if kind == "alert" and row["feed_event_id"] != alert["event_id"]:
            kind = "grouped"
        message: dict[str, Any] = {"kind": kind, "seq": row["seq"], "alert": alert}
        if kind == "grouped":
            message["event_id"] = row["feed_event_id"]
        elif kind != "alert":
            message["change"] = {"by": row["actor"], "at": row["at"], "note": row["change_note"]}
        messages.append(message)
    cursor = rows[-1]["seq"] if len(rows) == limit else max(after, head)
    return messages, cursor


# ---- acknowledging and resolving ----------------------------------------------------------------------


class AlertError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


_ALLOWED_FROM = {"acknowledged": ("open",), "resolved": ("open", "acknowledged")}


def change_state(
    db: Database,
    event_id: str,
    to: str,
    *,
    actor: str,
    now: float,
    note: str | None = None,
    details: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Acknowledge or resolve an alert (an event grouped into another alert: that alert); its audit entry (with
    ``details`` added) and feed row commit with the change. Returns the alert.

    Raises :class:`AlertError` 404 (no such alert) or 409 (not allowed from its current state).
    """
    if to not in _ALLOWED_FROM:
        raise ValueError(f"unknown alert state {to!r}")
    conn = db.conn
    with transaction(conn):
        alert = get_alert(db, event_id)
        if alert is None:
            raise AlertError(404, f"no alert {event_id}")
        event_id = alert["event_id"]
        if alert["state"] not in _ALLOWED_FROM[to]:
            raise AlertError(409, f"alert {event_id} is {alert['state']}; it cannot be {to}")
        column = "acknowledged" if to == "acknowledged" else "resolved"
        conn.execute(
            f"INSERT INTO alert_states (event_id, {column}_by, {column}_at, note) VALUES (?, ?, ?, ?)"  # noqa: S608
            f" ON CONFLICT (event_id) DO UPDATE SET {column}_by = excluded.{column}_by,"
            f" {column}_at = excluded.{column}_at, note = COALESCE(excluded.note, alert_states.note)",
            [event_id, actor, now, note],
        )
        conn.execute(
            "INSERT INTO alert_feed (event_id, kind, at, actor, note) VALUES (?, ?, ?, ?, ?)",
            [event_id, to, now, actor, note],
        )
        entry: dict[str, Any] = {"room": alert["room"], "app": alert["app"], "type": alert["type"]}
        if note is not None:
            entry["note"] = note
        entry.update(details or {})
        action = "alert.acknowledge" if to == "acknowledged" else "alert.resolve"
        audit.record(db, actor=actor, action=action, target=f"event:{event_id}", details=entry, now=now)
        changed = get_alert(db, event_id)
    assert changed is not None
    return changed
