"""The event rows a report reads, in SQL: the kinds' event types over a time range, within a scope."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from fleet.reports.grouping import DAY
from fleet.store.connection import Database
from fleet.store.schema import conditions

LOOKBACK_SECONDS = DAY  # how far before ``from`` occupancy follows a device's state (alone periods, counts)

_TYPES: dict[str, str] = {
    "hygiene": "e.app = 'hand_hygiene' AND e.type IN ('opportunity', 'missed', 'unknown')",
    "falls": "((e.app = 'fall' AND e.type IN ('fall', 'still_on_floor'))"
    " OR (e.app = 'bed_exit' AND e.type = 'bed_exit'))",
    "occupancy": "((e.app = 'occupancy' AND e.type IN ('count_changed', 'patient_alone', 'patient_attended',"
    " 'over_capacity', 'after_hours_visitor'))"
    " OR (e.app = 'system' AND e.type IN ('device_offline', 'device_online')))",
}
_COLUMNS = "e.event_id, e.device_id, e.room, d.ward, d.site, e.app, e.type, e.time, e.data"


@dataclass(frozen=True)
class Scope:
    room: str | None = None
    ward: str | None = None
    site: str | None = None

    def sql(self) -> tuple[str, list[Any]]:
        clauses, params = conditions(("e.room = ?", self.room), ("d.ward = ?", self.ward), ("d.site = ?", self.site))
        return "".join(f" AND {clause}" for clause in clauses), params


EVERYWHERE = Scope()  # the default scope: every room, ward and site


def _decode(rows: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for row in rows:
        row["data"] = json.loads(row["data"] or "{}")
        out.append(row)
    return out


def read_rows(db: Database, kind: str, start: float, end: float, scope: Scope = EVERYWHERE) -> list[dict[str, Any]]:
    """The event rows a report of ``kind`` over ``[start, end)`` needs (occupancy: with the state before)."""
    where, params = scope.sql()
    base = f"SELECT {_COLUMNS} FROM events e LEFT JOIN devices d ON d.id = e.device_id WHERE {_TYPES[kind]}{where}"  # noqa: S608
    if kind != "occupancy":
        return _decode(db.query(base + " AND e.time >= ? AND e.time < ?", [*params, start, end]))
    lookback = start - LOOKBACK_SECONDS
    rows = {r["event_id"]: r for r in db.query(base + " AND e.time >= ? AND e.time < ?", [*params, lookback, end])}
    # Each device's last count and last stated capacity from before the lookback: the event of each device whose
    # time is that device's latest (ties: the one stored last), in SQL both backends read the same way.
    for seed in ("count_changed", "over_capacity"):
        sql = (
            f"SELECT {_COLUMNS} FROM events e LEFT JOIN devices d ON d.id = e.device_id"  # noqa: S608 - our constants
            f" WHERE e.app = 'occupancy' AND e.type = ? AND e.time < ?{where} AND NOT EXISTS (SELECT 1 FROM events l"
            " WHERE l.device_id = e.device_id AND l.app = 'occupancy' AND l.type = e.type AND l.time < ?"
            + (" AND l.room = e.room" if scope.room is not None else "")  # (the scope's room only, as before)
            + " AND (l.time > e.time OR (l.time = e.time AND l.rowid > e.rowid)))"
        )
        for row in db.query(sql, [seed, lookback, *params, lookback]):
            rows.setdefault(row["event_id"], row)
    return _decode(rows.values())
