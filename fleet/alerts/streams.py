"""The live alert streams: the broker that wakes them, :func:`notify`, and serving one Server-Sent Events stream.

A stream waits on a wake-up, not on a timer, then reads the feed (:func:`fleet.alerts.store.feed_after`)
after its last id; each heartbeat reads it too and checks the caller's credentials (:func:`still_allowed`).
"""

from __future__ import annotations

import asyncio
import json
import logging
import sqlite3
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from fleet.alerts.store import FEED_PAGE, Filters, feed_after, is_alert
from fleet.auth.operator import COOKIE_NAME, has_role, sha256
from fleet.web.appkeys import CLOCK_KEY, CONFIG_KEY, DB_KEY
from fleet.web.errors import RejectedError
from wardsight import wire

log = logging.getLogger("wardsight.fleet.alerts")

HEARTBEAT_SECONDS = 15.0
WRITE_TIMEOUT_SECONDS = 30.0  # a client that stops reading this long loses its stream (it reconnects)
RETRY_MS = 3000  # EventSource reconnection delay we ask for
MAX_STREAMS = 200


# ---- waking streams -----------------------------------------------------------------------------------


@dataclass
class Broker:
    """The open streams' wake-ups; ``closing`` ends them all (the app is shutting down)."""

    streams: set[asyncio.Event] = field(default_factory=set)
    closing: bool = False
    heartbeat_seconds: float = HEARTBEAT_SECONDS

    def wake(self) -> None:
        for stream in self.streams:
            stream.set()


BROKER_KEY = web.AppKey("alerts_broker", Broker)


async def close_streams(app: web.Application) -> None:
    """End every stream (on shutdown)."""
    broker = app[BROKER_KEY]
    broker.closing = True
    broker.wake()


def notify(app: web.Application, event: wire.Event | Mapping[str, Any] | None = None) -> None:
    """Wake every alert stream after an event was stored (``event``: the wire event or its row; None: wake anyway).

    Cheap, and a no-op for events that are not alerts or when no stream is open. Call it on the event loop
    (from a handler or an app task). The streams read what is new from the database, so calling it for an
    event that was not stored, or twice, does no harm.
    """
    broker = app.get(BROKER_KEY)
    if broker is None or (event is not None and not is_alert(event)):
        return
    broker.wake()


# ---- still allowed? (read-only: a stream must not keep a session alive) -------------------------------


def still_allowed(request: web.Request, now: float) -> bool:
    """Whether the credentials that opened this stream would still be accepted for the viewer role.

    Unlike :func:`fleet.auth.operator.require` it writes nothing, so an open stream neither refreshes a
    session's idle timer nor an API token's ``last_used_at``.
    """
    db, config = request.app[DB_KEY].db, request.app[CONFIG_KEY]
    auth = request.headers.get("Authorization")
    if auth is not None:
        parts = auth.strip().partition(" ")[2].strip().split(".")
        if len(parts) != 3:
            return False
        row = db.conn.execute("SELECT revoked_at, expires_at, role FROM api_tokens WHERE id = ?", [parts[1]]).fetchone()
        return row is not None and row[0] is None and (row[1] is None or now < row[1]) and has_role(row[2], "viewer")
    cookie = request.cookies.get(COOKIE_NAME)
    if not cookie:
        return False
    row = db.conn.execute(
        "SELECT s.created_at, s.last_seen_at, o.disabled, o.role FROM sessions s"
        " JOIN operators o ON o.username = s.username WHERE s.id_hash = ?",
        [sha256(cookie)],
    ).fetchone()
    return (
        row is not None
        and not row[2]
        and now - row[1] < config.session_idle_seconds
        and now - row[0] < config.session_max_seconds
        and has_role(row[3], "viewer")
    )


# ---- serving one stream -------------------------------------------------------------------------------


def sse(data: dict[str, Any] | None = None, *, id: int | None = None, comment: str | None = None) -> bytes:
    """One Server-Sent Events block."""
    lines = []
    if comment is not None:
        lines.append(f": {comment}")
    if id is not None:
        lines.append(f"id: {id}")
    if data is not None:
        lines.append("data: " + json.dumps(data, separators=(",", ":"), allow_nan=False))
    return ("\n".join(lines) + "\n\n").encode("utf-8")


async def serve(request: web.Request, filters: Filters, cursor: int) -> web.StreamResponse:
    """Stream the feed after ``cursor`` that matches ``filters`` until the client leaves, its credentials
    lapse or the app shuts down (503 when :data:`MAX_STREAMS` are open)."""
    broker = request.app[BROKER_KEY]
    if len(broker.streams) >= MAX_STREAMS:
        raise RejectedError(503, "too many alert streams open; retry later", headers={"Retry-After": "30"})
    response = web.StreamResponse(
        headers={"Content-Type": "text/event-stream", "Cache-Control": "no-store", "X-Accel-Buffering": "no"}
    )
    wake = asyncio.Event()
    broker.streams.add(wake)
    try:
        await response.prepare(request)
        await _pump(request, response, wake, filters, cursor)
    except (ConnectionError, TimeoutError) as exc:  # the client went away or stopped reading
        log.debug("alert stream ended: %s: %s", type(exc).__name__, exc)
    except sqlite3.OperationalError as exc:  # e.g. the database stayed locked: end; EventSource reconnects
        log.warning("alert stream ended: database error: %s", exc)
    finally:
        broker.streams.discard(wake)
    return response


async def _pump(
    request: web.Request, response: web.StreamResponse, wake: asyncio.Event, filters: Filters, cursor: int
) -> None:
    """Send ``ready``, then the feed as it grows, with a keepalive (and a credentials check) every heartbeat."""
    app, db = request.app, request.app[DB_KEY].db
    broker = app[BROKER_KEY]

    async def send(chunk: bytes) -> None:
        await asyncio.wait_for(response.write(chunk), WRITE_TIMEOUT_SECONDS)

    await send(f"retry: {RETRY_MS}\n".encode() + sse({"kind": "ready", "cursor": cursor}, id=cursor))
    while not broker.closing:
        wake.clear()
        messages, cursor = feed_after(db, cursor, filters)
        for message in messages:
            await send(sse(message, id=message["seq"]))
        if len(messages) == FEED_PAGE:
            continue  # more to replay
        try:
            await asyncio.wait_for(wake.wait(), broker.heartbeat_seconds)
        except TimeoutError:
            if not still_allowed(request, app[CLOCK_KEY]()):
                await send(sse({"kind": "closed", "reason": "session or token no longer valid"}))
                return
            await send(sse(id=cursor, comment="keepalive"))  # the id also moves a filtered stream's cursor
