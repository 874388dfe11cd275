"""The occupancy report (pure): each device's room count as a step function of its events, summed per group.

A device's count is unknown before its first ``count_changed`` and while it is offline (from when it went
silent until it is back). ``patient_alone`` periods count from when they started until ``patient_attended``,
a count other than 1, or the device going offline; ``over_capacity_seconds`` is time above the room's
``max_people`` as the device's last ``over_capacity`` event stated it. See :mod:`fleet.reports`.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field, fields
from itertools import pairwise
from typing import Any

from fleet.reports.grouping import BY_ROOM, Grouping, finish, ratio


@dataclass
class OccupancyStats:
    observed_seconds: float = 0.0
    person_seconds: float = 0.0  # integral of the count over the observed time
    max_occupancy: int | None = None
    patient_alone_seconds: float = 0.0
    over_capacity_seconds: float = 0.0
    patient_alone_alerts: int = 0
    over_capacity_alerts: int = 0
    after_hours_visitor_alerts: int = 0

    def merge(self, other: OccupancyStats) -> None:
        for f in fields(self):
            mine, theirs = getattr(self, f.name), getattr(other, f.name)
            if f.name == "max_occupancy":
                setattr(self, f.name, theirs if mine is None else mine if theirs is None else max(mine, theirs))
            else:
                setattr(self, f.name, mine + theirs)

    def as_dict(self) -> dict[str, Any]:
        return {
            "observed_seconds": self.observed_seconds,
            "mean_occupancy": ratio(self.person_seconds, self.observed_seconds),
            "max_occupancy": self.max_occupancy,
            "patient_alone_seconds": self.patient_alone_seconds,
            "over_capacity_seconds": self.over_capacity_seconds,
            "patient_alone_alerts": self.patient_alone_alerts,
            "over_capacity_alerts": self.over_capacity_alerts,
            "after_hours_visitor_alerts": self.after_hours_visitor_alerts,
        }


@dataclass
class _Device:
    context: Mapping[str, Any]  # the latest row: room and ward for grouping
    since: float = -math.inf  # start of the current state
    count: int | None = None  # None: unknown
    last_count: int | None = None
    max_people: int | None = None
    alone: bool = False


@dataclass
class _Occupancy:
    start: float
    end: float
    grouping: Grouping
    groups: dict[str, OccupancyStats] = field(default_factory=lambda: defaultdict(OccupancyStats))

    def pieces(self, context: Mapping[str, Any], a: float, b: float) -> Iterator[tuple[OccupancyStats, float]]:
        """``[a, b)`` clipped to the report window and split where the group may change: (group, seconds)."""
        a, b = max(a, self.start), min(b, self.end)
        if b <= a:
            return
        points = [a, *self.grouping.cuts(a, b), b]
        for p, q in pairwise(points):
            yield self.groups[self.grouping.key(context, p)], q - p

    def hold(self, dev: _Device, until: float) -> None:
        """Account for the device's state from ``dev.since`` to ``until``."""
        if dev.count is not None:
            for stats, seconds in self.pieces(dev.context, dev.since, until):
                stats.observed_seconds += seconds
                stats.person_seconds += dev.count * seconds
                stats.max_occupancy = dev.count if stats.max_occupancy is None else max(stats.max_occupancy, dev.count)
                if dev.alone:
                    stats.patient_alone_seconds += seconds
                if dev.max_people is not None and dev.count > dev.max_people:
                    stats.over_capacity_seconds += seconds
        dev.since = max(dev.since, until)

    def count_alert(self, context: Mapping[str, Any], t: float, name: str) -> None:
        if self.start <= t < self.end:
            stats = self.groups[self.grouping.key(context, t)]
            setattr(stats, name, getattr(stats, name) + 1)

    def apply(self, dev: _Device, row: Mapping[str, Any]) -> None:
        t, kind, data = float(row["time"]), row["type"], row.get("data") or {}
        app = row.get("app")
        if app == "system" and kind == "device_offline":
            silent = float(data.get("silent_s", 0.0))
            self.hold(dev, max(dev.since, t - silent))
            if dev.count is not None:
                dev.last_count = dev.count
            dev.count, dev.alone = None, False
            dev.since = max(dev.since, t)
            return
        self.hold(dev, t)
        dev.context = row
        if app == "system" and kind == "device_online":
            if dev.count is None:
                dev.count = dev.last_count
            return
        if app == "occupancy":
            self.apply_occupancy(dev, row, t, kind, data)

    def apply_occupancy(
        self, dev: _Device, row: Mapping[str, Any], t: float, kind: str, data: Mapping[str, Any]
    ) -> None:
        """An occupancy app event (the device's state is held up to ``t`` already)."""
        if kind == "count_changed" and isinstance(data.get("count"), int):
            dev.count = dev.last_count = int(data["count"])
            if dev.count != 1:
                dev.alone = False
        elif kind == "patient_alone":
            self.count_alert(row, t, "patient_alone_alerts")
            seconds = float(data.get("seconds_alone", 0.0))
            if dev.count is not None and not dev.alone:  # the period began before the alert: count it from then
                for stats, piece in self.pieces(row, t - seconds, t):
                    stats.patient_alone_seconds += piece
            dev.alone = dev.count is not None
        elif kind == "patient_attended":
            dev.alone = False
        elif kind == "over_capacity":
            self.count_alert(row, t, "over_capacity_alerts")
            if isinstance(data.get("max_people"), int):
                dev.max_people = int(data["max_people"])
        elif kind == "after_hours_visitor":
            self.count_alert(row, t, "after_hours_visitor_alerts")


def occupancy_report(
    rows: Iterable[Mapping[str, Any]],
    start: float,
    end: float,
    grouping: Grouping = BY_ROOM,
) -> dict[str, dict[str, Any]]:
    """Occupancy per group over ``[start, end)`` from occupancy and system events, with the total under ``(all)``.

    ``rows`` may begin before ``start`` (they set the state the window starts in); each device's rows are
    taken in time order.
    """
    report = _Occupancy(start, end, grouping)
    devices: dict[str, _Device] = {}
    ordered = sorted(rows, key=lambda r: (r["device_id"], float(r["time"])))
    for row in ordered:
        if row.get("app") not in ("occupancy", "system"):
            continue
        dev = devices.setdefault(row["device_id"], _Device(context=row))
        report.apply(dev, row)
    for dev in devices.values():
        report.hold(dev, end)
    return finish(report.groups, grouping, OccupancyStats)
