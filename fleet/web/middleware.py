"""What every request passes through: the error middleware (every refusal a JSON 4xx and a warning naming the
peer and the reason; nothing is stored for a rejected request) and the security headers on every response."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from aiohttp import web

from fleet.web.errors import RejectedError

log = logging.getLogger("wardsight.fleet")

CREDENTIAL_HEADERS = ("Authorization", "Cookie", "X-CSRF-Token", "WardSight-Proof")
RejectionListener = Callable[[int], None]
# Who wants to hear of each refusal (its status), e.g. the metrics; a feature's setup() appends to it.
REJECTION_LISTENERS_KEY: web.AppKey[list[RejectionListener]] = web.AppKey("rejection_listeners")


@web.middleware
async def error_middleware(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    try:
        for name in CREDENTIAL_HEADERS:  # secrets travel in these; they are ASCII by construction
            value = request.headers.get(name)
            if value is not None and not value.isascii():
                raise RejectedError(400, f"the {name} header must be ASCII")
        return await handler(request)
    except RejectedError as exc:
        for listener in request.app.get(REJECTION_LISTENERS_KEY, ()):
            listener(exc.status_code)
        log.warning(
            "%s %s from %s rejected (%d): %s", request.method, request.path, request.remote, exc.status_code, exc.why
        )
        raise
    except web.HTTPRequestEntityTooLarge:
        log.warning("%s %s from %s rejected (413): body too large", request.method, request.path, request.remote)
        raise RejectedError(413, "request body too large") from None


async def security_headers(request: web.Request, response: web.StreamResponse) -> None:
    """Added on response prepare, so error responses carry them too."""
    response.headers.setdefault("Content-Security-Policy", "default-src 'self'; img-src 'none'; frame-ancestors 'none'")
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("Referrer-Policy", "no-referrer")
    response.headers.setdefault("Cache-Control", "no-store")


def install(app: web.Application) -> None:
    """Add the middleware's hooks to ``app`` (the error middleware itself goes into the Application call)."""
    app[REJECTION_LISTENERS_KEY] = []
    app.on_response_prepare.append(security_headers)
