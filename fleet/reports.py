"""Reports over stored events: hand-hygiene compliance, occupancy, falls; as JSON or CSV.

``GET /api/v1/reports/{kind}?from=&to=&group=room|ward|shift&format=json|csv[&room=&ward=&site=]`` (viewer).

- ``from`` / ``to``: Unix seconds or ISO 8601 (``2026-03-01``, ``2026-03-01T07:00``; without an offset it is
  the server's local time). Default: the last 7 days up to now; at most :data:`MAX_RANGE_DAYS` days.
  Events count by their ``time`` (when the device saw it; ``system`` events: the server's clock), in
  ``[from, to)``.
- Groups: ``room`` (the event's room), ``ward`` (the device's ward; ``(none)`` if it has none) or ``shift``:
  ``day`` 07-15, ``evening`` 15-23, ``night`` 23-07 (hours ``[start, end)``) in the **server's local
  time** (its ``TZ``), summed over all the days in the range. A total row ``(all)`` follows the groups.

Kinds (the aggregation functions are pure; their rows are ``events`` rows with ``data`` decoded and the
device's ``ward``):

- ``hygiene`` (:func:`hygiene_report`), from the hand_hygiene app's ``opportunity`` (compliant), ``missed``
  and ``unknown`` (tracking lost) events and their ``entry`` flag. ``compliance`` = compliant entries /
  (compliant + missed entries); ``exit_compliance`` likewise for exits. ``unknown`` opportunities were not
  judged by the device, so they are counted but kept out of both rates (as the app's own ``rates()`` does).
- ``occupancy`` (:func:`occupancy_report`): each device's room count is a step function of its
  ``count_changed`` events, unknown before its first one and while the device is offline (from when it
  went silent until it is back). ``mean_occupancy`` and ``max_occupancy`` are over the observed time
  (``observed_seconds``; several devices in one group: the mean people per observed room).
  ``patient_alone_seconds``: the alone periods the occupancy app reported (``patient_alone``, which fires
  only after its configured ``patient_alone_seconds``; the whole period, from when it started, counts) until
  ``patient_attended``, a room count other than 1, or the device going offline; the server cannot see the
  person leave the bed zone while still alone in the room. Periods are followed back at most
  :data:`LOOKBACK_SECONDS` before ``from``. ``over_capacity_seconds``: time with the count above the
  room's ``max_people`` as the device's last ``over_capacity`` event stated it (0 for a room that never
  raised one). Plus counts of ``patient_alone``, ``over_capacity`` and ``after_hours_visitor`` alerts.
- ``falls`` (:func:`falls_report`): ``fall`` and ``still_on_floor`` (fall app) and ``bed_exit`` counts.

CSV: a header row, then one row per group and the total; cells are numbers except the group label (empty
for no value). Any text cell that starts with ``=``, ``+``, ``-``, ``@``, tab or carriage return gets a
leading ``'`` so a spreadsheet shows it rather than running it.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, fields
from datetime import datetime, tzinfo
from itertools import pairwise
from typing import Any, Literal, cast, get_args

import sqlite_utils
from aiohttp import web

from fleet.auth.operator import require
from fleet.web.appkeys import CLOCK_KEY, DB_KEY
from fleet.web.errors import RejectedError
from fleet.web.query import check_query_params
from wardsight import wire

Kind = Literal["hygiene", "occupancy", "falls"]
Group = Literal["room", "ward", "shift"]
KINDS: tuple[str, ...] = get_args(Kind)
GROUPS: tuple[str, ...] = get_args(Group)
TOTAL = "(all)"
NO_WARD = "(none)"
DAY = 86400.0
DEFAULT_RANGE_SECONDS = 7 * DAY
MAX_RANGE_DAYS = 400
LOOKBACK_SECONDS = DAY


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


def _ratio(num: float, den: float) -> float | None:
    return num / den if den else None


# ---- hygiene --------------------------------------------------------------------------------------------


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
        out["compliance"] = _ratio(self.compliant_entries, self.compliant_entries + self.missed_entries)
        out["exit_compliance"] = _ratio(self.compliant_exits, self.compliant_exits + self.missed_exits)
        return out


def hygiene_report(rows: Iterable[Mapping[str, Any]], grouping: Grouping = Grouping()) -> dict[str, dict[str, Any]]:
    """Hand-hygiene counts and rates per group from hand_hygiene events, with the total under ``(all)``."""
    groups: dict[str, HygieneStats] = defaultdict(HygieneStats)
    for row in rows:
        if row.get("app") == "hand_hygiene":
            groups[grouping.key(row, row["time"])].add(row)
    return _finish(groups, grouping, HygieneStats)


# ---- falls ----------------------------------------------------------------------------------------------


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


def falls_report(rows: Iterable[Mapping[str, Any]], grouping: Grouping = Grouping()) -> dict[str, dict[str, Any]]:
    """Fall, still-on-floor and bed-exit counts per group, with the total under ``(all)``."""
    groups: dict[str, FallStats] = defaultdict(FallStats)
    for row in rows:
        if row.get("app") in ("fall", "bed_exit"):
            groups[grouping.key(row, row["time"])].add(row)
    return _finish(groups, grouping, FallStats)


# ---- occupancy ------------------------------------------------------------------------------------------


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
            "mean_occupancy": _ratio(self.person_seconds, self.observed_seconds),
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
        if app != "occupancy":
            return
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
    grouping: Grouping = Grouping(),
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
    return _finish(report.groups, grouping, OccupancyStats)


# ---- shared -----------------------------------------------------------------------------------------------


def _finish(groups: Mapping[str, Any], grouping: Grouping, empty: Callable[[], Any]) -> dict[str, dict[str, Any]]:
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


def _number(value: Any) -> Any:
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, float):
        return round(value, 4)
    return value


def safe_cell(value: Any) -> str:
    """A CSV cell: numbers as they are, ``None`` empty, text defused against formula injection."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return str(int(value))
    if isinstance(value, int | float):
        return repr(_number(value))
    text = str(value)
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def to_csv(report: Mapping[str, Mapping[str, Any]], group: str) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    columns = list(next(iter(report.values())).keys()) if report else []
    writer.writerow([group, *columns])
    for key, row in report.items():
        writer.writerow([safe_cell(key), *(safe_cell(row[c]) for c in columns)])
    return buffer.getvalue()


