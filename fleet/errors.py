"""The fleet server's error response: every refusal is a 4xx with a JSON ``{"error": ...}`` and a log line."""

from __future__ import annotations

import json

from aiohttp import web


class RejectedError(web.HTTPException):
    """A 4xx with a JSON body; raised by handlers, logged by the app's error middleware."""

    def __init__(self, status: int, reason: str, *, headers: dict[str, str] | None = None) -> None:
        self.status_code = status
        super().__init__(text=json.dumps({"error": reason}), content_type="application/json", headers=headers)
        self.why = reason
