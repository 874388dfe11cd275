"""The operators' API for enrollment and devices: tokens, approval, quarantine, revocation, events.

Every route checks the caller's role on the server (``fleet.require``) and every change goes
into the audit log with who and when.
"""

from __future__ import annotations

import logging
from typing import Annotated, Any

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from fleet import audit, tokens
from fleet.auth.operator import Role, require
from fleet.web.appkeys import CLOCK_KEY, CONFIG_KEY, DB_KEY
from fleet.web.body import read_json
from fleet.web.errors import RejectedError
from fleet.web.query import query_number
from wardsight.wire import IDENTIFIER_PATTERN

log = logging.getLogger("wardsight.fleet.admin")
Ident = Annotated[str, Field(pattern=IDENTIFIER_PATTERN)]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TokenRequest(_Body):
    room: Ident
    site: Ident | None = None
    ward: Ident | None = None
    ttl_seconds: Annotated[int, Field(gt=0, le=30 * 24 * 3600)] | None = None
    require_approval: bool = False


class StatusRequest(_Body):
    reason: Annotated[str, Field(max_length=200)] | None = None


def _now(request: web.Request) -> float:
    return request.app[CLOCK_KEY]()


async def create_token(request: web.Request) -> web.Response:
    who = await require(request, "operator")
    body = await read_json(request, TokenRequest)
    now, config = _now(request), request.app[CONFIG_KEY]
    ttl = body.ttl_seconds if body.ttl_seconds is not None else config.token_ttl_seconds
    plaintext, record = tokens.new_token(
        body.room,
        now,
        ttl,
        site=body.site,
        ward=body.ward,
        require_approval=body.require_approval or config.require_approval,
        created_by=who.actor,
    )
    db = request.app[DB_KEY]
    db.add_token(record)
    details = {
        "room": body.room,
        "site": body.site,
        "ward": body.ward,
        "expires_at": record.expires_at,
        "require_approval": record.require_approval,
    }
    audit.record(db.db, actor=who.actor, action="token.create", target=f"token:{record.id}", details=details, now=now)
    return web.json_response({"id": record.id, "token": plaintext, **details}, status=201)


async def list_tokens(request: web.Request) -> web.Response:
    await require(request, "operator")
    every = request.query.get("all") == "1"
    return web.json_response({"tokens": request.app[DB_KEY].list_tokens(_now(request), include_finished=every)})


async def revoke_token(request: web.Request) -> web.Response:
    who = await require(request, "operator")
    token_id, db, now = request.match_info["id"], request.app[DB_KEY], _now(request)
    if not db.revoke_token(token_id, now):
        raise RejectedError(404, "no unused, unrevoked token with that id")
    audit.record(db.db, actor=who.actor, action="token.revoke", target=f"token:{token_id}", now=now)
    return web.json_response({"id": token_id, "revoked_at": now})


async def list_devices(request: web.Request) -> web.Response:
    await require(request, "viewer")
    return web.json_response({"devices": request.app[DB_KEY].list_devices(), "now": _now(request)})


async def get_device(request: web.Request) -> web.Response:
    await require(request, "viewer")
    device = request.app[DB_KEY].device_view(request.match_info["id"])
    if device is None:
        raise RejectedError(404, "no such device")
    return web.json_response(device)


# action -> (the least role, the new status, the statuses it may come from); revoking also ends the credential
TRANSITIONS: dict[str, tuple[Role, str, tuple[str, ...]]] = {
    "approve": ("operator", "active", ("pending",)),
    "quarantine": ("operator", "quarantined", ("pending", "active")),
    "release": ("operator", "active", ("quarantined",)),
    "revoke": ("admin", "revoked", ("pending", "active", "quarantined")),
}


def _status_handler(action: str) -> Any:
    role, status, allowed = TRANSITIONS[action]

    async def handler(request: web.Request) -> web.Response:
        who = await require(request, role)
        body = await read_json(request, StatusRequest) if request.can_read_body else StatusRequest()
        device_id, db, now = request.match_info["id"], request.app[DB_KEY], _now(request)
        if db.get_device(device_id) is None:
            raise RejectedError(404, "no such device")
        if not db.set_status(device_id, status, reason=body.reason, by=who.actor, now=now, allowed_from=allowed):
            raise RejectedError(409, f"cannot {action} a device that is not {' or '.join(allowed)}")
        audit.record(
            db.db,
            actor=who.actor,
            action=f"device.{action}",
            target=device_id,
            details={"reason": body.reason, "status": status},
            now=now,
        )
        log.warning("device %s: %s by %s (%s)", device_id, action, who.actor, body.reason or "no reason given")
        return web.json_response(db.device_view(device_id))

    return handler


async def reissue(request: web.Request) -> web.Response:
    """Let an active device obtain a fresh credential with its key (after its credential expired offline)."""
    who = await require(request, "admin")
    device_id, db, now = request.match_info["id"], request.app[DB_KEY], _now(request)
    device = db.get_device(device_id)
    if device is None:
        raise RejectedError(404, "no such device")
    if device["status"] != "active":
        raise RejectedError(409, "only an active device can be given a new credential")
    db.set_credential(device_id, None, None)
    audit.record(db.db, actor=who.actor, action="device.reissue", target=device_id, now=now)
    return web.json_response(db.device_view(device_id))


async def list_events(request: web.Request) -> web.Response:
    await require(request, "viewer")
    limit = query_number(request, "limit", int)
    limit = 50 if limit is None else limit
    if not 1 <= limit <= 500:
        raise RejectedError(400, "limit must be between 1 and 500")
    return web.json_response({"events": request.app[DB_KEY].recent_events(limit)})


def setup(app: web.Application) -> None:
    app.router.add_get("/api/v1/tokens", list_tokens)
    app.router.add_post("/api/v1/tokens", create_token)
    app.router.add_delete("/api/v1/tokens/{id}", revoke_token)
    app.router.add_get("/api/v1/devices", list_devices)
    app.router.add_get("/api/v1/devices/{id}", get_device)
    for action in TRANSITIONS:
        app.router.add_post(f"/api/v1/devices/{{id}}/{action}", _status_handler(action))
    app.router.add_post("/api/v1/devices/{id}/reissue", reissue)
    app.router.add_get("/api/v1/events", list_events)
