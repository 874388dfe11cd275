"""The webhook API: operators list endpoints and their deliveries; admins create, change, delete and
redeliver (each change and its audit entry in one transaction)."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Annotated, Any

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from fleet.audit import log as audit
from fleet.auth.operator import require
from fleet.store.schema import transaction
from fleet.web.appkeys import CLOCK_KEY, CONFIG_KEY, DB_KEY, KEYS_KEY
from fleet.web.body import read_json
from fleet.web.errors import RejectedError
from fleet.web.query import query_number
from fleet.webhooks import store
from fleet.webhooks.envelope import Format
from fleet.webhooks.ssrf import MAX_URL_LENGTH, UrlRefusedError, check_url_resolves
from fleet.webhooks.store import EndpointError, Status
from fleet.webhooks.worker import wake
from wardsight.wire import App, Severity

log = logging.getLogger("wardsight.fleet.delivery")

Name = Annotated[str, Field(min_length=1, max_length=100, pattern=r"^[^\x00-\x1f\x7f]+$")]
Url = Annotated[str, Field(min_length=1, max_length=MAX_URL_LENGTH)]
AppList = Annotated[list[App], Field(max_length=16)]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class CreateRequest(_Body):
    name: Name
    url: Url
    format: Format = "standard"
    apps: AppList = Field(default_factory=list)
    min_severity: Severity = "info"
    hmac: bool = Field(False, description="Also sign with v1 (HMAC); the whsec_ secret is returned once.")


class UpdateRequest(_Body):
    name: Name | None = None
    url: Url | None = None
    format: Format | None = None
    apps: AppList | None = None
    min_severity: Severity | None = None
    enabled: bool | None = None
    hmac: bool | None = Field(None, description="true: a new whsec_ secret (returned once); false: remove it.")


def _int_id(request: web.Request) -> int:
    try:
        value = int(request.match_info["id"])
    except ValueError:
        raise RejectedError(404, "no such id") from None
    if not 0 < value < 2**63:  # SQLite's integers
        raise RejectedError(404, "no such id")
    return value


async def _checked_url(request: web.Request, url: str) -> None:
    try:
        await check_url_resolves(url, allow_insecure=request.app[CONFIG_KEY].webhook_allow_insecure)
    except UrlRefusedError as exc:
        raise RejectedError(400, f"url refused: {exc}") from None


def _endpoint_fields(body: CreateRequest | UpdateRequest) -> dict[str, Any]:
    """The body as the store's keyword arguments: its fields by name, ``hmac`` as ``with_hmac``."""
    return {**body.model_dump(exclude={"hmac"}), "with_hmac": body.hmac}


def _audit(request: web.Request, actor: str, action: str, target: str, details: Mapping[str, Any]) -> None:
    """Inside the change's transaction, so the change and its audit entry commit together."""
    audit.record(
        request.app[DB_KEY].db, actor=actor, action=action, target=target, details=details, now=request.app[CLOCK_KEY]()
    )


async def handle_list(request: web.Request) -> web.Response:
    await require(request, "operator")
    db = request.app[DB_KEY].db
    return web.json_response({"webhooks": store.list_endpoints(db), "queue": store.queue_depth(db)})


async def handle_create(request: web.Request) -> web.Response:
    who = await require(request, "admin")
    body = await read_json(request, CreateRequest)
    await _checked_url(request, body.url)
    db, now, insecure = request.app[DB_KEY].db, request.app[CLOCK_KEY](), request.app[CONFIG_KEY].webhook_allow_insecure
    try:
        with transaction(db.conn):
            endpoint, secret = store.create_endpoint(
                db, **_endpoint_fields(body), created_by=who.actor, now=now, allow_insecure=insecure
            )
            details = {k: endpoint[k] for k in ("name", "url", "format", "apps", "min_severity", "has_hmac")}
            _audit(request, who.actor, "webhook.create", f"webhook:{endpoint['id']}", details)
    except ValueError as exc:
        raise RejectedError(400, str(exc)) from None
    log.info("webhook %s (%s) created by %s", endpoint["id"], endpoint["name"], who.actor)
    return web.json_response(
        {"webhook": endpoint, "hmac_secret": secret, "public_key": request.app[KEYS_KEY].webhook_public_key},
        status=201,
    )


