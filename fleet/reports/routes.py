"""The report route: ``GET /api/v1/reports/{kind}`` (viewer), its parameters checked here (see :mod:`fleet.reports`)."""

from __future__ import annotations

from datetime import datetime, tzinfo
from typing import cast

from aiohttp import web

from fleet.auth.operator import require
from fleet.reports.build import KINDS, build_report
from fleet.reports.grouping import DAY, GROUPS, Group, Grouping
from fleet.reports.render import csv_filename, json_body, to_csv
from fleet.reports.store import Scope
from fleet.web.appkeys import CLOCK_KEY, DB_KEY
from fleet.web.errors import RejectedError
from fleet.web.query import UNIX_SECONDS, check_query_params, parse_number, query_identifier

DEFAULT_RANGE_SECONDS = 7 * DAY
MAX_RANGE_DAYS = 400

_PARAMS = frozenset({"from", "to", "group", "format", "room", "ward", "site"})


def parse_time(raw: str, name: str, tz: tzinfo | None = None) -> float:
    """Unix seconds, or ISO 8601 (a date or a date and time; without an offset: local time, ``tz`` or the server's),
    within :data:`fleet.web.query.UNIX_SECONDS` (1970 on); 400 otherwise, the ends of the calendar included."""
    try:
        value = parse_number(raw, name, float)
    except RejectedError:
        value = _iso_seconds(raw, name, tz)
    low, high = UNIX_SECONDS
    if not low <= value <= high:
        raise RejectedError(400, f"{name} is out of range")
    return value


def _iso_seconds(raw: str, name: str, tz: tzinfo | None) -> float:
    try:
        if len(raw) > 64 or not raw.isascii():
            raise ValueError(raw)
        parsed = datetime.fromisoformat(raw)
    except ValueError:
        raise RejectedError(400, f"{name} must be Unix seconds or an ISO 8601 date or date and time") from None
    if parsed.tzinfo is None and tz is not None:
        parsed = parsed.replace(tzinfo=tz)
    try:
        return parsed.timestamp()  # 0001-01-01 or 9999-12-31 in local time fall off the calendar
    except (ValueError, OverflowError, OSError):
        raise RejectedError(400, f"{name} is out of range") from None


def _choice(request: web.Request, name: str, options: tuple[str, ...], default: str) -> str:
    value = request.query.get(name) or default
    if value not in options:
        raise RejectedError(400, f"{name} must be one of {', '.join(options)}")
    return value


def _window(request: web.Request, now: float) -> tuple[float, float]:
    """``[from, to)`` from the query (default: the last 7 days up to now), at most :data:`MAX_RANGE_DAYS` days."""
    end = parse_time(request.query["to"], "to") if request.query.get("to") else now
    start = parse_time(request.query["from"], "from") if request.query.get("from") else end - DEFAULT_RANGE_SECONDS
    if start >= end:
        raise RejectedError(400, "from must be before to")
    if end - start > MAX_RANGE_DAYS * DAY:
        raise RejectedError(400, f"a report covers at most {MAX_RANGE_DAYS} days")
    return start, end


async def handle_report(request: web.Request) -> web.StreamResponse:
    await require(request, "viewer")
    kind = request.match_info["kind"]
    if kind not in KINDS:
        raise RejectedError(404, f"no report '{kind}'; reports are {', '.join(KINDS)}")
    check_query_params(request, _PARAMS)
    group = _choice(request, "group", GROUPS, "room")
    fmt = _choice(request, "format", ("json", "csv"), "json")
    now = request.app[CLOCK_KEY]()
    start, end = _window(request, now)
    scope = Scope(
        query_identifier(request, "room"), query_identifier(request, "ward"), query_identifier(request, "site")
    )
    grouping = Grouping(by=cast(Group, group))  # checked against GROUPS above
    report = build_report(request.app[DB_KEY].db, kind, start, end, now=now, grouping=grouping, scope=scope)
    if fmt == "csv":
        return web.Response(
            text=to_csv(report, group),
            content_type="text/csv",
            charset="utf-8",
            headers={"Content-Disposition": f'attachment; filename="{csv_filename(kind, group, start, end)}"'},
        )
    return web.json_response(json_body(report, kind, group, start, end))
