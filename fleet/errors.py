"""The fleet server's error response: every refusal is a 4xx with a JSON ``{"error": ...}`` and a log line."""

from __future__ import annotations

import json
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
