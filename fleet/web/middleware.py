"""What every request passes through: the error middleware (every refusal a JSON 4xx and a warning naming the
peer and the reason, its control characters escaped by :mod:`fleet.web.logsafe`; nothing is stored for a rejected
request) and the security headers on every response (HSTS when served over TLS; a ``Server`` header without
versions)."""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Awaitable, Callable

from aiohttp import web
from aiohttp import web_response as _aiohttp_responses

from fleet.web import logsafe
from fleet.web.errors import RejectedError
from fleet.web.query import check_query_text

log = logging.getLogger("wardsight.fleet")

DATABASE_RETRY_AFTER_S = 5  # what a client is told to wait when the database is away (a restart, a fail-over)
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
        check_query_text(request)  # every value bounded, no control characters, before any handler reads one
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
    except sqlite3.OperationalError as exc:  # the database away (PostgreSQL restarting, failing over) or locked
        log.warning("%s %s from %s: database unavailable (503): %s", request.method, request.path, request.remote, exc)
        raise RejectedError(
            503,
            "the database is unavailable for a moment; nothing was stored: try again",
            code="database_unavailable",
            headers={"Retry-After": str(DATABASE_RETRY_AFTER_S)},
        ) from None


SERVER_HEADER = "WardSight"  # aiohttp's default names Python's and aiohttp's versions
HSTS = "max-age=31536000"  # a year; no includeSubDomains: the server knows nothing of its name's subdomains


async def security_headers(request: web.Request, response: web.StreamResponse) -> None:
    """Added on response prepare, so error responses carry them too."""
    response.headers["Server"] = SERVER_HEADER
    if request.secure:  # the connection itself is TLS (aiohttp trusts no forwarded header for this)
        response.headers.setdefault("Strict-Transport-Security", HSTS)
    response.headers.setdefault("Content-Security-Policy", "default-src 'self'; img-src 'none'; frame-ancestors 'none'")
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("Referrer-Policy", "no-referrer")
    response.headers.setdefault("Cache-Control", "no-store")


def install(app: web.Application) -> None:
    """Add the middleware's hooks to ``app`` (the error middleware itself goes into the Application call) and make
    the fleet's log lines safe (:func:`fleet.web.logsafe.install`)."""
    app[REJECTION_LISTENERS_KEY] = []
    logsafe.install()
    app.on_response_prepare.append(security_headers)
    # Responses aiohttp makes before any route matched (a malformed request line: 400) skip on_response_prepare
    # and take this module default, which names Python's and aiohttp's versions; every response the process
    # serves says just SERVER_HEADER instead.
    setattr(_aiohttp_responses, "SERVER_SOFTWARE", SERVER_HEADER)  # noqa: B010 - a library's module default
