"""How report rows are grouped (by room, ward or shift in the server's local time) and how the groups'
statistics become a report with its total row. Pure: data and time zone in, groups out."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, tzinfo
from typing import Any, Literal, get_args

Group = Literal["room", "ward", "shift"]
GROUPS: tuple[str, ...] = get_args(Group)
TOTAL = "(all)"
NO_WARD = "(none)"
DAY = 86400.0


@dataclass(frozen=True)
class Shift:
    """Local hours ``[start, end)``; wraps past midnight when ``start > end``."""

    name: str
    start: int
    end: int

    def contains(self, hour: int) -> bool:
        return self.start <= hour < self.end if self.start < self.end else (hour >= self.start or hour < self.end)


DEFAULT_SHIFTS = (Shift("day", 7, 15), Shift("evening", 15, 23), Shift("night", 23, 7))


def shift_of(t: float, shifts: Sequence[Shift] = DEFAULT_SHIFTS, tz: tzinfo | None = None) -> str:
    """The shift a Unix time falls in, by the local hour (``tz`` None: the server's local time)."""
    hour = datetime.fromtimestamp(t, tz).hour
    for shift in shifts:
        if shift.contains(hour):
            return shift.name
    raise ValueError(f"no shift covers hour {hour}")


def hour_boundaries(a: float, b: float, tz: tzinfo | None = None) -> Iterator[float]:
    """Every whole local hour strictly between ``a`` and ``b`` (where a shift can change)."""
    t = a
    while True:
        local = datetime.fromtimestamp(t, tz)
        t += 3600.0 - (local.minute * 60 + local.second + local.microsecond / 1e6)
        if t >= b:
            return
        yield t


@dataclass(frozen=True)
class Grouping:
    """How rows (and, for occupancy, moments) map to report groups."""

    by: Group = "room"
    shifts: Sequence[Shift] = DEFAULT_SHIFTS
    tz: tzinfo | None = None

    def key(self, row: Mapping[str, Any], t: float) -> str:
        if self.by == "room":
            return str(row["room"])
        if self.by == "ward":
            return str(row.get("ward") or NO_WARD)
        return shift_of(t, self.shifts, self.tz)

    def cuts(self, a: float, b: float) -> Iterable[float]:
        """Where an interval must be split because its group may change (only shifts change in time)."""
        return hour_boundaries(a, b, self.tz) if self.by == "shift" else ()

    def order(self, keys: Iterable[str]) -> list[str]:
        if self.by == "shift":
            names = [s.name for s in self.shifts]
            return sorted(keys, key=lambda k: names.index(k) if k in names else len(names))
        return sorted(keys)


BY_ROOM = Grouping()  # the default grouping


def ratio(num: float, den: float) -> float | None:
    return num / den if den else None


def finish(groups: Mapping[str, Any], grouping: Grouping, empty: Callable[[], Any]) -> dict[str, dict[str, Any]]:
    """Each group's statistics as a dict, in the grouping's order, then their sum under :data:`TOTAL`."""
    keys = grouping.order(groups)
    if grouping.by == "shift":  # every shift has a row, even without data
        keys = grouping.order(set(keys) | {s.name for s in grouping.shifts})
    total = empty()
    out: dict[str, dict[str, Any]] = {}
    for key in keys:
        stats = groups.get(key) or empty()
        total.merge(stats)
        out[key] = stats.as_dict()
    out[TOTAL] = total.as_dict()
    return out
