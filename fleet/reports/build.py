"""A report of one kind from the database: read its rows (:mod:`fleet.reports.store`), then aggregate them."""

from __future__ import annotations

from typing import Any, Literal, get_args

from fleet.reports.falls import falls_report
from fleet.reports.grouping import BY_ROOM, Grouping
from fleet.reports.hygiene import hygiene_report
from fleet.reports.occupancy import occupancy_report
from fleet.reports.store import EVERYWHERE, Scope, read_rows
from fleet.store.connection import Database

Kind = Literal["hygiene", "occupancy", "falls"]
KINDS: tuple[str, ...] = get_args(Kind)


def build_report(
    db: Database,
    kind: str,
    start: float,
    end: float,
    *,
    now: float,
    grouping: Grouping = BY_ROOM,
    scope: Scope = EVERYWHERE,
) -> dict[str, dict[str, Any]]:
    rows = read_rows(db, kind, start, end, scope)
    if kind == "hygiene":
        return hygiene_report(rows, grouping)
    if kind == "falls":
        return falls_report(rows, grouping)
    return occupancy_report(rows, start, min(end, now), grouping)
