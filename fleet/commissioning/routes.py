"""The commissioning routes (see :mod:`fleet.commissioning`)."""

from __future__ import annotations

import logging

from aiohttp import web
from pydantic import BaseModel, ConfigDict

from fleet.auth.operator import require
from fleet.commissioning import checks, facts, service
from fleet.web import events
from fleet.web.appkeys import CLOCK_KEY, DB_KEY
from fleet.web.body import read_json
from fleet.web.errors import RejectedError

log = logging.getLogger("wardsight.fleet.commissioning")


class TestAlertRequest(BaseModel):
    """No options yet: an empty body or ``{}``."""

    model_config = ConfigDict(extra="forbid")


def _report(app: web.Application, device_id: str, now: float) -> dict[str, object]:
    return {"device_id": device_id, **checks.report(facts.gather(app, device_id, now))}


async def get_commissioning(request: web.Request) -> web.Response:
    await require(request, "viewer")
    app, device_id = request.app, request.match_info["id"]
    if app[DB_KEY].get_device(device_id) is None:
        raise RejectedError(404, "no such device")
    return web.json_response(_report(app, device_id, app[CLOCK_KEY]()))


async def post_test_alert(request: web.Request) -> web.Response:
    who = await require(request, "operator")
    if request.can_read_body:
        await read_json(request, TestAlertRequest)
    app, device_id = request.app, request.match_info["id"]
    now = app[CLOCK_KEY]()
    try:
        event, queued = service.send_test_alert(app[DB_KEY], device_id, actor=who.actor, now=now)
    except service.NoSuchDeviceError:
        raise RejectedError(404, "no such device") from None
    except service.TooSoonError as exc:
        raise RejectedError(429, str(exc)) from None
    except service.NotAllowedError as exc:
        raise RejectedError(409, str(exc)) from None
    events.announce(app, event)  # wakes the webhook worker
    log.info("device %s: test alert %s by %s, queued for %d webhooks", device_id, event.event_id, who.actor, queued)
    body = {"event_id": event.event_id, "webhooks": queued, "commissioning": _report(app, device_id, now)}
    return web.json_response(body, status=201)
