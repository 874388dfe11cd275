"""A report as the route answers it: the JSON body, or CSV with text cells defused against formula injection."""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from fleet.reports.grouping import DEFAULT_SHIFTS, TOTAL


def number(value: Any) -> Any:
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
        return repr(number(value))
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


def _stamp(t: float) -> str:
    return datetime.fromtimestamp(t).strftime("%Y%m%dT%H%M")


def csv_filename(kind: str, group: str, start: float, end: float) -> str:
    """The download's name, with the range in the server's local time."""
    return f"wardsight-{kind}-by-{group}-{_stamp(start)}-{_stamp(end)}.csv"


def _utc_offset(t: float) -> float:
    offset = datetime.fromtimestamp(t).astimezone().utcoffset()
    return offset.total_seconds() if offset is not None else 0.0


def json_body(
    report: Mapping[str, Mapping[str, Any]], kind: str, group: str, start: float, end: float
) -> dict[str, Any]:
    """The JSON answer: the group rows, the totals, and for shifts the shift hours and the server's UTC offset."""
    rows = [{"group": key, **{k: number(v) for k, v in row.items()}} for key, row in report.items() if key != TOTAL]
    body: dict[str, Any] = {
        "kind": kind,
        "group": group,
        "from": start,
        "to": end,
        "rows": rows,
        "totals": {k: number(v) for k, v in report[TOTAL].items()},
    }
    if group == "shift":
        body["shifts"] = [{"name": s.name, "start_hour": s.start, "end_hour": s.end} for s in DEFAULT_SHIFTS]
        body["utc_offset_seconds"] = _utc_offset(start)
    return body
