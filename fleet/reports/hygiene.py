"""The hand-hygiene report (pure): counts and compliance rates per group from the hand_hygiene app's events."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, fields
from typing import Any

from fleet.reports.grouping import BY_ROOM, Grouping, finish, ratio


@dataclass
class HygieneStats:
    opportunities: int = 0
    compliant: int = 0
    missed: int = 0
    unknown: int = 0
    entries: int = 0
    compliant_entries: int = 0
    missed_entries: int = 0
    unknown_entries: int = 0
    exits: int = 0
    compliant_exits: int = 0
    missed_exits: int = 0
    unknown_exits: int = 0

    def add(self, row: Mapping[str, Any]) -> None:
        outcome = {"opportunity": "compliant", "missed": "missed", "unknown": "unknown"}.get(row["type"])
        if outcome is None:
            return
        self.opportunities += 1
        setattr(self, outcome, getattr(self, outcome) + 1)
        entry = (row.get("data") or {}).get("entry")
        if entry is True or entry is False:
            side = "entries" if entry else "exits"
            setattr(self, side, getattr(self, side) + 1)
            name = f"{outcome}_{side}"
            setattr(self, name, getattr(self, name) + 1)

    def merge(self, other: HygieneStats) -> None:
        for f in fields(self):
            setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {f.name: getattr(self, f.name) for f in fields(self)}
        out["compliance"] = ratio(self.compliant_entries, self.compliant_entries + self.missed_entries)
        out["exit_compliance"] = ratio(self.compliant_exits, self.compliant_exits + self.missed_exits)
        return out


def hygiene_report(rows: Iterable[Mapping[str, Any]], grouping: Grouping = BY_ROOM) -> dict[str, dict[str, Any]]:
    """Hand-hygiene counts and rates per group from hand_hygiene events, with the total under ``(all)``."""
    groups: dict[str, HygieneStats] = defaultdict(HygieneStats)
    for row in rows:
        if row.get("app") == "hand_hygiene":
            groups[grouping.key(row, row["time"])].add(row)
    return finish(groups, grouping, HygieneStats)
