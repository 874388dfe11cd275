"""The fleet server's error response: every refusal is a 4xx with a JSON ``{"error": ...}`` and a log line."""

from __future__ import annotations

import json

from aiohttp import web


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
