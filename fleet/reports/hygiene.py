"""The hand-hygiene report (pure): counts and compliance rates per group from the hand_hygiene app's events."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from typing import Any

from fleet.reports.grouping import BY_ROOM, Grouping, finish, ratio

OUTCOMES = ("compliant", "missed", "unknown")
SIDES = ("entries", "exits")
# The report's counts, in its column order: opportunities and each outcome, then per side its count and its outcomes'.
COUNTS = ("opportunities", *OUTCOMES, *(name for side in SIDES for name in (side, *(f"{o}_{side}" for o in OUTCOMES))))


class HygieneStats:
    def __init__(self) -> None:
        self.counts = dict.fromkeys(COUNTS, 0)

    def add(self, row: Mapping[str, Any]) -> None:
        outcome = {"opportunity": "compliant", "missed": "missed", "unknown": "unknown"}.get(row["type"])
        if outcome is None:
            return
        names = ["opportunities", outcome]
        entry = (row.get("data") or {}).get("entry")
        if entry is True or entry is False:
            side = "entries" if entry else "exits"
            names += [side, f"{outcome}_{side}"]
        for name in names:
            self.counts[name] += 1

    def merge(self, other: HygieneStats) -> None:
        for name, count in other.counts.items():
            self.counts[name] += count

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = dict(self.counts)
        out["compliance"] = ratio(out["compliant_entries"], out["compliant_entries"] + out["missed_entries"])
        out["exit_compliance"] = ratio(out["compliant_exits"], out["compliant_exits"] + out["missed_exits"])
        return out


def hygiene_report(rows: Iterable[Mapping[str, Any]], grouping: Grouping = BY_ROOM) -> dict[str, dict[str, Any]]:
    """Hand-hygiene counts and rates per group from hand_hygiene events, with the total under ``(all)``."""
    groups: dict[str, HygieneStats] = defaultdict(HygieneStats)
    for row in rows:
        if row.get("app") == "hand_hygiene":
            groups[grouping.key(row, row["time"])].add(row)
    return finish(groups, grouping, HygieneStats)
