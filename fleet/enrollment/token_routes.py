"""The operators' API for enrollment tokens: create, list, revoke (role ``operator``; every change audited)."""

from __future__ import annotations

from typing import Annotated

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from fleet.auth.operator import require
from fleet.enrollment import service
from fleet.web.appkeys import CLOCK_KEY, CONFIG_KEY, DB_KEY
from fleet.web.body import read_json
from fleet.web.errors import RejectedError
from wardsight.wire import IDENTIFIER_PATTERN

Ident = Annotated[str, Field(pattern=IDENTIFIER_PATTERN)]


class TokenRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    room: Ident
    site: Ident | None = None
    ward: Ident | None = None
    ttl_seconds: Annotated[int, Field(gt=0, le=30 * 24 * 3600)] | None = None
    require_approval: bool = False


async def create_token(request: web.Request) -> web.Response:
    who = await require(request, "operator")
    body = await read_json(request, TokenRequest)
    plaintext, record = service.create_token(
        request.app[DB_KEY],
        request.app[CONFIG_KEY],
        body.room,
        actor=who.actor,
        now=request.app[CLOCK_KEY](),
        ttl=body.ttl_seconds,
        site=body.site,
        ward=body.ward,
        require_approval=body.require_approval,
    )
    return web.json_response({"id": record.id, "token": plaintext, **service.token_details(record)}, status=201)


async def list_tokens(request: web.Request) -> web.Response:
    await require(request, "operator")
    every = request.query.get("all") == "1"
    now = request.app[CLOCK_KEY]()
    return web.json_response({"tokens": request.app[DB_KEY].list_tokens(now, include_finished=every)})


async def revoke_token(request: web.Request) -> web.Response:
    who = await require(request, "operator")
    token_id, now = request.match_info["id"], request.app[CLOCK_KEY]()
    if not service.revoke_token(request.app[DB_KEY], token_id, actor=who.actor, now=now):
        raise RejectedError(404, "no unused, unrevoked token with that id")
    return web.json_response({"id": token_id, "revoked_at": now})
