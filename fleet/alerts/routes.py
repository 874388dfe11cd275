"""The alert routes: list (all, or one room's), acknowledge, resolve, and opening the stream.

``viewer`` reads, ``operator`` changes; see :mod:`fleet.alerts` for the parameters and answers.
"""

from __future__ import annotations

import logging
import re
from typing import Annotated

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from fleet.alerts import streams
from fleet.alerts.store import MAX_LIMIT, STATES, AlertError, Filters, change_state, feed_head, list_alerts
from fleet.auth.operator import authenticate, check_role, require
from fleet.store.connection import Database
from fleet.web.appkeys import CLOCK_KEY, DB_KEY
from fleet.web.body import read_json
from fleet.web.errors import RejectedError
from fleet.web.query import check_query_params, query_identifier, query_number
from wardsight import wire

log = logging.getLogger("wardsight.fleet.alerts")

MAX_NOTE = 500

# ---- query parameters ---------------------------------------------------------------------------------


def _filters(request: web.Request, room: str | None = None) -> Filters:
    return Filters(
        room=room or query_identifier(request, "room"),
        ward=query_identifier(request, "ward"),
        site=query_identifier(request, "site"),
    )


# ---- listing ------------------------------------------------------------------------------------------

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


# ---- acknowledging and resolving ----------------------------------------------------------------------


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
    request.app[streams.BROKER_KEY].wake()
    return web.json_response({"alert": alert})


async def handle_acknowledge(request: web.Request) -> web.Response:
    return await _change(request, "acknowledged")


async def handle_resolve(request: web.Request) -> web.Response:
    return await _change(request, "resolved")


# ---- the stream ---------------------------------------------------------------------------------------


def _start_cursor(request: web.Request, db: Database) -> int:
    for raw, name in ((request.headers.get("Last-Event-ID"), "Last-Event-ID"), (request.query.get("after"), "after")):
        if raw is None or raw.strip() == "":
            continue
        raw = raw.strip()
        if not raw.isdigit() or len(raw) > 18:
            raise RejectedError(400, f"{name} must be a stream id (a non-negative integer)")
        return int(raw)
    return feed_head(db)


async def handle_stream(request: web.Request) -> web.StreamResponse:
    principal, session = authenticate(request)  # as require(), keeping the session: slots are counted per session
    check_role(principal, "viewer")
    check_query_params(request, frozenset({"room", "ward", "site", "after"}))
    filters = _filters(request)
    cursor = _start_cursor(request, request.app[DB_KEY].db)
    return await streams.serve(request, streams.Holder.of(principal, session), filters, cursor)
