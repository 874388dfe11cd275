"""Query-string parsing: unknown parameters, numbers, identifiers and choices, each refused with a 400 naming the
parameter."""

from __future__ import annotations

import math
from collections.abc import Sequence, Set
from typing import TypeVar

from aiohttp import web

from fleet.web.errors import RejectedError
from wardsight import wire

N = TypeVar("N", int, float)


def check_query_params(request: web.Request, allowed: Set[str]) -> None:
    """400 for a query parameter not in ``allowed`` (the first, by name)."""
    unknown = sorted(set(request.query) - allowed)
    if unknown:
        raise RejectedError(400, f"unknown query parameter '{unknown[0]}'")


def query_number(request: web.Request, name: str, kind: type[N]) -> N | None:
    """The query parameter ``name`` as a finite ``int`` or ``float``; None when absent or empty, 400 otherwise."""
    raw = request.query.get(name)
    if raw is None or raw == "":
        return None
    try:
        value = kind(raw)
    except ValueError:
        raise RejectedError(400, f"{name} must be {'an integer' if kind is int else 'a number'}") from None
    if not math.isfinite(value):
        raise RejectedError(400, f"{name} must be a finite number")
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
