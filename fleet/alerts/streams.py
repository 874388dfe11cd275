"""The live alert streams: the broker that wakes them and holds their slots, :func:`notify`, and serving one
Server-Sent Events stream.

A stream waits on a wake-up, not on a timer, then reads the feed (:func:`fleet.alerts.store.feed_after`)
after its last id; each heartbeat reads it too and checks the caller's credentials (:func:`still_allowed`).
A wake-up (:meth:`Broker.wake`, :func:`notify`) reaches the streams of every worker: it goes out on the
:data:`CHANNEL` of the app's :class:`~fleet.store.signals.Signals` once :func:`bind_signals` joined them (on SQLite
straight to this process's streams; on PostgreSQL through NOTIFY to every worker, whose listener wakes its own
streams with :meth:`Broker.wake_here`).

Slots (:meth:`Broker.admit`): one session or API token holds at most ``alert_streams_per_token`` streams and one
account at most ``alert_streams_per_account`` (429 beyond either); all together at most ``alert_streams_max``, of
which the last ``alert_streams_admin_reserve`` only admins may take (503 when full). A slot is freed the moment
its client's socket closes (:func:`fleet.web.disconnect.watch`), not at the next heartbeat.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sqlite3
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from fleet.alerts.incidents import ENDING
from fleet.alerts.store import FEED_PAGE, Filters, feed_after, is_alert
from fleet.auth.operator import COOKIE_NAME, Principal, Session, has_role, sha256
from fleet.config import ServerConfig
from fleet.store.signals import SIGNALS_KEY, Signals
from fleet.web import disconnect
from fleet.web.appkeys import CLOCK_KEY, CONFIG_KEY, DB_KEY
from fleet.web.errors import RejectedError
from wardsight import wire

log = logging.getLogger("wardsight.fleet.alerts")

HEARTBEAT_SECONDS = 15.0
WRITE_TIMEOUT_SECONDS = 30.0  # a client that stops reading this long loses its stream (it reconnects)
RETRY_MS = 3000  # EventSource reconnection delay we ask for
CHANNEL = "alerts"  # the wake-up channel; its payload is always signals.ALL


# ---- slots and wake-ups -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Holder:
    """Who holds a stream: ``token`` (a session or an API token), ``account`` (``user:<name>``, or the API
    token itself) and whether an admin opened it."""

    token: str
    account: str
    admin: bool

    @classmethod
    def of(cls, principal: Principal, session: Session | None) -> Holder:
        token = principal.actor if session is None else f"session:{session.id_hash}"
        return cls(token=token, account=principal.actor, admin=principal.role == "admin")


@dataclass
class Broker:
    """The open streams' wake-ups (this worker's) and who holds them; ``closing`` ends them all (the app is
    shutting down). ``signals`` (see :func:`bind_signals`) carries :meth:`wake` to every worker."""

    streams: set[asyncio.Event] = field(default_factory=set)
    closing: bool = False
    heartbeat_seconds: float = HEARTBEAT_SECONDS
    by_token: Counter[str] = field(default_factory=Counter)
    by_account: Counter[str] = field(default_factory=Counter)
    by_others: int = 0  # streams held by viewers and operators
    signals: Signals | None = None

    def wake(self) -> None:
        """Wake every stream of every worker (this worker's only when no signals are bound)."""
        if self.signals is None:
            self.wake_here()
        else:
            self.signals.publish(CHANNEL)

    def wake_here(self, payload: str | None = None) -> None:
        """Wake this worker's streams (``payload``: the signal's, unused: every stream reads what is new)."""
        for stream in self.streams:
            stream.set()

    def bind(self, signals: Signals) -> None:
        """Send :meth:`wake` through ``signals`` and wake this worker's streams when any worker wakes them."""
        self.signals = signals
        signals.subscribe(CHANNEL, self.wake_here)

    def admit(self, holder: Holder, config: ServerConfig) -> None:
        """Count a new stream for ``holder``, or refuse it: 429 over a per-token or per-account cap, 503 when
        the server (or, for a non-admin, its share of it) is full."""
        if self.by_token[holder.token] >= config.alert_streams_per_token:
            limit, what = config.alert_streams_per_token, "this session or API token"
            raise RejectedError(
                429, f"too many alert streams open for {what} (alert_streams_per_token: at most {limit}); "
                "close one and retry", code="alert_streams_per_token", headers={"Retry-After": "5"},
            )  # fmt: skip
        if self.by_account[holder.account] >= config.alert_streams_per_account:
            limit = config.alert_streams_per_account
            raise RejectedError(
                429, f"too many alert streams open for {holder.account} (alert_streams_per_account: at most "
                f"{limit}); close one and retry", code="alert_streams_per_account", headers={"Retry-After": "5"},
            )  # fmt: skip
        shared = config.alert_streams_max - config.alert_streams_admin_reserve
        if len(self.streams) >= config.alert_streams_max or (not holder.admin and self.by_others >= shared):
            limit = config.alert_streams_max if holder.admin else shared
            raise RejectedError(
                503, f"all alert streams open to {'admins' if holder.admin else 'viewers and operators'} are in use "
                f"(at most {limit}); retry later", code="alert_streams_full", headers={"Retry-After": "30"},
            )  # fmt: skip
        self.by_token[holder.token] += 1
        self.by_account[holder.account] += 1
        self.by_others += 0 if holder.admin else 1

    def release(self, holder: Holder) -> None:
        for counter, key in ((self.by_token, holder.token), (self.by_account, holder.account)):
            counter[key] -= 1
            if counter[key] <= 0:
                del counter[key]
        self.by_others -= 0 if holder.admin else 1


BROKER_KEY = web.AppKey("alerts_broker", Broker)


def bind_signals(app: web.Application) -> None:
    """Join the app's broker to its signals (:func:`fleet.app.create_app` calls this once the features are set up;
    without it wake-ups stay in this process)."""
    broker, signals = app.get(BROKER_KEY), app.get(SIGNALS_KEY)
    if broker is not None and signals is not None and broker.signals is None:
        broker.bind(signals)


async def close_streams(app: web.Application) -> None:
    """End every stream of this worker (on shutdown)."""
    broker = app[BROKER_KEY]
    broker.closing = True
    broker.wake_here()


def notify(app: web.Application, event: wire.Event | Mapping[str, Any] | None = None) -> None:
    """Wake every alert stream of every worker after an event was stored (``event``: the wire event or its row;
    None: wake anyway).

    Cheap (on PostgreSQL one NOTIFY), and a no-op for events that are neither alerts nor the end of an incident
    (which may have resolved alerts). Call it on the event loop (from a handler or an app task). The streams read
    what is new from the database, so calling it for an event that was not stored, or twice, does no harm.
    """
    broker = app.get(BROKER_KEY)
    if broker is None or (event is not None and not (is_alert(event) or _ends_incident(event))):
        return
    broker.wake()


def _ends_incident(event: wire.Event | Mapping[str, Any]) -> bool:
    app, kind = (event.get("app"), event.get("type")) if isinstance(event, Mapping) else (event.app, event.type)
    return (app, kind) in ENDING


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


async def serve(request: web.Request, holder: Holder, filters: Filters, cursor: int) -> web.StreamResponse:
    """Stream the feed after ``cursor`` that matches ``filters`` until the client leaves, its credentials
    lapse or the app shuts down (429 or 503 when ``holder`` may not open another: :meth:`Broker.admit`)."""
    broker = request.app[BROKER_KEY]
    response = web.StreamResponse(
        headers={"Content-Type": "text/event-stream", "Cache-Control": "no-store", "X-Accel-Buffering": "no"}
    )
    wake = asyncio.Event()
    broker.admit(holder, request.app[CONFIG_KEY])
    broker.streams.add(wake)
    try:
        with disconnect.watch(request, wake.set) as gone:  # the slot is freed the moment the socket closes
            await response.prepare(request)
            await _pump(request, response, wake, gone, filters, cursor)
    except (ConnectionError, TimeoutError) as exc:  # the client went away or stopped reading
        log.debug("alert stream ended: %s: %s", type(exc).__name__, exc)
    except sqlite3.OperationalError as exc:  # e.g. the database stayed locked: end; EventSource reconnects
        log.warning("alert stream ended: database error: %s", exc)
    finally:
        broker.streams.discard(wake)
        broker.release(holder)
    return response


async def _pump(
    request: web.Request,
    response: web.StreamResponse,
    wake: asyncio.Event,
    gone: asyncio.Event,
    filters: Filters,
    cursor: int,
) -> None:
    """Send ``ready``, then the feed as it grows, with a keepalive (and a credentials check) every heartbeat,
    until the app closes or the client is ``gone``."""
    app, db = request.app, request.app[DB_KEY].db
    broker = app[BROKER_KEY]

    async def send(chunk: bytes) -> None:
        await asyncio.wait_for(response.write(chunk), WRITE_TIMEOUT_SECONDS)

    await send(f"retry: {RETRY_MS}\n".encode() + sse({"kind": "ready", "cursor": cursor}, id=cursor))
    while not broker.closing and not gone.is_set():
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
