"""The falls report (pure): fall, still-on-floor and bed-exit counts per group."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, fields
from typing import Any

from fleet.reports.grouping import BY_ROOM, Grouping, finish


@dataclass
class FallStats:
    falls: int = 0
    still_on_floor: int = 0
    bed_exits: int = 0

    def add(self, row: Mapping[str, Any]) -> None:
        app, kind = row.get("app"), row.get("type")
        if app == "fall" and kind == "fall":
            self.falls += 1
        elif app == "fall" and kind == "still_on_floor":
            self.still_on_floor += 1
        elif app == "bed_exit" and kind == "bed_exit":
            self.bed_exits += 1

    def merge(self, other: FallStats) -> None:
        for f in fields(self):
            setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))

    def as_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


def falls_report(rows: Iterable[Mapping[str, Any]], grouping: Grouping = BY_ROOM) -> dict[str, dict[str, Any]]:
    """Fall, still-on-floor and bed-exit counts per group, with the total under ``(all)``."""
    groups: dict[str, FallStats] = defaultdict(FallStats)
    for row in rows:
        if row.get("app") in ("fall", "bed_exit"):
            groups[grouping.key(row, row["time"])].add(row)
    return finish(groups, grouping, FallStats)
