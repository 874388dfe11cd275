"""The audit log over HTTP: ``GET /api/v1/audit`` (search and page back; operator) and
``GET /api/v1/audit/verify`` (recompute the hash chain; admin)."""

from __future__ import annotations

from aiohttp import web

from fleet.audit import log as audit
from fleet.auth.operator import require
from fleet.web.appkeys import DB_KEY
from fleet.web.errors import RejectedError
from fleet.web.query import check_query_params, query_number

AUDIT_PAGE_LIMIT = 500
_AUDIT_PARAMS = frozenset({"actor", "action", "target", "q", "since", "until", "limit", "before"})


async def get_audit(request: web.Request) -> web.Response:
    await require(request, "operator")
    check_query_params(request, _AUDIT_PARAMS)
    limit = query_number(request, "limit", int)
    limit = 100 if limit is None else limit
    if not 1 <= limit <= AUDIT_PAGE_LIMIT:
        raise RejectedError(400, f"limit must be between 1 and {AUDIT_PAGE_LIMIT}")
    before = query_number(request, "before", int)
    entries = audit.query(
        request.app[DB_KEY].db,
        actor=request.query.get("actor") or None,
        action=request.query.get("action") or None,
        target=request.query.get("target") or None,
        text=request.query.get("q") or None,
        since=query_number(request, "since", float),
        until=query_number(request, "until", float),
        limit=limit,
        before_seq=before,
    )
    next_before = entries[-1]["seq"] if len(entries) == limit else None
    return web.json_response({"entries": entries, "next_before": next_before})


async def get_audit_verify(request: web.Request) -> web.Response:
    await require(request, "admin")
    return web.json_response(audit.verify(request.app[DB_KEY].db).as_dict())