async def handle_update(request: web.Request) -> web.Response:
    who = await require(request, "admin")
    endpoint_id = _int_id(request)
    body = await read_json(request, UpdateRequest)
    changes = body.model_dump(exclude_none=True)
    if not changes:
        raise RejectedError(400, "nothing to change")
    if body.url is not None:
        await _checked_url(request, body.url)
    if "hmac" in changes:  # say what happened; the secret itself never goes into the audit log
        changes["hmac_secret_rotated" if body.hmac else "hmac_secret_removed"] = True
        del changes["hmac"]
    db, now, insecure = request.app[DB_KEY].db, request.app[CLOCK_KEY](), request.app[CONFIG_KEY].webhook_allow_insecure
    reason = f"disabled by {who.actor}"
    try:
        with transaction(db.conn):
            endpoint, secret = store.update_endpoint(
                db, endpoint_id, **_endpoint_fields(body), now=now, allow_insecure=insecure, disabled_reason=reason
            )
            _audit(request, who.actor, "webhook.update", f"webhook:{endpoint_id}", changes)
    except EndpointError as exc:
        raise RejectedError(exc.status, str(exc)) from None
    except ValueError as exc:
        raise RejectedError(400, str(exc)) from None
    if body.enabled:
        wake(request.app)
    response: dict[str, Any] = {"webhook": endpoint}
    if secret is not None:
        response["hmac_secret"] = secret
    return web.json_response(response)


async def handle_delete(request: web.Request) -> web.Response:
    who = await require(request, "admin")
    endpoint_id = _int_id(request)
    db = request.app[DB_KEY].db
    try:
        with transaction(db.conn):
            endpoint = store.get_endpoint(db, endpoint_id)
            if endpoint is None or not store.delete_endpoint(db, endpoint_id):
                raise RejectedError(404, f"no webhook endpoint {endpoint_id}")
            details = {"name": endpoint["name"], "url": endpoint["url"], "pending_dropped": endpoint["pending_count"]}
            _audit(request, who.actor, "webhook.delete", f"webhook:{endpoint_id}", details)
    except store.EndpointError as exc:  # a delivery to it is being sent by a worker: try again in a moment
        raise RejectedError(exc.status, str(exc)) from None
    return web.json_response({"deleted": endpoint_id})


async def handle_deliveries(request: web.Request) -> web.Response:
    await require(request, "operator")
    endpoint_id = _int_id(request)
    db = request.app[DB_KEY].db
    if store.get_endpoint(db, endpoint_id) is None:
        raise RejectedError(404, f"no webhook endpoint {endpoint_id}")
    statuses: dict[str | None, Status | None] = {
        None: None,
        "pending": "pending",
        "delivered": "delivered",
        "dead": "dead",
    }
    if request.query.get("status") not in statuses:
        raise RejectedError(400, "status must be pending, delivered or dead")
    limit = query_number(request, "limit", int, low=1, high=store.MAX_DELIVERY_PAGE)
    limit = 100 if limit is None else limit
    rows = store.list_deliveries(db, endpoint_id, statuses[request.query.get("status")], limit)
    return web.json_response({"deliveries": rows})


async def handle_redeliver(request: web.Request) -> web.Response:
    who = await require(request, "admin")
    delivery_id = _int_id(request)
    db = request.app[DB_KEY].db
    try:
        with transaction(db.conn):
            row = store.redeliver(db, delivery_id, request.app[CLOCK_KEY]())
            details = {"endpoint_id": row["endpoint_id"], "event_id": row["event_id"]}
            _audit(request, who.actor, "webhook.redeliver", f"webhook_delivery:{delivery_id}", details)
    except EndpointError as exc:
        raise RejectedError(exc.status, str(exc)) from None
    wake(request.app)
    return web.json_response({"delivery": row})


async def handle_public_key(request: web.Request) -> web.Response:
    await require(request, "operator")
    return web.json_response({"public_key": request.app[KEYS_KEY].webhook_public_key, "signature_version": "v1a"})
