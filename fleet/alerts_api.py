"""Alerts for the console: list, acknowledge, resolve, and a live Server-Sent Events stream.

An **alert** is a stored event with severity ``warning`` or ``critical`` (the server's own ``system`` /
``device_offline`` announcements are warnings, so they are alerts too). Its state is ``open`` until an
operator acknowledges it (``acknowledged``) or resolves it (``resolved``); ``open -> acknowledged ->
resolved`` and ``open -> resolved`` are the only transitions (anything else is a 409). Each change is
written with its audit entry in one transaction.

Routes (``viewer`` reads, ``operator`` changes):

- ``GET /api/v1/alerts?room=&ward=&site=&state=open|acknowledged|resolved&since=&before=&limit=``: newest
  first (by arrival; ``since`` is the server's ``received_at``), each with ``state``, who acknowledged or
  resolved it and when, and ``note``; ``next_before`` pages back, ``stream_after`` starts a stream that
  misses nothing after this list. ``GET /api/v1/rooms/{room}/alerts`` is the same for one room.
- ``POST /api/v1/alerts/{event_id}/acknowledge`` and ``/resolve``, optional JSON ``{"note": "..."}``
  (at most 500 characters, no control characters): ``{"alert": {...}}``; 404 unknown, 409 wrong state.
- ``GET /api/v1/alerts/stream?room=&ward=&site=&after=``: the stream described below.

Storage (this module's, created by :func:`migrate`):

- ``alert_states``: one row per alert that has been acknowledged or resolved (no row: open).
- ``alert_feed``: the ordered feed the stream replays, ``seq`` (AUTOINCREMENT, never reused) per row.
  A trigger on ``events`` appends a row for every newly stored alert in the same transaction as the
  insert, whoever stores it (device API, offline monitor, CLI, another process); acknowledging and
  resolving append theirs. So the feed is complete even if nobody calls :func:`notify`.

The stream (``GET /api/v1/alerts/stream``) sends each feed row as one unnamed SSE message whose ``id`` is
the feed ``seq`` and whose ``data`` is JSON: ``{"kind": "ready", "cursor": N}`` first, then
``{"kind": "alert" | "acknowledged" | "resolved", "seq": N, "alert": {...}}``. A reconnecting
``EventSource`` sends ``Last-Event-ID`` and gets everything after it; a first connection may pass
``?after=N`` (the ``stream_after`` of ``GET /api/v1/alerts``) so nothing between the list and the stream is
lost; without either it starts from now. Comments (``: keepalive``) go out every
:data:`HEARTBEAT_SECONDS`. A stream waits on a wake-up, not on a timer: :func:`notify` wakes every stream,
which then reads the feed after its last id (so a missed or early notify loses nothing; each heartbeat
reads it too, which bounds the delay for events stored by another process). Each heartbeat also checks that
the caller's session or API token is still valid; if not, it sends ``{"kind": "closed", "reason": ...}`` and ends.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import re
import sqlite3
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Annotated, Any

import sqlite_utils
from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from fleet import audit
from fleet.auth.operator import COOKIE_NAME, has_role, require
from fleet.store.schema import transaction
from fleet.web import events
from fleet.web.appkeys import CLOCK_KEY, CONFIG_KEY, DB_KEY
from fleet.web.body import read_json
from fleet.web.errors import RejectedError
from fleet.web.query import check_query_params, query_number
from wardsight import wire

log = logging.getLogger("wardsight.fleet.alerts")

HEARTBEAT_SECONDS = 15.0
WRITE_TIMEOUT_SECONDS = 30.0  # a client that stops reading this long loses its stream (it reconnects)
RETRY_MS = 3000  # EventSource reconnection delay we ask for
MAX_STREAMS = 200
MAX_LIMIT = 500
FEED_PAGE = 200
MAX_NOTE = 500
STATES = ("open", "acknowledged", "resolved")

# The one definition of an alert, as SQL over ``events`` (also the partial index's and trigger's condition).
ALERT_SQL = "severity IN ('warning', 'critical') OR (app = 'system' AND type = 'device_offline')"


# ---- reading alerts -----------------------------------------------------------------------------------

_ALERT_COLUMNS = (
    "e.event_id, e.device_id, e.room, d.site, d.ward, e.app, e.type, e.severity, e.time, e.received_at,"
    " e.track_id, e.confidence, e.data, s.acknowledged_by, s.acknowledged_at, s.resolved_by, s.resolved_at, s.note"
)
_ALERT_FROM = (
    " FROM events e LEFT JOIN devices d ON d.id = e.device_id LEFT JOIN alert_states s ON s.event_id = e.event_id"
)
_ALERT_WHERE = "(e.severity IN ('warning', 'critical') OR (e.app = 'system' AND e.type = 'device_offline'))"
_STATE_SQL = {
    "open": "s.acknowledged_at IS NULL AND s.resolved_at IS NULL",
    "acknowledged": "s.acknowledged_at IS NOT NULL AND s.resolved_at IS NULL",
    "resolved": "s.resolved_at IS NOT NULL",
}


def state_of(row: Mapping[str, Any]) -> str:
    if row.get("resolved_at") is not None:
        return "resolved"
    if row.get("acknowledged_at") is not None:
        return "acknowledged"
    return "open"


def _view(row: Mapping[str, Any]) -> dict[str, Any]:
    view = {k: row[k] for k in row if k != "seq"}
    view["data"] = json.loads(row["data"] or "{}")
    view["state"] = state_of(row)
    return view


@dataclass(frozen=True)
class Filters:
    room: str | None = None
    ward: str | None = None
    site: str | None = None

    def sql(self) -> tuple[list[str], list[Any]]:
        clauses, params = [], []
        for column, value in (("e.room", self.room), ("d.ward", self.ward), ("d.site", self.site)):
            if value is not None:
                clauses.append(f"{column} = ?")
                params.append(value)
        return clauses, params


def list_alerts(
    db: sqlite_utils.Database,
    filters: Filters = Filters(),
    *,
    state: str | None = None,
    since: float | None = None,
    before: int | None = None,
    limit: int = 100,
) -> tuple[list[dict[str, Any]], int | None]:
    """Alerts newest first (by arrival) with their state, and the ``before`` of the next page (None: no more).

    ``since`` is a server time (``received_at >=``); ``before`` is an opaque paging cursor.
    """
    if not 1 <= limit <= MAX_LIMIT:
        raise ValueError(f"limit must be between 1 and {MAX_LIMIT}")
    clauses, params = filters.sql()
    clauses.insert(0, _ALERT_WHERE)
    if state is not None:
        clauses.append(_STATE_SQL[state])
    if since is not None:
        clauses.append("e.received_at >= ?")
        params.append(since)
    if before is not None:
        clauses.append("e.rowid < ?")
        params.append(before)
    sql = f"SELECT e.rowid AS seq, {_ALERT_COLUMNS}{_ALERT_FROM} WHERE {' AND '.join(clauses)}"
    rows = list(db.query(sql + " ORDER BY e.rowid DESC LIMIT ?", [*params, limit]))
    return [_view(r) for r in rows], (rows[-1]["seq"] if len(rows) == limit else None)


def get_alert(db: sqlite_utils.Database, event_id: str) -> dict[str, Any] | None:
    sql = f"SELECT {_ALERT_COLUMNS}{_ALERT_FROM} WHERE e.event_id = ? AND {_ALERT_WHERE}"
    rows = list(db.query(sql, [event_id]))
    return _view(rows[0]) if rows else None


def feed_head(db: sqlite_utils.Database) -> int:
    """The newest feed ``seq`` (0 when empty): a stream started ``after`` it misses nothing stored later."""
    row = db.conn.execute("SELECT COALESCE(MAX(seq), 0) FROM alert_feed").fetchone()
    return int(row[0])


def feed_after(
    db: sqlite_utils.Database,
    after: int,
    filters: Filters = Filters(),
    *,
    limit: int = FEED_PAGE,
) -> tuple[list[dict[str, Any]], int]:
    """Feed messages after ``after`` that match ``filters`` (at most ``limit``) and the cursor to continue from.

    The cursor passes feed rows that did not match, so a filtered stream does not read them again.
    """
    head = feed_head(db)  # every row up to head is committed (one writer at a time, seq taken under its lock)
    clauses, params = filters.sql()
    where = " AND ".join(["f.seq > ?", "f.seq <= ?", *clauses])
    sql = (
        f"SELECT f.seq, f.kind, f.at, f.actor, f.note AS change_note, {_ALERT_COLUMNS}"  # noqa: S608
        f" FROM alert_feed f JOIN events e ON e.event_id = f.event_id"
        " LEFT JOIN devices d ON d.id = e.device_id LEFT JOIN alert_states s ON s.event_id = e.event_id"
        f" WHERE {where} ORDER BY f.seq LIMIT ?"
    )
    rows = list(db.query(sql, [after, head, *params, limit]))
    messages = []
    for row in rows:
        alert = _view({k: v for k, v in row.items() if k not in ("seq", "kind", "at", "actor", "change_note")})
        message: dict[str, Any] = {"kind": row["kind"], "seq": row["seq"], "alert": alert}
        if row["kind"] != "alert":
            message["change"] = {"by": row["actor"], "at": row["at"], "note": row["change_note"]}
        messages.append(message)
    cursor = rows[-1]["seq"] if len(rows) == limit else max(after, head)
    return messages, cursor


# ---- acknowledging and resolving ----------------------------------------------------------------------


class AlertError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


_ALLOWED_FROM = {"acknowledged": ("open",), "resolved": ("open", "acknowledged")}


def change_state(
    db: sqlite_utils.Database, event_id: str, to: str, *, actor: str, now: float, note: str | None = None
) -> dict[str, Any]:
    """Acknowledge or resolve an alert; its audit entry and feed row commit with the change. Returns the alert.

    Raises :class:`AlertError` 404 (no such alert) or 409 (not allowed from its current state).
    """
    if to not in _ALLOWED_FROM:
        raise ValueError(f"unknown alert state {to!r}")
    conn = db.conn
    with transaction(conn):
        alert = get_alert(db, event_id)
        if alert is None:
            raise AlertError(404, f"no alert {event_id}")
        if alert["state"] not in _ALLOWED_FROM[to]:
            raise AlertError(409, f"alert {event_id} is {alert['state']}; it cannot be {to}")
        column = "acknowledged" if to == "acknowledged" else "resolved"
        conn.execute(
            f"INSERT INTO alert_states (event_id, {column}_by, {column}_at, note) VALUES (?, ?, ?, ?)"  # noqa: S608
            f" ON CONFLICT (event_id) DO UPDATE SET {column}_by = excluded.{column}_by,"
            f" {column}_at = excluded.{column}_at, note = COALESCE(excluded.note, alert_states.note)",
            [event_id, actor, now, note],
        )
        conn.execute(
            "INSERT INTO alert_feed (event_id, kind, at, actor, note) VALUES (?, ?, ?, ?, ?)",
            [event_id, to, now, actor, note],
        )
        details: dict[str, Any] = {"room": alert["room"], "app": alert["app"], "type": alert["type"]}
        if note is not None:
            details["note"] = note
        action = "alert.acknowledge" if to == "acknowledged" else "alert.resolve"
        audit.record(db, actor=actor, action=action, target=f"event:{event_id}", details=details, now=now)
        changed = get_alert(db, event_id)
    assert changed is not None
    return changed


# ---- waking streams -----------------------------------------------------------------------------------


@dataclass
class _Broker:
    streams: set[asyncio.Event] = field(default_factory=set)
    closing: bool = False
    heartbeat_seconds: float = HEARTBEAT_SECONDS

    def wake(self) -> None:
        for stream in self.streams:
            stream.set()


BROKER_KEY = web.AppKey("alerts_broker", _Broker)


def is_alert(event: wire.Event | Mapping[str, Any]) -> bool:
    """Whether an event (or an ``events`` row) is an alert."""
    if isinstance(event, Mapping):
        severity, app, kind = event.get("severity"), event.get("app"), event.get("type")
    else:
        severity, app, kind = event.severity, event.app, event.type
    return severity in ("warning", "critical") or (app == "system" and kind == "device_offline")


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


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def still_allowed(request: web.Request, now: float) -> bool:
    """Whether the credentials that opened this stream would still be accepted for the viewer role.

    Unlike :func:`fleet.require` it writes nothing, so an open stream neither refreshes a session's
    idle timer nor an API token's ``last_used_at``.
    """
    db, config = request.app[DB_KEY].db, request.app[CONFIG_KEY]
    auth = request.headers.get("Authorization")
    if auth is not None:
        parts = auth.strip().partition(" ")[2].strip().split(".")
        if len(parts) != 3:
            return False
        row = db.conn.execute("SELECT revoked_at, expires_at, role FROM api_tokens WHERE id = ?", [parts[1]]).fetchone()
        return (
            row is not None
            and row[0] is None
            and (row[1] is None or now < row[1])
            and has_role(row[2], "viewer")
        )
    cookie = request.cookies.get(COOKIE_NAME)
    if not cookie:
        return False
    row = db.conn.execute(
        "SELECT s.created_at, s.last_seen_at, o.disabled, o.role FROM sessions s"
        " JOIN operators o ON o.username = s.username WHERE s.id_hash = ?",
        [_sha256(cookie)],
    ).fetchone()
    return (
        row is not None
        and not row[2]
        and now - row[1] < config.session_idle_seconds
        and now - row[0] < config.session_max_seconds
        and has_role(row[3], "viewer")
    )


# ---- query parameters ---------------------------------------------------------------------------------


def _ident(request: web.Request, name: str) -> str | None:
    value = request.query.get(name)
    if value is None or value == "":
        return None
    if not wire.is_identifier(value):
        raise RejectedError(400, f"{name} must be an identifier (letters, digits, _ . : -)")
    return value


def _filters(request: web.Request, room: str | None = None) -> Filters:
    return Filters(room=room or _ident(request, "room"), ward=_ident(request, "ward"), site=_ident(request, "site"))


# ---- routes -------------------------------------------------------------------------------------------

_LIST_PARAMS = frozenset({"room", "ward", "site", "state", "since", "before", "limit"})


async def _list(request: web.Request, room: str | None) -> web.Response:
    await require(request, "viewer")
    check_query_params(request, _LIST_PARAMS - ({"room"} if room is not None else set()))
    state = request.query.get("state") or None
    if state is not None and state not in STATES:
        raise RejectedError(400, f"state must be one of {', '.join(STATES)}")
    limit = query_number(request, "limit", int)
    limit = 100 if limit is None else limit
    if not 1 <= limit <= MAX_LIMIT:
        raise RejectedError(400, f"limit must be between 1 and {MAX_LIMIT}")
    db = request.app[DB_KEY].db
    head = feed_head(db)  # before the query: a stream started after it also gets what arrives meanwhile
    alerts, next_before = list_alerts(
        db,
        _filters(request, room),
        state=state,
        since=query_number(request, "since", float),
        before=query_number(request, "before", int),
        limit=limit,
    )
    return web.json_response({"alerts": alerts, "next_before": next_before, "stream_after": head})


async def handle_list(request: web.Request) -> web.Response:
    return await _list(request, None)


async def handle_room(request: web.Request) -> web.Response:
    room = request.match_info["room"]
    if not wire.is_identifier(room):
        raise RejectedError(400, "room must be an identifier (letters, digits, _ . : -)")
    return await _list(request, room)


class NoteBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    note: Annotated[str, Field(min_length=1, max_length=MAX_NOTE)] | None = None


_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


async def _change(request: web.Request, to: str) -> web.Response:
    principal = await require(request, "operator")
    note = None
    raw = await request.read() if request.can_read_body else b""
    if raw.strip():  # the body is optional: no body (or an empty one) means no note
        note = (await read_json(request, NoteBody, max_bytes=4096)).note
    if note is not None and _CONTROL.search(note):
        raise RejectedError(400, "note: control characters are not allowed")
    event_id = request.match_info["event_id"]
    try:
        alert = change_state(
            request.app[DB_KEY].db, event_id, to, actor=principal.actor, now=request.app[CLOCK_KEY](), note=note
        )
    except AlertError as exc:
        raise RejectedError(exc.status, str(exc)) from None
    log.info("alert %s %s by %s", event_id, to, principal.actor)
    request.app[BROKER_KEY].wake()
    return web.json_response({"alert": alert})


async def handle_acknowledge(request: web.Request) -> web.Response:
    return await _change(request, "acknowledged")


async def handle_resolve(request: web.Request) -> web.Response:
    return await _change(request, "resolved")


def _start_cursor(request: web.Request, db: sqlite_utils.Database) -> int:
    for raw, name in ((request.headers.get("Last-Event-ID"), "Last-Event-ID"), (request.query.get("after"), "after")):
        if raw is None or raw.strip() == "":
            continue
        raw = raw.strip()
        if not raw.isdigit() or len(raw) > 18:
            raise RejectedError(400, f"{name} must be a stream id (a non-negative integer)")
        return int(raw)
    return feed_head(db)


def _sse(data: dict[str, Any] | None = None, *, id: int | None = None, comment: str | None = None) -> bytes:
    lines = []
    if comment is not None:
        lines.append(f": {comment}")
    if id is not None:
        lines.append(f"id: {id}")
    if data is not None:
        lines.append("data: " + json.dumps(data, separators=(",", ":"), allow_nan=False))
    return ("\n".join(lines) + "\n\n").encode("utf-8")


async def handle_stream(request: web.Request) -> web.StreamResponse:
    await require(request, "viewer")
    check_query_params(request, frozenset({"room", "ward", "site", "after"}))
    app, db = request.app, request.app[DB_KEY].db
    filters = _filters(request)
    cursor = _start_cursor(request, db)
    broker = app[BROKER_KEY]
    if len(broker.streams) >= MAX_STREAMS:
        raise RejectedError(503, "too many alert streams open; retry later", headers={"Retry-After": "30"})
    response = web.StreamResponse(
        headers={"Content-Type": "text/event-stream", "Cache-Control": "no-store", "X-Accel-Buffering": "no"}
    )
    wake = asyncio.Event()
    broker.streams.add(wake)

    async def send(chunk: bytes) -> None:
        await asyncio.wait_for(response.write(chunk), WRITE_TIMEOUT_SECONDS)

    try:
        await response.prepare(request)
        await send(f"retry: {RETRY_MS}\n".encode() + _sse({"kind": "ready", "cursor": cursor}, id=cursor))
        while not broker.closing:
            wake.clear()
            messages, cursor = feed_after(db, cursor, filters)
            for message in messages:
                await send(_sse(message, id=message["seq"]))
            if len(messages) == FEED_PAGE:
                continue  # more to replay
            try:
                await asyncio.wait_for(wake.wait(), broker.heartbeat_seconds)
            except TimeoutError:
                if not still_allowed(request, app[CLOCK_KEY]()):
                    await send(_sse({"kind": "closed", "reason": "session or token no longer valid"}))
                    break
                await send(_sse(id=cursor, comment="keepalive"))  # the id also moves a filtered stream's cursor
    except (ConnectionError, TimeoutError) as exc:  # the client went away or stopped reading
        log.debug("alert stream ended: %s: %s", type(exc).__name__, exc)
    except sqlite3.OperationalError as exc:  # e.g. the database stayed locked: end; EventSource reconnects
        log.warning("alert stream ended: database error: %s", exc)
    finally:
        broker.streams.discard(wake)
    return response


def setup(app: web.Application) -> None:
    """Add the alert routes and the streams' wake-up (streams end when the app shuts down)."""
    broker = _Broker()
    app[BROKER_KEY] = broker
    events.listen(app, notify)

    async def close_streams(app: web.Application) -> None:
        broker.closing = True
        broker.wake()

    app.on_shutdown.append(close_streams)
    app.router.add_get("/api/v1/alerts", handle_list)
    app.router.add_get("/api/v1/alerts/stream", handle_stream)
    app.router.add_post("/api/v1/alerts/{event_id}/acknowledge", handle_acknowledge)
    app.router.add_post("/api/v1/alerts/{event_id}/resolve", handle_resolve)
    app.router.add_get("/api/v1/rooms/{room}/alerts", handle_room)