# ---- reading events ---------------------------------------------------------------------------------------

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
        clauses, params = [], []
        for column, value in (("e.room", self.room), ("d.ward", self.ward), ("d.site", self.site)):
            if value is not None:
                clauses.append(f" AND {column} = ?")
                params.append(value)
        return "".join(clauses), params


def _decode(rows: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for row in rows:
        row["data"] = json.loads(row["data"] or "{}")
        out.append(row)
    return out


def read_rows(
    db: sqlite_utils.Database, kind: str, start: float, end: float, scope: Scope = Scope()
) -> list[dict[str, Any]]:
    """The event rows a report of ``kind`` over ``[start, end)`` needs (occupancy: with the state before)."""
    where, params = scope.sql()
    base = f"SELECT {_COLUMNS} FROM events e LEFT JOIN devices d ON d.id = e.device_id WHERE {_TYPES[kind]}{where}"  # noqa: S608
    if kind != "occupancy":
        return _decode(db.query(base + " AND e.time >= ? AND e.time < ?", [*params, start, end]))
    lookback = start - LOOKBACK_SECONDS
    rows = {r["event_id"]: r for r in db.query(base + " AND e.time >= ? AND e.time < ?", [*params, lookback, end])}
    # Each device's last count and last stated capacity from before the lookback (SQLite returns the row of MAX()).
    for seed in ("count_changed", "over_capacity"):
        sql = (
            f"SELECT {_COLUMNS}, MAX(e.time) AS latest FROM events e LEFT JOIN devices d ON d.id = e.device_id"  # noqa: S608
            f" WHERE e.app = 'occupancy' AND e.type = ? AND e.time < ?{where} GROUP BY e.device_id"
        )
        for row in db.query(sql, [seed, lookback, *params]):
            row.pop("latest")
            rows.setdefault(row["event_id"], row)
    return _decode(rows.values())


def build_report(
    db: sqlite_utils.Database,
    kind: str,
    start: float,
    end: float,
    *,
    now: float,
    grouping: Grouping = Grouping(),
    scope: Scope = Scope(),
) -> dict[str, dict[str, Any]]:
    rows = read_rows(db, kind, start, end, scope)
    if kind == "hygiene":
        return hygiene_report(rows, grouping)
    if kind == "falls":
        return falls_report(rows, grouping)
    return occupancy_report(rows, start, min(end, now), grouping)


# ---- the route ----------------------------------------------------------------------------------------------

_PARAMS = frozenset({"from", "to", "group", "format", "room", "ward", "site"})


def parse_time(raw: str, name: str, tz: tzinfo | None = None) -> float:
    """Unix seconds, or ISO 8601 (a date or a date and time; without an offset: local time, ``tz`` or the server's)."""
    try:
        value = float(raw)
    except ValueError:
        try:
            parsed = datetime.fromisoformat(raw)
        except ValueError:
            raise RejectedError(400, f"{name} must be Unix seconds or an ISO 8601 date or date and time") from None
        if parsed.tzinfo is None and tz is not None:
            parsed = parsed.replace(tzinfo=tz)
        value = parsed.timestamp()
    if not math.isfinite(value) or not 0 <= value <= 1e11:
        raise RejectedError(400, f"{name} is out of range")
    return value


def _ident(request: web.Request, name: str) -> str | None:
    value = request.query.get(name) or None
    if value is not None and not wire.is_identifier(value):
        raise RejectedError(400, f"{name} must be an identifier (letters, digits, _ . : -)")
    return value


def _choice(request: web.Request, name: str, options: tuple[str, ...], default: str) -> str:
    value = request.query.get(name) or default
    if value not in options:
        raise RejectedError(400, f"{name} must be one of {', '.join(options)}")
    return value


def _stamp(t: float) -> str:
    return datetime.fromtimestamp(t).strftime("%Y%m%dT%H%M")


async def handle_report(request: web.Request) -> web.StreamResponse:
    await require(request, "viewer")
    kind = request.match_info["kind"]
    if kind not in KINDS:
        raise RejectedError(404, f"no report '{kind}'; reports are {', '.join(KINDS)}")
    check_query_params(request, _PARAMS)
    group = _choice(request, "group", GROUPS, "room")
    fmt = _choice(request, "format", ("json", "csv"), "json")
    now = request.app[CLOCK_KEY]()
    end = parse_time(request.query["to"], "to") if request.query.get("to") else now
    start = parse_time(request.query["from"], "from") if request.query.get("from") else end - DEFAULT_RANGE_SECONDS
    if start >= end:
        raise RejectedError(400, "from must be before to")
    if end - start > MAX_RANGE_DAYS * DAY:
        raise RejectedError(400, f"a report covers at most {MAX_RANGE_DAYS} days")
    scope = Scope(_ident(request, "room"), _ident(request, "ward"), _ident(request, "site"))
    grouping = Grouping(by=cast(Group, group))  # checked against GROUPS above
    report = build_report(request.app[DB_KEY].db, kind, start, end, now=now, grouping=grouping, scope=scope)
    if fmt == "csv":
        filename = f"wardsight-{kind}-by-{group}-{_stamp(start)}-{_stamp(end)}.csv"
        return web.Response(
            text=to_csv(report, group),
            content_type="text/csv",
            charset="utf-8",
            headers={"Content-Disposition": f'attachment; filename="{filename}"'},
        )
    rows = [{"group": key, **{k: _number(v) for k, v in row.items()}} for key, row in report.items() if key != TOTAL]
    body: dict[str, Any] = {
        "kind": kind,
        "group": group,
        "from": start,
        "to": end,
        "rows": rows,
        "totals": {k: _number(v) for k, v in report[TOTAL].items()},
    }
    if group == "shift":
        body["shifts"] = [{"name": s.name, "start_hour": s.start, "end_hour": s.end} for s in DEFAULT_SHIFTS]
        body["utc_offset_seconds"] = _utc_offset(start)
    return web.json_response(body)


def _utc_offset(t: float) -> float:
    offset = datetime.fromtimestamp(t).astimezone().utcoffset()
    return offset.total_seconds() if offset is not None else 0.0


def setup(app: web.Application) -> None:
    app.router.add_get("/api/v1/reports/{kind}", handle_report)
