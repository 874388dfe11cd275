"""Query-string parsing: unknown parameters, numbers, identifiers and choices, each refused with a 400 naming the
parameter.

Every query parameter has bounds. :func:`check_query_text` (run by the error middleware on every request) bounds
every value's length and refuses control characters; :func:`query_number` takes plain ASCII decimal numbers only
(no ``nan``, ``inf``, ``1_000``, ``0x10`` or non-ASCII digits) no longer than :data:`MAX_NUMBER_CHARS`, and bounds
each by the ``low``/``high`` its caller gives, else by :data:`PARAMETER_BOUNDS` for the parameters the routes
share, else by its kind's range (SQLite's integers; finite floats).
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence, Set
from typing import TypeVar

from aiohttp import web

from fleet.web.errors import RejectedError
from wardsight import wire

N = TypeVar("N", int, float)

MAX_QUERY_VALUE_CHARS = 1024  # free-text searches included
MAX_QUERY_PARAMS = 32
MAX_NUMBER_CHARS = 32  # longer is no number a route takes (and int() of thousands of digits is slow)

SQLITE_INTEGER = (-(2**63), 2**63 - 1)
UNIX_SECONDS = (0.0, 1e11)  # 1970 up to the year 5138: every time a route takes
# The bounds of the numeric parameters the routes share, by name. A route may narrow them (e.g. its own page
# limit) by passing ``low``/``high``.
PARAMETER_BOUNDS: dict[str, tuple[float, float]] = {
    "limit": (1, 10_000),  # a page size; each route has its own, smaller maximum
    "before": (0, SQLITE_INTEGER[1]),  # a paging cursor: a row id or sequence number
    "after": (0, SQLITE_INTEGER[1]),  # a stream cursor
    "since": UNIX_SECONDS,
    "until": UNIX_SECONDS,
    "from": UNIX_SECONDS,
    "to": UNIX_SECONDS,
    "wait": (0.0, 3600.0),  # seconds of a long poll
}

_INTEGER = re.compile(r"[+-]?[0-9]+", re.ASCII)
_DECIMAL = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?", re.ASCII)
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def check_query_text(request: web.Request) -> None:
    """400 for a query string with too many parameters, a name or value too long, or a control character."""
    items = list(request.query.items())
    if len(items) > MAX_QUERY_PARAMS:
        raise RejectedError(400, f"at most {MAX_QUERY_PARAMS} query parameters")
    for name, value in items:
        if len(name) > 64 or _CONTROL.search(name):
            raise RejectedError(400, "a query parameter's name is too long or has control characters")
        if len(value) > MAX_QUERY_VALUE_CHARS:
            raise RejectedError(400, f"query parameter '{name}' is longer than {MAX_QUERY_VALUE_CHARS} characters")
        if _CONTROL.search(value):
            raise RejectedError(400, f"query parameter '{name}' must not contain control characters")


def check_query_params(request: web.Request, allowed: Set[str]) -> None:
    """400 for a query parameter not in ``allowed`` (the first, by name)."""
    unknown = sorted(set(request.query) - allowed)
    if unknown:
        raise RejectedError(400, f"unknown query parameter '{unknown[0]}'")


def bounds_for(name: str, kind: type[int] | type[float]) -> tuple[float, float]:
    """The bounds :func:`query_number` applies to ``name`` when its caller gives none."""
    if name in PARAMETER_BOUNDS:
        return PARAMETER_BOUNDS[name]
    return SQLITE_INTEGER if kind is int else (-math.inf, math.inf)


def _show(bound: float) -> str:
    return str(int(bound)) if float(bound).is_integer() else f"{bound:g}"


def parse_number(raw: str, name: str, kind: type[N]) -> N:
    """``raw`` as a plain ASCII decimal ``int`` or finite ``float`` (no bounds); 400 naming ``name`` otherwise."""
    what = "an integer" if kind is int else "a number"
    pattern = _INTEGER if kind is int else _DECIMAL
    if len(raw) > MAX_NUMBER_CHARS or not pattern.fullmatch(raw):
        raise RejectedError(400, f"{name} must be {what}")
    value = kind(raw)
    if not math.isfinite(value):  # a float that overflowed (1e309); ints this short are always finite
        raise RejectedError(400, f"{name} must be a finite number")
    return value


def query_number(
    request: web.Request, name: str, kind: type[N], *, low: float | None = None, high: float | None = None
) -> N | None:
    """The query parameter ``name`` as a finite ``int`` or ``float`` within bounds; None when absent or empty,
    400 otherwise. Bounds: ``low``/``high`` if given, else :func:`bounds_for` ``name``."""
    raw = request.query.get(name)
    if raw is None or raw == "":
        return None
    value = parse_number(raw, name, kind)
    default_low, default_high = bounds_for(name, kind)
    low = default_low if low is None else low
    high = default_high if high is None else high
    if not low <= value <= high:
        raise RejectedError(400, f"{name} must be between {_show(low)} and {_show(high)}")
    return value


def query_identifier(request: web.Request, name: str) -> str | None:
    """The query parameter ``name`` as a wire identifier; None when absent or empty, 400 otherwise."""
    value = request.query.get(name)
    if value is None or value == "":
        return None
    if not wire.is_identifier(value):
        raise RejectedError(400, f"{name} must be an identifier (letters, digits, _ . : -)")
    return value


def query_choice(request: web.Request, name: str, choices: Sequence[str]) -> str | None:
    """The query parameter ``name`` if it is one of ``choices``; None when absent or empty, 400 otherwise."""
    value = request.query.get(name)
    if value is None or value == "":
        return None
    if value not in choices:
        raise RejectedError(400, f"{name} must be one of {', '.join(choices)}")
    return value
