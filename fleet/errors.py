"""The fleet server's error response: every refusal is a 4xx with a JSON ``{"error": ...}`` and a log line."""

from __future__ import annotations

import json
import math
from collections.abc import Set
from typing import TypeVar

from aiohttp import web
from pydantic import BaseModel, ValidationError


class RejectedError(web.HTTPException):
    """A 4xx with a JSON body; raised by handlers, logged by the app's error middleware.

    ``code`` is a stable machine-readable word (e.g. ``use_nonce``) for clients that act on the reason.
    """

    def __init__(
        self, status: int, reason: str, *, code: str | None = None, headers: dict[str, str] | None = None
    ) -> None:
        self.status_code = status
        body = {"error": reason} if code is None else {"error": reason, "code": code}
        super().__init__(text=json.dumps(body), content_type="application/json", headers=headers)
        self.why = reason


M = TypeVar("M", bound=BaseModel)
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


async def read_json(request: web.Request, model: type[M], *, max_bytes: int = 64 * 1024) -> M:
    """Parse a JSON request body into ``model``: 415 for another content type, 413 too large, 400 otherwise."""
    if request.content_type != "application/json":
        raise RejectedError(415, "content type must be application/json")
    raw = await request.read()
    if len(raw) > max_bytes:
        raise RejectedError(413, f"body larger than {max_bytes} bytes")
    try:
        return model.model_validate_json(raw)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(map(str, err["loc"])) or "body"
        raise RejectedError(400, f"{where}: {err['msg']}") from None
