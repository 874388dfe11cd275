"""Grouped alerts and incidents that end, in SQL (the decisions are :mod:`fleet.alerts.incidents`).

:func:`on_stored` runs inside the transaction that stores an event (:func:`fleet.intake.store`), so an event is
never stored without its place in a group, nor an ending without the alerts it resolves:

- a critical event joins one of its room's unresolved alerts of its app, or opens a new one
  (``alert_groups``: count and latest event; ``alert_members``: each event, created by
  :mod:`fleet.store.migrations.m0014_alert_groups`);
- an event that ends an incident (the fall app's ``resolved``) marks that device's and track's events in that
  room as ended, and resolves each alert whose events have all ended, by ``system``, with its audit entry (reason
  ``got up`` or ``attended``) and feed row (:func:`fleet.alerts.store.change_state`).

Webhook deliveries are not touched: every event is still queued for delivery as before.
"""

from __future__ import annotations

from typing import Any

from fleet.alerts import incidents
from fleet.alerts.store import change_state, get_alert
from fleet.store.connection import Database
from wardsight import wire


def on_stored(db: Database, event: wire.Event, received_at: float) -> list[str]:
    """Group ``event`` or end the incidents it ends (call it in the transaction that stored it, once). Returns the
    alerts (their ``event_id``) resolved by the system."""
    if incidents.is_grouped(event):
        add_to_group(db, event, received_at)
        return []
    types = incidents.ended_types(event)
    if types is None:
        return []
    return end_incidents(db, event, types, received_at)


def open_groups(db: Database, room: str, app: str) -> list[incidents.OpenGroup]:
    """The room's unresolved grouped alerts of ``app``, newest first, with the people whose incident goes on."""
    rows = db.conn.execute(
        "SELECT g.head_id, s.acknowledged_at FROM alert_groups g LEFT JOIN alert_states s ON s.event_id = g.head_id"
        " WHERE g.room = ? AND g.app = ? AND s.resolved_at IS NULL ORDER BY g.rowid DESC",
        [room, app],
    ).fetchall()
    people: dict[str, set[tuple[str, int]]] = {head: set() for head, _ in rows}
    for head, device_id, track_id in db.conn.execute(
        "SELECT m.head_id, e.device_id, e.track_id FROM alert_groups g JOIN alert_members m ON m.head_id = g.head_id"
        " JOIN events e ON e.event_id = m.event_id LEFT JOIN alert_states s ON s.event_id = g.head_id"
        " WHERE g.room = ? AND g.app = ? AND s.resolved_at IS NULL AND m.ended_at IS NULL AND e.track_id IS NOT NULL",
        [room, app],
    ):
        people[head].add((device_id, track_id))
    return [incidents.OpenGroup(head, ack is not None, frozenset(people[head])) for head, ack in rows]


def add_to_group(db: Database, event: wire.Event, received_at: float) -> str:
    """Put ``event`` into the alert it joins (:func:`fleet.alerts.incidents.group_for`) or open a new one; returns
    the alert's ``event_id``."""
    conn = db.conn
    head = incidents.group_for(event, open_groups(db, event.room, event.app))
    if head is None:
        head = event.event_id
        conn.execute(
            "INSERT INTO alert_groups (head_id, room, app, count, last_event_id, last_type, last_seen_at)"
            " VALUES (?, ?, ?, 1, ?, ?, ?)",
            [head, event.room, event.app, event.event_id, event.type, received_at],
        )
    else:
        conn.execute(
            "UPDATE alert_groups SET count = count + 1, last_event_id = ?, last_type = ?, last_seen_at = ?"
            " WHERE head_id = ?",
            [event.event_id, event.type, received_at, head],
        )
    conn.execute("INSERT INTO alert_members (event_id, head_id) VALUES (?, ?)", [event.event_id, head])
    return head


def end_incidents(db: Database, event: wire.Event, types: frozenset[str], now: float) -> list[str]:
    """Mark the incident of ``event``'s device, room and track as ended for events of ``types``; resolve, by the
    system, each alert none of whose events goes on. Returns the alerts resolved."""
    if event.track_id is None or not types:
        return []
    conn = db.conn
    rows = conn.execute(
        "SELECT m.event_id, m.head_id FROM alert_members m JOIN events e ON e.event_id = m.event_id"  # noqa: S608 - our constants
        " WHERE m.ended_at IS NULL AND e.device_id = ? AND e.room = ? AND e.app = ? AND e.track_id = ?"
        f" AND e.type IN ({', '.join('?' for _ in types)}) ORDER BY m.rowid",
        [event.device_id, event.room, event.app, event.track_id, *sorted(types)],
    ).fetchall()
    for row in rows:
        conn.execute("UPDATE alert_members SET ended_at = ? WHERE event_id = ?", [now, row[0]])
    resolved = []
    for head in dict.fromkeys(r[1] for r in rows):
        going_on = conn.execute(
            "SELECT 1 FROM alert_members WHERE head_id = ? AND ended_at IS NULL LIMIT 1", [head]
        ).fetchone()
        alert = get_alert(db, head)
        if going_on is not None or alert is None or alert["state"] == "resolved":
            continue
        reason = incidents.end_reason(event)
        details: dict[str, Any] = {"reason": reason, "ended_by": event.event_id, "track_id": event.track_id}
        change_state(db, head, "resolved", actor=incidents.SYSTEM_ACTOR, now=now, note=reason, details=details)
        resolved.append(head)
    return resolved
