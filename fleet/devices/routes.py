"""The operators' API for devices: list and view them, approve, quarantine, release, revoke, reissue a
credential; and the recent events.

Every device view carries ``privacy_mode`` and ``system``, as its latest heartbeat reported them (``sensor-only``
or ``blackout-at-capture``; ``{slot, version, sbom_sha256}``; null when not reported);
``GET /api/v1/devices?privacy_mode=`` lists only the devices with that mode (``unknown``: those that did not report
one), ``?system_version=`` only those on that system version.

Every route checks the caller's role on the server (:func:`fleet.auth.operator.require`) and every change
goes into the audit log with who and when (:mod:`fleet.devices.service`).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Annotated, Any

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from fleet.auth.operator import require
from fleet.devices import service
from fleet.health import store as health_store
from fleet.health.privacy import PRIVACY_FILTERS, privacy_matches
from fleet.health.system import query_system_version, system_matches
from fleet.web.appkeys import CLOCK_KEY, DB_KEY
from fleet.web.body import read_json
from fleet.web.errors import RejectedError
from fleet.web.query import query_choice, query_number

log = logging.getLogger("wardsight.fleet.admin")
EVENTS_PAGE_LIMIT = 500  # the most recent events one listing returns
Handler = Callable[[web.Request], Awaitable[web.Response]]


class StatusRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: Annotated[str, Field(max_length=200)] | None = None


def _device_view(request: web.Request, device_id: str) -> dict[str, Any] | None:
    """The device's view with the privacy mode and system of its latest heartbeat; None for no such device."""
    db = request.app[DB_KEY]
    device = db.device_view(device_id)
    if device is not None:
        device["privacy_mode"] = health_store.privacy_mode(db.db, device_id)
        device["system"] = health_store.systems(db.db, device_id).get(device_id)
    return device


async def list_devices(request: web.Request) -> web.Response:
    await require(request, "viewer")
    wanted = query_choice(request, "privacy_mode", PRIVACY_FILTERS)
    version = query_system_version(request)
    db = request.app[DB_KEY]
    modes, systems = health_store.privacy_modes(db.db), health_store.systems(db.db)
    devices = [{**d, "privacy_mode": modes.get(d["id"]), "system": systems.get(d["id"])} for d in db.list_devices()]
    picked = [d for d in devices if privacy_matches(d["privacy_mode"], wanted) and system_matches(d["system"], version)]
    return web.json_response({"devices": picked, "now": request.app[CLOCK_KEY]()})


async def get_device(request: web.Request) -> web.Response:
    await require(request, "viewer")
    device = _device_view(request, request.match_info["id"])
    if device is None:
        raise RejectedError(404, "no such device")
    return web.json_response(device)


def status_handler(action: str) -> Handler:
    """The route for ``POST /api/v1/devices/{id}/<action>`` (an optional JSON ``reason``)."""
    role = service.TRANSITIONS[action][0]

    async def handler(request: web.Request) -> web.Response:
        who = await require(request, role)
        body = await read_json(request, StatusRequest) if request.can_read_body else StatusRequest()
        device_id, db = request.match_info["id"], request.app[DB_KEY]
        try:
            service.change_status(
                db, device_id, action, actor=who.actor, reason=body.reason, now=request.app[CLOCK_KEY]()
            )
        except service.NoSuchDeviceError:
            raise RejectedError(404, "no such device") from None
        except service.NotAllowedError as exc:
            raise RejectedError(409, str(exc)) from None
        log.warning("device %s: %s by %s (%s)", device_id, action, who.actor, body.reason or "no reason given")
        return web.json_response(_device_view(request, device_id))

    return handler


async def reissue(request: web.Request) -> web.Response:
    """Let an active device obtain a fresh credential with its key (after its credential expired offline)."""
    who = await require(request, "admin")
    device_id, db = request.match_info["id"], request.app[DB_KEY]
    try:
        service.reissue_credential(db, device_id, actor=who.actor, now=request.app[CLOCK_KEY]())
    except service.NoSuchDeviceError:
        raise RejectedError(404, "no such device") from None
    except service.NotAllowedError as exc:
        raise RejectedError(409, str(exc)) from None
    return web.json_response(_device_view(request, device_id))


async def list_events(request: web.Request) -> web.Response:
    await require(request, "viewer")
    limit = query_number(request, "limit", int, low=1, high=EVENTS_PAGE_LIMIT)
    limit = 50 if limit is None else limit
    return web.json_response({"events": request.app[DB_KEY].recent_events(limit)})
